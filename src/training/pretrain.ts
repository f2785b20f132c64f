/**
 * Pretraining from zero (nanoGPT's train.py): AdamW with weight decay on matrices only, linear
 * warmup then cosine decay, global-norm gradient clipping, gradient accumulation, periodic
 * validation loss and perplexity, atomic checkpoints, exact resume, progress events, and the loss
 * curves drawn to `<run>/loss.png`.
 *
 * Run folder:
 *   run.json                 the options the run was started with
 *   tokenizer.json           the tokenizer (built or copied at the start)
 *   data/train.bin, val.bin  the tokenized corpus (uint32 little-endian)
 *   checkpoints/step-N/      model folder + optimizer.safetensors + state.json (the last few kept)
 *   model/                   the final model folder (what `ModelRegistry.register` takes)
 *   metrics.jsonl            one line per logged step and evaluation
 *   loss.png                 training and validation loss curves
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import * as tf from '@tensorflow/tfjs-core';
import { ensureBackend, initBackend, parseBackendName } from '../model/backend.ts';
import { GPT } from '../model/gpt.ts';
import { MODEL_SIZES, type GPTConfig, type ModelSizeName, validateConfig } from '../model/config.ts';
import { CharTokenizer, loadTokenizer, saveTokenizer, type Tokenizer } from '../model/tokenizer/index.ts';
import { loadModelFiles, saveModelFiles } from '../model/model-files.ts';
import { writeDirAtomic, writeJsonAtomic } from '../model/files.ts';
import { mixSeed } from '../model/random.ts';
import { AdamW } from './adamw.ts';
import { TokenDataset } from './dataset.ts';
import { loadCheckpoint, resumePoint, saveCheckpoint } from './checkpoint.ts';
import { evaluatedAt, freshTrainerState, recordValidation, type TrainerState } from './trainer-state.ts';
import { accumulateGradients, clippedUpdate, TrainingLoop } from './loop.ts';
import { openMetricsLog } from './metrics-log.ts';
import { writeLossChart } from './loss-chart.ts';
import { readCorpus } from './corpus.ts';
import { trainBpeTokenizer } from './train-tokenizer.ts';

const ModelShape = z.object({
  blockSize: z.number().int().positive().optional(),
  nLayer: z.number().int().positive().optional(),
  nHead: z.number().int().positive().optional(),
  nEmbd: z.number().int().positive().optional(),
  dropout: z.number().min(0).max(1).optional(),
  bias: z.boolean().optional(),
  /** llama sizes only: key/value heads and the SwiGLU MLP's width. */
  nKvHead: z.number().int().positive().optional(),
  intermediateSize: z.number().int().positive().optional(),
});

export const PretrainOptionsSchema = z.object({
  /** The run folder (created; an existing one with checkpoints is resumed). */
  runDir: z.string(),
  /** Text files or folders of .txt/.md files. */
  data: z.union([z.string(), z.array(z.string())]).optional(),
  /** Or the corpus itself. */
  text: z.string().optional(),
  /** Encode the chat template's special tokens written as text (`<|user|>`...) as their ids (corpora that mix in chat examples). */
  allowSpecial: z.boolean().default(false),
  /** Extra entries for the saved model's meta (e.g. how it should answer: `decoding`). */
  meta: z.record(z.string(), z.unknown()).default({}),
  /** 'char' (vocabulary of the corpus' characters), 'bpe' (trained on the corpus), or a tokenizer.json path. */
  tokenizer: z.string().default('bpe'),
  /** Vocabulary size when the tokenizer is trained here. */
  tokenizerVocabSize: z.number().int().min(260).default(4096),
  /** A named size (tiny, nanogpt-cpu, gpt-10m, gpt-small, llama-cpu: config.ts' MODEL_SIZES) and/or explicit fields. */
  modelSize: z.string().default('nanogpt-cpu'),
  model: ModelShape.default({}),
  batchSize: z.number().int().positive().default(12),
  gradAccumSteps: z.number().int().positive().default(1),
  maxIters: z.number().int().nonnegative().default(2000),
  learningRate: z.number().positive().default(1e-3),
  minLearningRate: z.number().nonnegative().default(1e-4),
  warmupIters: z.number().int().nonnegative().default(100),
  /** Defaults to maxIters. */
  decayIters: z.number().int().positive().optional(),
  weightDecay: z.number().nonnegative().default(0.1),
  beta1: z.number().min(0).max(1).default(0.9),
  beta2: z.number().min(0).max(1).default(0.99),
  gradClip: z.number().nonnegative().default(1.0),
  evalInterval: z.number().int().positive().default(250),
  evalIters: z.number().int().positive().default(20),
  /** Evaluation batches at the end of training (a steadier final number). */
  finalEvalIters: z.number().int().positive().optional(),
  checkpointInterval: z.number().int().positive().default(500),
  keepCheckpoints: z.number().int().positive().default(3),
  trainFraction: z.number().gt(0).lt(1).default(0.9),
  seed: z.number().int().default(1337),
  /** tensorflow | wasm | cpu (default: the one already initialised, else $TEAMLLM_BACKEND, else wasm). */
  backend: z.string().optional(),
  /** Resume from the newest checkpoint in runDir when there is one. */
  resume: z.boolean().default(true),
  /** Draw loss.png every this many steps (and at the end). */
  chartInterval: z.number().int().positive().default(250),
});

export type PretrainOptions = z.input<typeof PretrainOptionsSchema>;
type Resolved = z.output<typeof PretrainOptionsSchema>;

/** nanoGPT's README "baby GPT on CPU" run on tinyshakespeare, characters as tokens. */
const NANOGPT_CPU: Partial<PretrainOptions> = {
  tokenizer: 'char',
  modelSize: 'nanogpt-cpu',
  model: { blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: false },
  batchSize: 12,
  gradAccumSteps: 1,
  maxIters: 2000,
  learningRate: 1e-3,
  minLearningRate: 1e-4,
  warmupIters: 100,
  decayIters: 2000,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.99,
  gradClip: 1.0,
  evalInterval: 250,
  evalIters: 20,
  finalEvalIters: 200,
};

export const PRETRAIN_PRESETS: Record<string, Partial<PretrainOptions>> = {
  'nanogpt-cpu': NANOGPT_CPU,
  /**
   * The same run with the Llama family's block at the same size (config.ts' `llama-cpu`: RMSNorm,
   * RoPE, 4 query / 2 key-value heads, SwiGLU 384 wide, tied head).
   */
  'llama-cpu': {
    ...NANOGPT_CPU,
    modelSize: 'llama-cpu',
    model: { blockSize: 64, nLayer: 4, nHead: 4, nKvHead: 2, nEmbd: 128, intermediateSize: 384, dropout: 0 },
  },
  /** A first company model: BPE on the company's text, 10M-parameter GPT with a 512-token context. */
  'company-small': {
    tokenizer: 'bpe',
    tokenizerVocabSize: 8192,
    modelSize: 'gpt-10m',
    model: { blockSize: 512, dropout: 0.1 },
    batchSize: 8,
    gradAccumSteps: 4,
    maxIters: 5000,
    learningRate: 6e-4,
    minLearningRate: 6e-5,
    warmupIters: 200,
    beta2: 0.95,
    evalInterval: 250,
    evalIters: 20,
    checkpointInterval: 250,
  },
};

export interface PretrainProgress {
  phase: 'train' | 'eval';
  /** Optimizer steps completed. */
  step: number;
  totalSteps: number;
  /** Training loss of the last step. */
  loss: number;
  /** Set on the events right after an evaluation. */
  valLoss?: number;
  lr: number;
  tokensPerSec: number;
  etaSec: number;
  msPerIter: number;
}

export interface PretrainHooks {
  onProgress?: (ev: PretrainProgress) => void;
  /** Stop after the current step; a checkpoint is written first, and the run can be resumed. */
  signal?: AbortSignal;
  /** Free-form log lines (tokenizer training, resume notices...). */
  log?: (line: string) => void;
}

export interface PretrainResult {
  status: 'completed' | 'aborted';
  runDir: string;
  /** The final model folder (completed runs) or the last checkpoint (aborted ones). */
  modelDir: string;
  step: number;
  trainLoss: number;
  valLoss: number;
  perplexity: number;
  /** Mean over the steps run in this session (evaluations excluded). */
  msPerIter: number;
  tokensPerSec: number;
  numParameters: number;
  backend: string;
  resumedFrom?: number;
}

function resolveConfig(o: Resolved, vocabSize: number): GPTConfig {
  const size = MODEL_SIZES[o.modelSize as ModelSizeName];
  if (!size) throw new Error(`Unknown model size "${o.modelSize}": use one of ${Object.keys(MODEL_SIZES).join(', ')}`);
  const shape = Object.fromEntries(Object.entries(o.model).filter(([, v]) => v !== undefined));
  return validateConfig({ ...size, ...shape, vocabSize });
}

async function prepareTokenizer(o: Resolved, text: string, runDir: string, log: (l: string) => void): Promise<Tokenizer> {
  if (o.tokenizer === 'char') return CharTokenizer.fromText(text);
  if (o.tokenizer === 'bpe') {
    log(`training a byte-level BPE tokenizer (vocab ${o.tokenizerVocabSize}) on ${text.length} characters`);
    return trainBpeTokenizer({ text, vocabSize: o.tokenizerVocabSize, outFile: path.join(runDir, 'tokenizer.json') });
  }
  return loadTokenizer(o.tokenizer);
}

/** Mean loss over `iters` batches of a split (fixed batches, so evaluations compare). */
export function evaluateLoss(model: GPT, dataset: TokenDataset, split: 'train' | 'val', iters: number, batchSize: number, seed: number): number {
  let total = 0;
  for (let i = 0; i < iters; i++) {
    const v = tf.tidy(() => {
      const { x, y } = dataset.batch(split, batchSize, model.config.blockSize, mixSeed(seed, 777), i);
      return model.loss(x, y);
    });
    total += v.dataSync()[0]!;
    v.dispose();
  }
  return total / iters;
}

export async function pretrain(options: PretrainOptions, hooks: PretrainHooks = {}): Promise<PretrainResult> {
  const log = hooks.log ?? (() => {});
  let o = PretrainOptionsSchema.parse(options);
  const runDir = path.resolve(o.runDir);
  await fs.mkdir(runDir, { recursive: true });
  const backend = o.backend ? await initBackend(parseBackendName(o.backend)) : await ensureBackend();

  const optimizerFor = (opts: Resolved) => {
    const decays = new Set<string>();
    return { decays, opt: new AdamW({ beta1: opts.beta1, beta2: opts.beta2, weightDecay: opts.weightDecay }, (n) => decays.has(n)) };
  };

  let model: GPT;
  let tokenizer: Tokenizer;
  let dataset: TokenDataset;
  let state: TrainerState;
  let resumedFrom: number | undefined;
  const found = o.resume ? await resumePoint<Resolved>(runDir) : undefined;
  let { decays, opt } = optimizerFor(o);

  if (found) {
    // Resume: the run's own options, with this call's explicit values on top.
    o = PretrainOptionsSchema.parse({ ...found.options, ...options, runDir: o.runDir });
    ({ decays, opt } = optimizerFor(o));
    ({ model, tokenizer } = await loadModelFiles(found.dir));
    state = await loadCheckpoint<TrainerState>(found.dir, opt);
    dataset = await TokenDataset.load(path.join(runDir, 'data', 'train.bin'), path.join(runDir, 'data', 'val.bin'));
    resumedFrom = state.step;
    log(`resuming ${runDir} from step ${state.step}`);
  } else {
    const text = o.text ?? (o.data ? await readCorpus(o.data) : undefined);
    if (!text) throw new Error('pretrain needs `data` (files or folders) or `text`');
    tokenizer = await prepareTokenizer(o, text, runDir, log);
    await saveTokenizer(tokenizer, path.join(runDir, 'tokenizer.json'));
    const ids = tokenizer.encode(text, { allowSpecial: o.allowSpecial });
    dataset = TokenDataset.fromTokens(ids, o.trainFraction);
    await fs.mkdir(path.join(runDir, 'data'), { recursive: true });
    await dataset.save(path.join(runDir, 'data', 'train.bin'), path.join(runDir, 'data', 'val.bin'));
    const config = resolveConfig(o, tokenizer.vocabSize);
    model = GPT.create(config, o.seed);
    state = freshTrainerState();
    await writeJsonAtomic(path.join(runDir, 'run.json'), { ...o, text: undefined });
    log(`${model.numParameters} parameters, ${dataset.train.length} train / ${dataset.val.length} val tokens`);
  }
  for (const s of model.specs) if (s.decay) decays.add(s.name);

  const T = model.config.blockSize;
  const B = o.batchSize;
  const accum = o.gradAccumSteps;
  const tokensPerStep = B * T * accum;
  const meta = { ...o.meta, source: 'pretrain', runDir, backend, tokenizer: tokenizer.kind };
  const metrics = await openMetricsLog(path.join(runDir, 'metrics.jsonl'), resumedFrom);
  const names = model.paramNames;
  // The step's batch and dropout seed, read by the differentiated function below.
  let dropoutSeed = 0;
  let batch: { x: tf.Tensor; y: tf.Tensor } | undefined;
  const lossAndGrads = tf.valueAndGrads((...ps: tf.Tensor[]) => {
    const l = model.loss(batch!.x, batch!.y, { training: true, dropoutSeed }, ps);
    return accum > 1 ? tf.div(l, accum) : l;
  });

  let lastLoss = state.history.train.at(-1)?.loss ?? NaN;
  let lastVal = state.history.val.at(-1)?.loss ?? NaN;
  const sessionStart = performance.now();
  const elapsedBefore = state.elapsedSec;
  let checkpointDirPath: string | undefined;

  const emit = (phase: 'train' | 'eval', lr: number, valLoss?: number) => {
    const ms = loop.timer.currentMs;
    const ev: PretrainProgress = {
      phase,
      step: state.step,
      totalSteps: o.maxIters,
      loss: lastLoss,
      lr,
      tokensPerSec: ms > 0 ? (tokensPerStep * 1000) / ms : 0,
      etaSec: loop.timer.etaSec(o.maxIters - state.step),
      msPerIter: ms,
    };
    if (valLoss !== undefined) ev.valLoss = valLoss;
    hooks.onProgress?.(ev);
  };
  const evaluate = async (iters: number) => {
    lastVal = evaluateLoss(model, dataset, 'val', iters, B, o.seed);
    await recordValidation(state, metrics, lastVal, { perplexity: Math.exp(lastVal) });
    emit('eval', loop.learningRateAt(state.step), lastVal);
  };
  const chart = () =>
    writeLossChart(path.join(runDir, 'loss.png'), { ...state.history, title: `${path.basename(runDir)} ${model.numParameters} PARAMS` });

  const loop = new TrainingLoop({
    totalSteps: o.maxIters,
    learningRate: { learningRate: o.learningRate, minLearningRate: o.minLearningRate, warmupIters: o.warmupIters, decayIters: o.decayIters ?? o.maxIters },
    signal: hooks.signal,
    resumedFrom,
    metrics,
    step: (step, lr) => {
      const { loss, grads } = accumulateGradients(accum, (micro) => {
        batch = dataset.batch('train', B, T, o.seed, step, micro);
        dropoutSeed = mixSeed(o.seed, 99, step, micro);
        const res = tf.tidy(() => lossAndGrads(model.paramList()));
        batch.x.dispose();
        batch.y.dispose();
        return res;
      });
      const { next, norm } = clippedUpdate(opt, model.params, new Map(names.map((n, i) => [n, grads[i]!])), lr, o.gradClip);
      model.setParams(next);
      grads.forEach((g) => g.dispose());
      lastLoss = loss;
      return { loss, gradNorm: norm };
    },
    diverged: (step, loss) => `Training diverged at step ${step} (loss ${loss})`,
    onStep: ({ step, loss, lr }) => {
      state.step = step;
      state.tokensSeen += tokensPerStep;
      state.history.train.push({ step, loss });
      emit('train', lr);
    },
    evaluate: { every: o.evalInterval, run: (step) => (evaluatedAt(state, step) ? undefined : evaluate(o.evalIters)) },
    chart: { every: o.chartInterval, draw: chart },
    checkpoint: {
      every: o.checkpointInterval,
      save: async () => {
        state.elapsedSec = elapsedBefore + (performance.now() - sessionStart) / 1000;
        checkpointDirPath = await saveCheckpoint(runDir, {
          step: state.step,
          state,
          optimizer: opt,
          keep: o.keepCheckpoints,
          write: (dir) => saveModelFiles(dir, model, tokenizer, { ...meta, valLoss: lastVal, step: state.step }),
        });
      },
    },
  });

  let status: PretrainResult['status'];
  try {
    ({ status } = await loop.run());
    if (status === 'completed') {
      await evaluate(o.finalEvalIters ?? o.evalIters);
      await loop.save(state.step);
      const finalMeta = {
        ...meta,
        step: state.step,
        metrics: { valLoss: lastVal, perplexity: Math.exp(lastVal), trainLoss: lastLoss },
        trainedAt: new Date().toISOString(),
      };
      await writeDirAtomic(path.join(runDir, 'model'), (tmp) => saveModelFiles(tmp, model, tokenizer, finalMeta));
    }
    await chart();
  } finally {
    await metrics.close();
  }
  const { trainMs, steps: trainSteps } = loop.timer;
  const result: PretrainResult = {
    status,
    runDir,
    modelDir: status === 'completed' ? path.join(runDir, 'model') : checkpointDirPath ?? runDir,
    step: state.step,
    trainLoss: lastLoss,
    valLoss: lastVal,
    perplexity: Math.exp(lastVal),
    msPerIter: trainSteps ? trainMs / trainSteps : 0,
    tokensPerSec: trainMs > 0 ? (tokensPerStep * trainSteps * 1000) / trainMs : 0,
    numParameters: model.numParameters,
    backend,
  };
  if (resumedFrom !== undefined) result.resumedFrom = resumedFrom;
  model.dispose();
  opt.dispose();
  return result;
}
