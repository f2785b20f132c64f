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
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Logger } from '../core/index.ts';
import { ModelRegistry } from '../model/registry.ts';
import { writeJsonAtomic } from '../model/files.ts';
import type { Config } from './config.ts';
import { QUICKSTART_RECIPES, QuickstartRecipeSchema, type QuickstartRecipe } from './quickstart-recipes.ts';
import { docsInputs, sampleInputs, type QuickstartInputs } from './quickstart-inputs.ts';
import { quickstartKey, quickstartNeeded, readQuickstartState, writeQuickstartState, type QuickstartState } from './quickstart-state.ts';
import { silentReporter, type QuickstartProgress, type QuickstartReporter, type QuickstartRun } from './quickstart-run.ts';
import { pretrainStage, sftStage, tokenizerStage } from './quickstart-training.ts';
import { ingestStage } from './quickstart-ingest.ts';

export { QUICKSTART_RECIPES, QuickstartRecipeSchema, type QuickstartRecipe };
export { describeInputs, docsInputs, sampleInputs, type QuickstartInputs } from './quickstart-inputs.ts';
export { quickstartKey, quickstartNeeded, readQuickstartState, type QuickstartState } from './quickstart-state.ts';
export { silentReporter, type QuickstartReporter, type QuickstartStage } from './quickstart-run.ts';
export { QUICKSTART_MAX_GENERATED } from './quickstart-training.ts';

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
  const progress: QuickstartProgress = existsSync(progressFile)
    ? JSON.parse(await fs.readFile(progressFile, 'utf8'))
    : {};
  const run: QuickstartRun = {
    config, logger, recipe, inputs, key, dir, registry, reporter, progress,
    ...(signal ? { signal } : {}),
    saveProgress: () => writeJsonAtomic(progressFile, progress),
  };

  let t = performance.now();
  const tokenizerFile = await tokenizerStage(run);
  seconds.tokenizer = elapsed(t);
  reporter.done('tokenizer', `byte-level BPE, ${recipe.tokenizerVocabSize} tokens`);
  if (aborted()) throw new Error('quickstart stopped');

  t = performance.now();
  await pretrainStage(run, tokenizerFile);
  seconds.pretrain = elapsed(t);
  const base = (await registry.get(progress.baseVersion!))!;
  reporter.done('pretrain', `${base.version}: ${base.numParameters.toLocaleString('en-US')} parameters, val loss ${base.metrics.valLoss?.toFixed(3)}`);
  if (aborted()) throw new Error('quickstart stopped');

  t = performance.now();
  const sft = await sftStage(run, base.version);
  seconds.sft = elapsed(t);
  reporter.done('sft', sft.summary);

  // Serve the fine-tuned model when it beat its base; otherwise the base this machine pretrained
  // serves (with the recipe's decoding): the quickstart always ends with a model of its own.
  const modelVersion = sft.modelVersion;
  const serveVersion = modelVersion ?? base.version;

  t = performance.now();
  await ingestStage(run, serveVersion);
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
  await writeQuickstartState(home, state);
  return { ran: true, state, seconds: total };
}
