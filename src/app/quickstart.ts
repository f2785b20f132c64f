/**
 * The first start: when no model serves and nothing is cached, train the quickstart model on the
 * sample handbook (examples/handbook) — or on a company's own documents (`teamllm quickstart --docs
 * DIR`, TEAMLLM_QUICKSTART_DOCS: then the knowledge base holds exactly those, and without a question
 * set the gate asks generated questions of held-out passages) — with a fixed recipe, stage by
 * stage, each one resumable:
 *
 *   1. tokenizer  byte-level BPE on the documents
 *   2. pretrain   a small GPT from zero on the documents (plus, with `mixQa`, the question/answer
 *                 examples generated from them, in the chat template: it learns to read its context)
 *   3. sft        LoRA on the generated examples + the train split of questions.jsonl, evaluated on
 *                 the test split; serves only when it beats its base (src/training/sft/pipeline.ts),
 *                 otherwise the pretrained base serves
 *   4. ingest     the documents into the knowledge base, the retrieval encoder trained, the
 *                 passages embedded into the bundled Chroma (or CHROMA_URL)
 *
 * Everything lives in `$TEAMLLM_HOME/quickstart/<key>/`, where the key is a hash of the inputs (the
 * documents' and questions' bytes) and the recipe: a changed recipe or handbook trains again; a run
 * that crashed resumes from its stage's last checkpoint; a finished one is skipped in milliseconds.
 * `$TEAMLLM_HOME/quickstart/state.json` remembers the last finished run and the version it serves.
 *
 * Opt-out: TEAMLLM_QUICKSTART=off (bring your own model, or retrieval-only). A serving model that
 * the quickstart did not make (imported, trained by an admin) is never replaced.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { JobProgress, Logger } from '../core/index.ts';
import { ModelRegistry, type ModelVersion } from '../model/registry.ts';
import { writeJsonAtomic } from '../model/files.ts';
import { localKnowledgeBases, openKnowledgeBase } from '../rag/index.ts';
import { LocalKnowledgeBase } from '../rag/local-knowledge-base.ts';
import { pretrain } from '../training/pretrain.ts';
import { runSftJob, sftJobProgress } from '../training/sft/pipeline.ts';
import { encodeSftExample } from '../training/sft/data.ts';
import { generateQa, holdOutBySection, readDocuments, withRetrievedContext, type SourceDocument } from '../training/sft/qa-generator.ts';
import { trainTokenizer } from '../training/train-tokenizer.ts';
import { trainAnswerSelector } from '../training/sft/selector-data.ts';
import { LoadedModel } from '../model/loaded-model.ts';
import { answerSettings } from '../model/answer-settings.ts';
import { ModelCandidateScorer, SELECTOR_FILE } from '../rag/model-candidate-scorer.ts';
import { loadTokenizer } from '../model/tokenizer/index.ts';
import type { Config } from './config.ts';
import { loadSampleKnowledgeBase, SAMPLE_KB_DIR } from './sample-kb.ts';
import { QUICKSTART_RECIPES, QuickstartRecipeSchema, type QuickstartRecipe } from './quickstart-recipes.ts';

export { QUICKSTART_RECIPES, QuickstartRecipeSchema, type QuickstartRecipe };

/** Bump when the code of a stage changes what it produces (part of the cache key). */
const PIPELINE_VERSION = 4;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isPlainObject(v) && isPlainObject(base[k]) ? deepMerge(base[k] as Record<string, unknown>, v) : v;
  return out;
}

/**
 * TEAMLLM_QUICKSTART_RECIPE: a recipe name, or a YAML/JSON file of overrides on top of
 * `extends:` (default: the `default` recipe), e.g. `{extends: default, pretrain: {maxIters: 900}}`.
 */
export function resolveRecipe(spec: string | undefined, cwd = process.cwd()): QuickstartRecipe {
  const name = spec ?? 'default';
  if (QUICKSTART_RECIPES[name]) return QUICKSTART_RECIPES[name]!;
  const file = resolve(cwd, name);
  if (!existsSync(file)) throw new Error(`TEAMLLM_QUICKSTART_RECIPE: "${name}" is neither a recipe (${Object.keys(QUICKSTART_RECIPES).join(', ')}) nor a file`);
  let parsed: unknown;
  try {
    parsed = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`TEAMLLM_QUICKSTART_RECIPE: ${file} is not valid YAML/JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw new Error(`TEAMLLM_QUICKSTART_RECIPE: ${file} must be a mapping`);
  const { extends: parent = 'default', ...overrides } = parsed as { extends?: string } & Record<string, unknown>;
  const base = QUICKSTART_RECIPES[parent];
  if (!base) throw new Error(`TEAMLLM_QUICKSTART_RECIPE: ${file} extends "${parent}", which is not a recipe (${Object.keys(QUICKSTART_RECIPES).join(', ')})`);
  const result = QuickstartRecipeSchema.safeParse(deepMerge({ ...base, name: `${parent}+${file}` }, overrides));
  if (!result.success) {
    throw new Error(`TEAMLLM_QUICKSTART_RECIPE: ${file}: ${result.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}${i.code === 'unrecognized_keys' ? ` (${i.keys.join(', ')})` : ''}`).join('; ')}`);
  }
  return result.data;
}

/**
 * What the quickstart trains on: the sample handbook's documents and its question set, or a
 * company's own documents (`teamllm quickstart --docs DIR [--questions FILE]`).
 */
export interface QuickstartInputs {
  /** Folders (read recursively, as `kb add` reads them) or files. */
  docs: string[];
  /** Sources are named relative to this folder. */
  docsBase: string;
  /**
   * The question set of the promotion gate (its `test` split, else all of it; the other splits are
   * trained on). Without one, the gate asks generated questions of held-out passages.
   */
  questions?: string;
  /** The built-in sample handbook: its documents go into the knowledge base the sample way. */
  sample?: boolean;
}

export function sampleInputs(dir = SAMPLE_KB_DIR): QuickstartInputs {
  return { docs: [join(dir, 'en'), join(dir, 'zh')], docsBase: dir, questions: join(dir, 'questions.jsonl'), sample: true };
}

/** A company's own documents: a folder (or one file) and, optionally, its question set. */
export function docsInputs(docs: string, questions?: string): QuickstartInputs {
  const dir = resolve(docs);
  if (!existsSync(dir)) throw new Error(`the documents folder ${dir} does not exist`);
  if (questions !== undefined && !existsSync(resolve(questions))) throw new Error(`the questions file ${resolve(questions)} does not exist`);
  const isFile = !statSync(dir).isDirectory();
  return { docs: [dir], docsBase: isFile ? dirname(dir) : dir, ...(questions !== undefined ? { questions: resolve(questions) } : {}), sample: false };
}

/**
 * Which documents the quickstart (and so `serve`) trains on: TEAMLLM_QUICKSTART_DOCS (with
 * TEAMLLM_QUICKSTART_QUESTIONS), else the documents of the last quickstart run here when those were
 * a company's own (`teamllm quickstart --docs DIR` then `teamllm serve`: serve keeps them, and
 * trains again only when they changed), else the sample handbook.
 */
export async function quickstartInputs(config: Config): Promise<QuickstartInputs> {
  if (config.quickstartDocs) return docsInputs(config.quickstartDocs, config.quickstartQuestions);
  const last = (await readQuickstartState(config.home))?.inputs;
  if (last && !last.sample && last.docs.every((d) => existsSync(d)) && (!last.questions || existsSync(last.questions))) return last;
  const sample = sampleInputs();
  return config.quickstartQuestions ? { ...sample, questions: resolve(config.quickstartQuestions) } : sample;
}

/** "the sample handbook" or "the documents in /srv/handbook". */
export function describeInputs(inputs: QuickstartInputs): string {
  return inputs.sample ? 'the sample handbook' : `the documents in ${inputs.docs.join(', ')}`;
}

/** The document files of the inputs: what `readDocuments` and `kb add` read. */
async function documentFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  const visit = async (p: string, explicit: boolean) => {
    const st = await fs.stat(p);
    if (st.isDirectory()) {
      for (const n of (await fs.readdir(p)).filter((n) => !n.startsWith('.')).sort()) await visit(join(p, n), false);
    } else if (explicit || DOCUMENT_FILE.test(p)) out.push(p);
  };
  for (const p of paths) await visit(p, true);
  return out;
}
const DOCUMENT_FILE = /\.(md|markdown|txt|text|html?|pdf|docx)$/i;

/**
 * At most this many generated examples (pretraining mix and SFT) when the recipe sets no
 * `sft.generateMax`: SFT's time grows with them (the sample handbook gives 1,051, the 16 pages of
 * the 18F handbook 393; a bigger folder's are drawn at random from all of its passages).
 */
export const QUICKSTART_MAX_GENERATED = 1500;

/** sha256 over the recipe, the pipeline version and every input file's path and bytes. */
export async function quickstartKey(recipe: QuickstartRecipe, inputs: QuickstartInputs): Promise<string> {
  const h = createHash('sha256');
  const { name: _name, ...shape } = recipe;
  h.update(JSON.stringify({ PIPELINE_VERSION, recipe: shape }));
  // Held-out generated questions (no question set) and a company's own knowledge base make another run.
  if (!inputs.questions) h.update('\0gate:held-out-generated');
  if (!inputs.sample) h.update('\0kb:docs');
  const files = [...(await documentFiles(inputs.docs)), ...(inputs.questions ? [inputs.questions] : [])];
  for (const f of files) {
    h.update(`\0${f.slice(inputs.docsBase.length)}\0`);
    h.update(await fs.readFile(f));
  }
  return h.digest('hex').slice(0, 16);
}

export interface QuickstartState {
  key: string;
  recipe: string;
  finishedAt: string;
  /** Registry version of the pretrained base. */
  baseVersion: string;
  /** The version the quickstart made serving (undefined when SFT did not beat its base). */
  modelVersion?: string;
  seconds: Record<string, number>;
  summary: string;
  /** What it trained on (a later `serve` without TEAMLLM_QUICKSTART_DOCS keeps a company's own documents). */
  inputs?: QuickstartInputs;
}

export type QuickstartStage = 'tokenizer' | 'pretrain' | 'sft' | 'ingest';

export interface QuickstartReporter {
  /** A stage starts (`cached`: its result was already there). */
  stage(name: QuickstartStage, cached: boolean): void;
  progress(p: JobProgress): void;
  /** A stage ended; `line` says what it made. */
  done(name: QuickstartStage, line: string): void;
  log(line: string): void;
}

export const silentReporter: QuickstartReporter = { stage() {}, progress() {}, done() {}, log() {} };

export interface QuickstartOptions {
  config: Config;
  logger: Logger;
  reporter?: QuickstartReporter;
  recipe?: QuickstartRecipe;
  inputs?: QuickstartInputs;
  /** Train even when a model is serving or the run is cached (a finished run's stages are still reused). */
  force?: boolean;
  signal?: AbortSignal;
}

export type QuickstartOutcome =
  | { ran: false; reason: string }
  | { ran: true; state: QuickstartState; seconds: number };

const stateFile = (home: string) => join(home, 'quickstart', 'state.json');

export async function readQuickstartState(home: string): Promise<QuickstartState | undefined> {
  const file = stateFile(home);
  return existsSync(file) ? (JSON.parse(await fs.readFile(file, 'utf8')) as QuickstartState) : undefined;
}

/**
 * Whether the first-start training should run: not when opted out, not when a model the
 * quickstart did not make is serving, not when this key already finished.
 */
export async function quickstartNeeded(config: Config, key: string): Promise<{ needed: boolean; reason: string; serving?: ModelVersion }> {
  if (config.quickstart === 'off') return { needed: false, reason: 'TEAMLLM_QUICKSTART=off' };
  const serving = await new ModelRegistry(config.home).serving();
  const state = await readQuickstartState(config.home);
  // What the quickstart left serving: its fine-tuned model, or its base when SFT did not beat it.
  const ours = state?.modelVersion ?? state?.baseVersion;
  if (serving && serving.version !== ours) return { needed: false, reason: `model ${serving.version} is serving (not made by the quickstart)`, serving };
  if (state?.key === key) return { needed: false, reason: `the quickstart model for these inputs and this recipe is cached (${state.modelVersion ?? `${state.baseVersion}: SFT did not beat its base`})`, ...(serving ? { serving } : {}) };
  return { needed: true, reason: state ? 'the recipe or the documents changed' : serving ? 'retraining' : 'no model is serving yet' };
}

const elapsed = (t0: number) => (performance.now() - t0) / 1000;

/** Runs (or resumes, or skips) the quickstart. */
export async function runQuickstart(options: QuickstartOptions): Promise<QuickstartOutcome> {
  const { config, logger } = options;
  const reporter = options.reporter ?? silentReporter;
  const recipe = options.recipe ?? resolveRecipe(config.values.TEAMLLM_QUICKSTART_RECIPE);
  const inputs = options.inputs ?? (await quickstartInputs(config));
  const key = await quickstartKey(recipe, inputs);
  if (!options.force) {
    const need = await quickstartNeeded(config, key);
    if (!need.needed) return { ran: false, reason: need.reason };
    logger.info({ key, recipe: recipe.name, reason: need.reason }, 'quickstart: training the first model');
  }
  const home = config.home;
  const dir = join(home, 'quickstart', key);
  await fs.mkdir(dir, { recursive: true });
  const t0 = performance.now();
  const seconds: Record<string, number> = {};
  const signal = options.signal;
  const aborted = () => signal?.aborted === true;
  const registry = new ModelRegistry(home);
  const progressFile = join(dir, 'progress.json');
  const progress: { baseVersion?: string; sft?: { modelVersion?: string; summary: string } } = existsSync(progressFile)
    ? JSON.parse(await fs.readFile(progressFile, 'utf8'))
    : {};
  const save = () => writeJsonAtomic(progressFile, progress);

  // 1. Tokenizer.
  const tokenizerFile = join(dir, 'tokenizer.json');
  let t = performance.now();
  if (existsSync(tokenizerFile)) reporter.stage('tokenizer', true);
  else {
    reporter.stage('tokenizer', false);
    const documents = await readInputDocuments(inputs, reporter);
    await trainTokenizer({
      // Each document counted on its own, as files are (HTML, PDF, DOCX as the loaders read them).
      text: documents.map((d) => d.text),
      vocabSize: recipe.tokenizerVocabSize,
      outFile: tokenizerFile,
      onProgress: (p) => {
        const merge = p as { phase: string; done?: number; total?: number };
        reporter.progress({ stage: 'tokenizer', step: merge.done ?? 0, totalSteps: merge.total ?? 1 });
      },
    });
  }
  seconds.tokenizer = elapsed(t);
  reporter.done('tokenizer', `byte-level BPE, ${recipe.tokenizerVocabSize} tokens`);
  if (aborted()) throw new Error('quickstart stopped');

  // 2. Pretraining (resumes from its last checkpoint).
  t = performance.now();
  const pretrainDir = join(dir, 'pretrain');
  if (progress.baseVersion && (await registry.get(progress.baseVersion))) reporter.stage('pretrain', true);
  else {
    reporter.stage('pretrain', false);
    const p = recipe.pretrain;
    const text = await pretrainText(recipe, inputs, tokenizerFile, join(dir, 'qa-kb.sqlite'), reporter);
    // A small folder: the validation split still needs a whole block (and training more than one).
    const tokens = (await loadTokenizer(tokenizerFile)).encode(text, { allowSpecial: p.mixQa }).length;
    if (tokens < 3 * (p.blockSize + 1)) throw new Error(`too little text to pretrain on: ${tokens} tokens in ${describeInputs(inputs)}, at least ${3 * (p.blockSize + 1)} are needed (add documents)`);
    const trainFraction = Math.min(0.95, 1 - (p.blockSize + 1) / tokens);
    const result = await pretrain(
      {
        runDir: pretrainDir,
        text,
        allowSpecial: p.mixQa,
        // Served as SFT would serve it: if the fine-tuned model does not beat this base, the base serves.
        meta: { decoding: recipe.sft.decoding },
        tokenizer: tokenizerFile,
        modelSize: 'nanogpt-cpu',
        model: { blockSize: p.blockSize, nLayer: p.nLayer, nHead: p.nHead, nEmbd: p.nEmbd, dropout: p.dropout, bias: false },
        trainFraction,
        batchSize: p.batchSize,
        maxIters: p.maxIters,
        learningRate: p.learningRate,
        minLearningRate: p.minLearningRate,
        warmupIters: p.warmupIters,
        evalInterval: p.evalInterval,
        evalIters: p.evalIters,
        checkpointInterval: p.checkpointInterval,
        chartInterval: p.checkpointInterval,
        seed: recipe.seed,
        ...(config.backend ? { backend: config.backend } : {}),
        resume: true,
      },
      {
        ...(signal ? { signal } : {}),
        log: (line) => reporter.log(line),
        onProgress: (ev) =>
          reporter.progress({ stage: 'pretrain', step: ev.step, totalSteps: ev.totalSteps, loss: ev.loss, ...(ev.valLoss !== undefined ? { valLoss: ev.valLoss } : {}), tokensPerSec: ev.tokensPerSec, etaSec: ev.etaSec }),
      },
    );
    if (result.status === 'aborted') throw new Error(`quickstart stopped during pretraining at step ${result.step}; the next start resumes it`);
    const version = await registry.register(result.modelDir, {
      source: 'pretrain',
      metrics: { valLoss: result.valLoss, perplexity: result.perplexity, trainLoss: result.trainLoss, steps: result.step },
      notes: `quickstart ${key} (recipe ${recipe.name})`,
    });
    progress.baseVersion = version.version;
    await save();
  }
  seconds.pretrain = elapsed(t);
  const base = (await registry.get(progress.baseVersion!))!;
  reporter.done('pretrain', `${base.version}: ${base.numParameters.toLocaleString('en-US')} parameters, val loss ${base.metrics.valLoss?.toFixed(3)}`);
  if (aborted()) throw new Error('quickstart stopped');

  // 3. LoRA SFT on the handbook (resumes; evaluates before and after; registers only a winner).
  t = performance.now();
  if (progress.sft) reporter.stage('sft', true);
  else {
    reporter.stage('sft', false);
    const s = recipe.sft;
    const result = await runSftJob(
      {
        base: base.version,
        docs: inputs.docs,
        // No question set: generated questions of held-out passages are the gate (pretrainText held the same ones out).
        questions: inputs.questions ?? 'none',
        holdOut: HOLD_OUT.fraction,
        holdOutMax: HOLD_OUT.maxQuestions,
        k: s.k,
        rank: s.rank,
        alpha: s.alpha,
        targets: s.targets,
        epochs: s.epochs,
        batchSize: s.batchSize,
        learningRate: s.learningRate,
        answerTokens: s.answerTokens,
        evalInterval: s.evalInterval,
        checkpointInterval: s.checkpointInterval,
        ...(s.maxContextTokens ? { maxContextTokens: s.maxContextTokens } : {}),
        generateMax: s.generateMax ?? QUICKSTART_MAX_GENERATED,
        seed: recipe.seed,
        ...(config.backend ? { backend: config.backend } : {}),
        promote: 'never',
        skipEval: s.skipEval,
        decoding: s.decoding,
        name: `quickstart-${key.slice(0, 8)}`,
      },
      {
        home,
        knowledgeBases: localKnowledgeBases(home),
        runDir: join(dir, 'sft'),
        ...(signal ? { signal } : {}),
        log: (line) => reporter.log(line),
        progress: (ev) => reporter.progress(sftJobProgress(ev)),
      },
    );
    // Stopped during the evaluation after training: its scores are partial, so nothing is kept as done.
    if (result.status === 'aborted' || aborted()) throw new Error('quickstart stopped during SFT; the next start resumes it');
    progress.sft = { ...(result.modelVersion ? { modelVersion: result.modelVersion } : {}), summary: result.report };
    await save();
  }
  seconds.sft = elapsed(t);
  reporter.done('sft', progress.sft.summary);

  // Serve the fine-tuned model when it beat its base; otherwise the base this machine pretrained
  // serves (with the recipe's decoding): the quickstart always ends with a model of its own.
  const modelVersion = progress.sft.modelVersion;
  const serveVersion = modelVersion ?? base.version;

  // 4. Ingestion: the documents into the knowledge base, the encoder, the vectors into Chroma,
  // and the serving model's answer selector.
  t = performance.now();
  const embeddingsReady = existsSync(join(home, 'embeddings'));
  const kb = await openKnowledgeBase({ home, ...(config.chromaUrl ? { chromaUrl: config.chromaUrl } : {}), logger });
  try {
    // The sample handbook (once per data folder), or exactly the company's documents: never both.
    let changed = false;
    let line = '';
    if (inputs.sample) changed = (config.sampleKnowledgeBase ? await loadSampleKnowledgeBase(kb.kb, home, logger) : undefined) !== undefined;
    else {
      const report = await kb.kb.addPaths(inputs.docs, { baseDir: inputs.docsBase });
      const removed = await removeSampleDocuments(kb.kb, home, new Set([...report.added, ...report.updated, ...report.unchanged]));
      changed = report.added.length + report.updated.length + removed.length > 0;
      line = `${report.added.length} added, ${report.updated.length} updated, ${report.unchanged.length} unchanged${report.failed.length ? `, ${report.failed.length} unreadable (${report.failed.map((f) => f.source).join(', ')})` : ''}${removed.length ? `, ${removed.length} sample documents removed` : ''}: `;
    }
    // A changed knowledge base gets an encoder trained on it (the sample's is trained once).
    const needEncoder = recipe.embeddings && (!embeddingsReady || (!inputs.sample && changed));
    reporter.stage('ingest', !changed && !needEncoder);
    line += `${(await kb.kb.list()).length} documents in the knowledge base`;
    if (needEncoder) {
      const trained = await kb.trainEmbeddings({
        ...(recipe.embeddingSteps ? { training: { steps: recipe.embeddingSteps } } : {}),
        ...(signal ? { signal } : {}),
        onProgress: (p) => reporter.progress({ stage: 'encoder', step: p.step, totalSteps: p.steps, loss: p.loss }),
      });
      line += `; encoder ${trained.info.id} trained, ${trained.reembedded} passages embedded into ${kb.chroma?.bundled === false ? 'Chroma at CHROMA_URL' : 'the bundled Chroma'}`;
    }
    // The answer selector of the model that will serve, trained on questions generated from these
    // documents through this knowledge base (its encoder included): how much the model's score
    // counts against the rules is learned, not guessed (src/rag/answer-selector.ts).
    const selectorFile = join(registry.dir(serveVersion), SELECTOR_FILE);
    if (recipe.selectorQuestions > 0 && (changed || needEncoder || !existsSync(selectorFile))) {
      const questions = generateQa(await readInputDocuments(inputs, reporter), { max: recipe.selectorQuestions, seed: recipe.seed + 2 });
      const model = await LoadedModel.load(registry.dir(serveVersion), serveVersion);
      try {
        const selector = await trainAnswerSelector({
          kb: kb.kb,
          scorer: new ModelCandidateScorer(model, answerSettings(model)),
          questions,
          ...(signal ? { signal } : {}),
          onProgress: (step, totalSteps) => reporter.progress({ stage: 'answer selector', step, totalSteps }),
        });
        await writeJsonAtomic(selectorFile, selector);
        // Its hash joins the version's (a selector changed behind the registry's back is a damaged version).
        await registry.recordFiles(serveVersion, [SELECTOR_FILE]);
        const s = selector.trained;
        if (s) line += `; answer selector: ${(100 * s.defaultHeldOutAccuracy).toFixed(1)}% → ${(100 * s.heldOutAccuracy).toFixed(1)}% right on ${s.heldOut} held-out generated questions (model weight ${selector.weights.model.toFixed(2)})`;
      } finally {
        model.dispose();
      }
    }
    reporter.done('ingest', line);
  } finally {
    await kb.close();
  }
  seconds.ingest = elapsed(t);

  if ((await registry.serving())?.version !== serveVersion) await registry.promote(serveVersion);
  const total = elapsed(t0);
  const state: QuickstartState = {
    key,
    recipe: recipe.name,
    finishedAt: new Date().toISOString(),
    baseVersion: base.version,
    ...(modelVersion ? { modelVersion } : {}),
    seconds: { ...seconds, total },
    inputs,
    summary: modelVersion
      ? `model ${modelVersion} (LoRA on ${base.version}) is serving`
      : `model ${base.version} (pretrained here) is serving: the LoRA fine-tuned model did not beat it on the held-out questions (see ${join(dir, 'sft', 'report.txt')})`,
  };
  await writeJsonAtomic(stateFile(home), state);
  return { ran: true, state, seconds: total };
}

/**
 * The pretraining text: the documents, plus (mixQa) every generated QA example in the chat
 * template with its retrieved passages, so the small model sees many examples of answering from
 * a context block before SFT. Special tokens are written as their text; pretrain encodes them
 * as the special ids (allowSpecial).
 */
async function pretrainText(recipe: QuickstartRecipe, inputs: QuickstartInputs, tokenizerFile: string, kbFile: string, reporter: QuickstartReporter): Promise<string> {
  const documents = await readInputDocuments(inputs, reporter);
  const corpus = documents.map((d) => d.text).join('\n\n');
  if (!recipe.pretrain.mixQa) return corpus;
  const tokenizer = await loadTokenizer(tokenizerFile);
  const kb = new LocalKnowledgeBase(kbFile);
  try {
    await kb.addPaths(inputs.docs, { baseDir: inputs.docsBase });
    let generated = generateQa(documents, { max: recipe.sft.generateMax ?? QUICKSTART_MAX_GENERATED, seed: recipe.seed });
    // The questions SFT holds out for its gate (no question set) are not pretrained on either.
    let heldOut = 0;
    if (!inputs.questions) {
      const split = holdOutBySection(generated, { fraction: HOLD_OUT.fraction, maxQuestions: HOLD_OUT.maxQuestions, seed: recipe.seed });
      heldOut = generated.length - split.train.length;
      generated = split.train;
    }
    const examples = await withRetrievedContext(generated, kb, { k: recipe.sft.k, seed: recipe.seed + 1 });
    const rendered: string[] = [];
    for (const ex of examples) {
      const encoded = encodeSftExample(tokenizer, ex, {
        maxTokens: recipe.pretrain.blockSize,
        ...(recipe.sft.maxContextTokens ? { maxContextTokens: recipe.sft.maxContextTokens } : {}),
      });
      if (encoded) rendered.push(tokenizer.decode(Array.from(encoded.ids)));
    }
    reporter.log(`pretraining text: ${documents.length} documents + ${rendered.length} generated question/answer examples in the chat template${heldOut ? ` (${heldOut} of held-out passages left out for the gate)` : ''}`);
    return [corpus, ...rendered].join('\n\n');
  } finally {
    kb.close();
  }
}

/** Held-out generated questions for the gate when there is no question set (SFT and pretraining agree on them). */
const HOLD_OUT = { fraction: 0.1, maxQuestions: 50 };

async function readInputDocuments(inputs: QuickstartInputs, reporter: QuickstartReporter): Promise<SourceDocument[]> {
  const documents = await readDocuments(inputs.docs, inputs.docsBase, (source, reason) => reporter.log(`${source}: skipped (${reason})`));
  if (documents.length === 0) throw new Error(`no documents to train on in ${inputs.docs.join(', ')} (md, txt, html, pdf, docx)`);
  return documents;
}

/**
 * A company's own documents replace the sample handbook: the sample's documents that a data folder
 * got at its first start (TEAMLLM_SAMPLE_KB) are removed, unless one of the new documents has the same
 * name; and the sample is never loaded into it again. Returns the sources removed.
 */
async function removeSampleDocuments(kb: LocalKnowledgeBase, home: string, keep: Set<string>): Promise<string[]> {
  const marker = join(home, 'kb', 'sample-loaded');
  const removed: string[] = [];
  if (existsSync(marker) && existsSync(SAMPLE_KB_DIR)) {
    const sample = new Set((await readDocuments(sampleInputs().docs, SAMPLE_KB_DIR)).map((d) => d.source));
    for (const { source } of await kb.list()) {
      if (sample.has(source) && !keep.has(source)) {
        await kb.remove(source);
        removed.push(source);
      }
    }
  }
  writeFileSync(marker, `${new Date().toISOString()} (not loaded: the quickstart trained on a company's own documents)\n`);
  return removed;
}
