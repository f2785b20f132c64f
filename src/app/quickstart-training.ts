/**
 * The quickstart's training stages, each skipped when its result is there and resumed from its
 * last checkpoint otherwise: the tokenizer, the pretrained base, the LoRA fine-tuned model.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LocalKnowledgeBase } from '../rag/local-knowledge-base.ts';
import { localKnowledgeBases } from '../rag/index.ts';
import { loadTokenizer } from '../model/tokenizer/index.ts';
import { pretrain } from '../training/pretrain.ts';
import { runSftJob, sftJobProgress } from '../training/sft/pipeline.ts';
import { encodeSftExample } from '../training/sft/data.ts';
import { generateQa, holdOutBySection, withRetrievedContext } from '../training/sft/qa-generator.ts';
import { trainTokenizer } from '../training/train-tokenizer.ts';
import { describeInputs, readInputDocuments, type QuickstartInputs } from './quickstart-inputs.ts';
import type { QuickstartRecipe } from './quickstart-recipes.ts';
import type { QuickstartProgress, QuickstartReporter, QuickstartRun } from './quickstart-run.ts';

/**
 * At most this many generated examples (pretraining mix and SFT) when the recipe sets no
 * `sft.generateMax`: SFT's time grows with them (the sample handbook gives 1,051, the 16 pages of
 * the 18F handbook 393; a bigger folder's are drawn at random from all of its passages).
 */
export const QUICKSTART_MAX_GENERATED = 1500;

/** Held-out generated questions for the gate when there is no question set (SFT and pretraining agree on them). */
const HOLD_OUT = { fraction: 0.1, maxQuestions: 50 };

/** 1. Byte-level BPE on the documents; answers the tokenizer file. */
export async function tokenizerStage(run: QuickstartRun): Promise<string> {
  const { dir, recipe, inputs, reporter } = run;
  const tokenizerFile = join(dir, 'tokenizer.json');
  if (existsSync(tokenizerFile)) reporter.stage('tokenizer', true);
  else {
    reporter.stage('tokenizer', false);
    const documents = await readInputDocuments(inputs, (line) => reporter.log(line));
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
  return tokenizerFile;
}

/** 2. A small GPT pretrained from zero on the documents, registered as the base. */
export async function pretrainStage(run: QuickstartRun, tokenizerFile: string): Promise<void> {
  const { config, dir, key, recipe, inputs, registry, reporter, signal, progress } = run;
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
    await run.saveProgress();
  }
}

/** 3. LoRA SFT (evaluates before and after; registers only a winner); answers what progress.json keeps of it. */
export async function sftStage(run: QuickstartRun, baseVersion: string): Promise<NonNullable<QuickstartProgress['sft']>> {
  const { config, dir, key, recipe, inputs, reporter, signal, progress } = run;
  const home = config.home;
  const aborted = () => signal?.aborted === true;
  if (progress.sft) reporter.stage('sft', true);
  else {
    reporter.stage('sft', false);
    const s = recipe.sft;
    const result = await runSftJob(
      {
        base: baseVersion,
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
    await run.saveProgress();
  }
  return progress.sft;
}

/**
 * The pretraining text: the documents, plus (mixQa) every generated QA example in the chat
 * template with its retrieved passages, so the small model sees many examples of answering from
 * a context block before SFT. Special tokens are written as their text; pretrain encodes them
 * as the special ids (allowSpecial).
 */
async function pretrainText(recipe: QuickstartRecipe, inputs: QuickstartInputs, tokenizerFile: string, kbFile: string, reporter: QuickstartReporter): Promise<string> {
  const documents = await readInputDocuments(inputs, (line) => reporter.log(line));
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
