/**
 * Supervised fine-tuning with LoRA: the base model stays frozen, a LoRA adapter learns to answer
 * in the chat template (retrieved passages in the context block, loss on the assistant's tokens
 * only). The loop has pretraining's qualities and reuses its pieces: AdamW, warmup + cosine
 * schedule, global-norm clipping, gradient accumulation, validation loss, atomic checkpoints with
 * exact resume, progress events, metrics.jsonl and loss.png.
 *
 * Run folder:
 *   run.json                  options the run started with
 *   data/train.json, val.json encoded examples ({ids, targets} per example)
 *   checkpoints/step-N/       adapter.safetensors, adapter_config.json, optimizer.safetensors, state.json
 *   adapter/                  the final adapter (what AdapterStore / AdapterSet load)
 *   model/                    the base with the adapter merged (a model folder the registry takes)
 *   metrics.jsonl, loss.png
 *
 * The base may also be an imported chat model's version folder (Llama/Qwen family, chat-model.json):
 * its served weights as a float32 trainable model (src/model/lora/imported-base.ts), examples in its
 * own chat template (chat-data.ts), and `adapter/` in PEFT's format, which the registry takes as a
 * version over that base (no merged model folder: serving merges it into the base).
 */
import type { PretrainHooks, PretrainProgress } from '../pretrain.ts';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import * as tf from '@tensorflow/tfjs-core';
import { ensureBackend, initBackend, parseBackendName } from '../../model/backend.ts';
import type { GPT } from '../../model/gpt.ts';
import { loadModelFiles, saveModelFiles } from '../../model/model-files.ts';
import { readJson, writeDirAtomic, writeJsonAtomic } from '../../model/files.ts';
import { mixSeed } from '../../model/random.ts';
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import { LoraAdapter } from '../../model/lora/adapter.ts';
import { type LoraConfig, type LoraConfigInput } from '../../model/lora/config.ts';
import { AdamW } from '../adamw.ts';
import { loadCheckpoint, resumePoint, saveCheckpoint } from '../checkpoint.ts';
import { evaluatedAt, freshTrainerState, recordValidation, type TrainerState } from '../trainer-state.ts';
import { accumulateGradients, clippedUpdate, TrainingLoop } from '../loop.ts';
import { EpochOrder, epochPermutation } from '../data-order.ts';
import { openMetricsLog } from '../metrics-log.ts';
import { writeLossChart } from '../loss-chart.ts';
import { encodeSftExample, readSftData, type EncodedExample, type SftExample } from './data.ts';
import { existsSync } from 'node:fs';
import { CHAT_MANIFEST, loadChatModelVersion } from '../../model/import/chat-manifest.ts';
import { trainableFromChatModel } from '../../model/lora/imported-base.ts';
import { writePeftAdapter } from '../../model/lora/peft.ts';
import { encodeChatSftExample } from './chat-data.ts';

export const SftOptionsSchema = z.object({
  /** The run folder (created; an existing one with checkpoints is resumed). */
  runDir: z.string(),
  /** The base model folder (a registry version's folder, a run's `model/`, a checkpoint). */
  base: z.string(),
  /** The base's registry version, if it has one (recorded in the adapter and the merged model). */
  baseVersion: z.string().optional(),
  /** SFT JSONL files or folders (alpaca, sharegpt, messages / 👍 exports, question/answer). */
  data: z.union([z.string(), z.array(z.string())]).optional(),
  /** LoRA: rank, alpha, dropout, targets (names read as the base's family names them: LoraAdapter.create). */
  lora: z
    .custom<LoraConfigInput>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'a LoRA configuration object')
    .default({ rank: 8, alpha: 16, dropout: 0.05, targets: ['q', 'k', 'v', 'attn_out'] }),
  /** System message added to examples without one (use the same at answer time). */
  systemPrompt: z.string().optional(),
  /** Upper bound on context-block tokens per example. */
  maxContextTokens: z.number().int().positive().optional(),
  batchSize: z.number().int().positive().default(8),
  gradAccumSteps: z.number().int().positive().default(1),
  /** Passes over the training examples (ignored when maxIters is set). */
  epochs: z.number().positive().default(3),
  maxIters: z.number().int().positive().optional(),
  learningRate: z.number().positive().default(2e-3),
  minLearningRate: z.number().nonnegative().default(2e-4),
  warmupIters: z.number().int().nonnegative().default(20),
  weightDecay: z.number().nonnegative().default(0),
  beta1: z.number().min(0).max(1).default(0.9),
  beta2: z.number().min(0).max(1).default(0.999),
  gradClip: z.number().nonnegative().default(1.0),
  /** Share of examples held out for validation (at least one example). */
  valFraction: z.number().min(0).lt(1).default(0.05),
  evalInterval: z.number().int().positive().default(50),
  checkpointInterval: z.number().int().positive().default(100),
  keepCheckpoints: z.number().int().positive().default(2),
  chartInterval: z.number().int().positive().default(50),
  seed: z.number().int().default(1337),
  backend: z.string().optional(),
  resume: z.boolean().default(true),
  /** Also write the merged model folder `model/` (default true; the registry needs it). */
  saveMerged: z.boolean().default(true),
  /** Extra facts saved in the adapter's meta (e.g. how many passages retrieval gave it). */
  adapterMeta: z.record(z.string(), z.unknown()).optional(),
  /**
   * Activation recomputation (GPT.lossAndGrads): each block's activations are made again in the
   * backward pass instead of kept, and the loss's logits are made a chunk of rows at a time. On
   * by default for an imported base (its vocabulary and depth make the activations the largest
   * part of training's memory), off for models trained here (small enough to keep everything).
   */
  checkpointActivations: z.boolean().optional(),
});

export type SftOptions = z.input<typeof SftOptionsSchema> & {
  /** Examples given in code (not saved in run.json; the encoded data is). */
  examples?: SftExample[];
  /**
   * The imported base already loaded (the job's gate engine): its matrices are shared with the
   * trainable model instead of read a second time. Must be the version `base` names.
   */
  chatModel?: ReturnType<typeof loadChatModelVersion>;
};
type Resolved = z.output<typeof SftOptionsSchema>;

/** Pretraining's progress event, plus how many passes over the examples were made. */
export interface SftProgress extends PretrainProgress {
  /** Passes over the training data so far (fractional). */
  epoch: number;
}

export interface SftHooks extends Omit<PretrainHooks, 'onProgress'> {
  onProgress?: (ev: SftProgress) => void;
}

export interface SftResult {
  status: 'completed' | 'aborted';
  runDir: string;
  /** The final adapter folder (completed runs) or the last checkpoint (aborted ones). */
  adapterDir: string;
  /** The merged model folder (completed runs with saveMerged). */
  modelDir?: string;
  step: number;
  totalSteps: number;
  epochs: number;
  trainLoss: number;
  valLoss: number;
  /** Validation loss of the untouched base (step 0). */
  baseValLoss: number;
  lora: LoraConfig;
  trainableParameters: number;
  totalParameters: number;
  /** trainableParameters / totalParameters (0.03 = 3%). */
  trainableShare: number;
  examples: { train: number; val: number; truncated: number; dropped: number; assistantTokens: number };
  msPerIter: number;
  /** Measured time per pass over the training examples. */
  msPerEpoch: number;
  tokensPerSec: number;
  backend: string;
  resumedFrom?: number;
}

interface Encoded {
  ids: number[];
  targets: number[];
}

/** Keeps SFT's example order apart from other seeded streams (and the split: its epoch 999). */
const SFT_SALT = 31;

interface SftState extends TrainerState {
  baseValLoss: number;
}

/** Pads examples to one [B, T] batch: inputs padded with `pad`, targets with -1. */
export function collate(examples: Encoded[], pad: number): { x: tf.Tensor2D; y: tf.Tensor2D; tokens: number; counted: number } {
  const B = examples.length;
  const T = Math.max(...examples.map((e) => e.ids.length));
  const x = new Int32Array(B * T).fill(pad);
  const y = new Int32Array(B * T).fill(-1);
  let counted = 0;
  examples.forEach((e, b) => {
    x.set(e.ids, b * T);
    y.set(e.targets, b * T);
    for (const t of e.targets) if (t >= 0) counted += 1;
  });
  return { x: tf.tensor2d(x, [B, T], 'int32'), y: tf.tensor2d(y, [B, T], 'int32'), tokens: B * T, counted };
}

/** Mean loss per counted (assistant) token over `examples`, in batches. */
export function sftLoss(model: GPT, examples: Encoded[], batchSize: number, pad: number): number {
  let total = 0;
  let count = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    const batch = collate(examples.slice(i, i + batchSize), pad);
    if (batch.counted > 0) {
      const v = tf.tidy(() => model.loss(batch.x, batch.y));
      total += v.dataSync()[0]! * batch.counted;
      count += batch.counted;
      v.dispose();
    }
    batch.x.dispose();
    batch.y.dispose();
  }
  return count ? total / count : NaN;
}

/** Longest example trained on an imported model (its own context is often 32k positions). */
const CHAT_SFT_MAX_TOKENS = 2048;

/**
 * The model SFT tunes and how examples become its tokens: a teamllm model folder (its template
 * of special tokens), or an imported chat model's version folder (its own chat template).
 */
interface SftBase {
  kind: 'teamllm' | 'chat';
  model: GPT;
  pad: number;
  maxTokens: number;
  encode(example: SftExample, o: Resolved, maxTokens: number): EncodedExample | undefined;
  /** Writes the final adapter folder (teamllm's files, or PEFT's for an imported base). */
  saveAdapter(dir: string, adapter: LoraAdapter): Promise<void>;
  tokenizer?: Tokenizer;
}

async function openSftBase(dir: string, loaded?: ReturnType<typeof loadChatModelVersion>): Promise<SftBase> {
  if (existsSync(path.join(dir, CHAT_MANIFEST))) {
    const chat = loaded ?? loadChatModelVersion(dir);
    // Frozen in the dtype it is served in, its matrices shared with the engine (not copied).
    const model = trainableFromChatModel(chat.model, { frozen: true });
    const tokenizer = chat.tokenizer;
    return {
      kind: 'chat',
      model,
      pad: [...tokenizer.eosIds][0] ?? 0,
      maxTokens: Math.min(model.config.blockSize, CHAT_SFT_MAX_TOKENS),
      encode: (ex, o, maxTokens) => encodeChatSftExample(tokenizer, ex, { maxTokens, ...(o.systemPrompt ? { systemPrompt: o.systemPrompt } : {}) }),
      saveAdapter: (tmp, adapter) => writePeftAdapter(tmp, adapter, { baseModel: chat.manifest.origin }),
    };
  }
  const { model, tokenizer } = await loadModelFiles(dir);
  return {
    kind: 'teamllm',
    model,
    tokenizer,
    pad: tokenizer.special.end ?? 0,
    maxTokens: model.config.blockSize,
    encode: (ex, o, maxTokens) =>
      encodeSftExample(tokenizer, ex, {
        maxTokens,
        ...(o.systemPrompt ? { systemPrompt: o.systemPrompt } : {}),
        ...(o.maxContextTokens ? { maxContextTokens: o.maxContextTokens } : {}),
      }),
    saveAdapter: (tmp, adapter) => adapter.save(tmp),
  };
}

async function prepareData(o: Resolved, extra: SftExample[] | undefined, base: SftBase, runDir: string, log: (l: string) => void) {
  const blockSize = base.maxTokens;
  const examples: SftExample[] = [...(extra ?? [])];
  if (o.data) examples.push(...(await readSftData(o.data)));
  if (examples.length < 2) throw new Error(`SFT needs at least 2 examples (got ${examples.length}): give data files (alpaca, sharegpt, messages, question/answer JSONL) or generate them from documents`);
  let truncated = 0;
  let dropped = 0;
  const encoded: Encoded[] = [];
  for (const ex of examples) {
    const e = base.encode(ex, o, blockSize);
    if (!e) {
      dropped += 1;
      continue;
    }
    if (e.truncated) truncated += 1;
    encoded.push({ ids: Array.from(e.ids), targets: Array.from(e.targets) });
  }
  const order = epochPermutation(encoded.length, o.seed, SFT_SALT, 999);
  const nVal = o.valFraction > 0 ? Math.max(1, Math.round(encoded.length * o.valFraction)) : 0;
  const val = [...order.slice(0, nVal)].map((i) => encoded[i]!);
  const train = [...order.slice(nVal)].map((i) => encoded[i]!);
  if (train.length === 0) throw new Error('No SFT example fits the model (all were dropped): the context or the answers are too long for its block size');
  await writeJsonAtomic(path.join(runDir, 'data', 'train.json'), train);
  await writeJsonAtomic(path.join(runDir, 'data', 'val.json'), val);
  const stats = { train: train.length, val: val.length, truncated, dropped, assistantTokens: train.reduce((n, e) => n + e.targets.filter((t) => t >= 0).length, 0) };
  await writeJsonAtomic(path.join(runDir, 'data', 'stats.json'), stats);
  log(`${examples.length} SFT examples: ${train.length} train / ${val.length} validation (${truncated} cut to fit ${blockSize} tokens, ${dropped} dropped)`);
  return { train, val, stats };
}

export async function sft(options: SftOptions, hooks: SftHooks = {}): Promise<SftResult> {
  const log = hooks.log ?? (() => {});
  const { examples: extraExamples, chatModel, ...plainOptions } = options;
  let o = SftOptionsSchema.parse(plainOptions);
  const runDir = path.resolve(o.runDir);
  await fs.mkdir(runDir, { recursive: true });
  const backend = o.backend ? await initBackend(parseBackendName(o.backend)) : await ensureBackend();
  const found = o.resume ? await resumePoint<Resolved>(runDir) : undefined;
  // Resume: the run's own options, with this call's explicit values on top.
  if (found) o = SftOptionsSchema.parse({ ...found.options, ...plainOptions, runDir: o.runDir });
  const base = await openSftBase(o.base, chatModel);
  const { model, pad } = base;
  const opt = new AdamW({ beta1: o.beta1, beta2: o.beta2, weightDecay: o.weightDecay }, () => o.weightDecay > 0);
  let adapter: LoraAdapter;
  let state: SftState;
  let train: Encoded[];
  let val: Encoded[];
  let stats: SftResult['examples'];
  let resumedFrom: number | undefined;
  if (found) {
    adapter = await LoraAdapter.load(found.dir, model, o.baseVersion); // refuses a different base
    state = await loadCheckpoint<SftState>(found.dir, opt);
    train = await readJson<Encoded[]>(path.join(runDir, 'data', 'train.json'));
    val = await readJson<Encoded[]>(path.join(runDir, 'data', 'val.json'));
    stats = await readJson<SftResult['examples']>(path.join(runDir, 'data', 'stats.json'));
    resumedFrom = state.step;
    log(`resuming ${runDir} from step ${state.step}`);
  } else {
    ({ train, val, stats } = await prepareData(o, extraExamples, base, runDir, log));
    adapter = LoraAdapter.create(model, o.lora, { seed: o.seed, ...(o.baseVersion ? { version: o.baseVersion } : {}), meta: { source: 'sft', runDir } });
    state = { ...freshTrainerState(), baseValLoss: NaN };
    await writeJsonAtomic(path.join(runDir, 'run.json'), o);
  }
  adapter.attach(model, o.baseVersion);
  const trainable = adapter.numParameters;
  const total = model.numParameters;
  log(
    `LoRA r=${adapter.config.rank} alpha=${adapter.config.alpha} dropout=${adapter.config.dropout} on ${adapter.config.targets.join(', ')}: ` +
      `${trainable.toLocaleString('en-US')} trainable parameters = ${((100 * trainable) / total).toFixed(2)}% of the base's ${total.toLocaleString('en-US')}`,
  );

  const B = o.batchSize;
  const accum = o.gradAccumSteps;
  const perStep = B * accum;
  const stepsPerEpoch = train.length / perStep;
  const totalSteps = o.maxIters ?? Math.max(1, Math.ceil(o.epochs * stepsPerEpoch));
  const names = adapter.paramNames;
  const metrics = await openMetricsLog(path.join(runDir, 'metrics.jsonl'), resumedFrom);
  const order = new EpochOrder(train.length, o.seed, SFT_SALT);
  const checkpoint = o.checkpointActivations ?? base.kind === 'chat';
  const lossAndGrads = (batch: { x: tf.Tensor; y: tf.Tensor }, dropoutSeed: number) =>
    model.lossAndGrads(batch.x, batch.y, new Map(names.map((n) => [n, adapter.params.get(n)!])), { training: true, dropoutSeed, scale: 1 / accum, checkpoint });

  let lastLoss = state.history.train.at(-1)?.loss ?? NaN;
  let lastVal = state.history.val.at(-1)?.loss ?? NaN;
  let trainTokens = 0;
  const sessionStart = performance.now();
  const elapsedBefore = state.elapsedSec;
  let lastCheckpoint: string | undefined;

  const emit = (phase: 'train' | 'eval', lr: number, valLoss?: number) => {
    const { trainMs } = loop.timer;
    const ev: SftProgress = {
      phase,
      step: state.step,
      totalSteps,
      epoch: (state.step * perStep) / train.length,
      loss: lastLoss,
      lr,
      tokensPerSec: trainMs > 0 ? (trainTokens * 1000) / trainMs : 0,
      etaSec: loop.timer.etaSec(totalSteps - state.step),
      msPerIter: loop.timer.currentMs,
    };
    if (valLoss !== undefined) ev.valLoss = valLoss;
    hooks.onProgress?.(ev);
  };
  const evaluate = async () => {
    if (val.length === 0) return;
    lastVal = sftLoss(model, val, B, pad);
    if (state.step === 0) state.baseValLoss = lastVal;
    await recordValidation(state, metrics, lastVal);
    emit('eval', loop.learningRateAt(state.step), lastVal);
  };
  const chart = () => writeLossChart(path.join(runDir, 'loss.png'), { ...state.history, title: `SFT LORA R${adapter.config.rank} ${trainable} PARAMS` });

  const loop = new TrainingLoop({
    totalSteps,
    learningRate: { learningRate: o.learningRate, minLearningRate: o.minLearningRate, warmupIters: Math.min(o.warmupIters, Math.floor(totalSteps / 2)), decayIters: totalSteps },
    signal: hooks.signal,
    resumedFrom,
    metrics,
    step: (step, lr) => {
      const { loss, grads } = accumulateGradients(accum, (micro) => {
        order.seek((step * accum + micro) * B);
        const c = collate(order.next(B).map((i) => train[i]!), pad);
        trainTokens += c.tokens;
        const res = tf.tidy(() => lossAndGrads(c, mixSeed(o.seed, 99, step, micro)));
        c.x.dispose();
        c.y.dispose();
        return res;
      });
      const { next, norm } = clippedUpdate(opt, adapter.params, new Map(names.map((n, i) => [n, grads[i]!])), lr, o.gradClip);
      adapter.setParams(next);
      grads.forEach((g) => g.dispose());
      lastLoss = loss;
      return { loss, gradNorm: norm };
    },
    diverged: (step, loss) => `SFT diverged at step ${step} (loss ${loss}); try a lower learningRate`,
    onStep: ({ step, loss, lr }) => {
      state.step = step;
      state.history.train.push({ step, loss });
      emit('train', lr);
    },
    evaluate: { every: o.evalInterval, run: (step) => (evaluatedAt(state, step) ? undefined : evaluate()) },
    chart: { every: o.chartInterval, draw: chart },
    checkpoint: {
      every: o.checkpointInterval,
      save: async () => {
        state.elapsedSec = elapsedBefore + (performance.now() - sessionStart) / 1000;
        lastCheckpoint = await saveCheckpoint(runDir, { step: state.step, state, optimizer: opt, keep: o.keepCheckpoints, write: (dir) => adapter.save(dir) });
      },
    },
  });

  let status: SftResult['status'];
  try {
    ({ status } = await loop.run());
    if (status === 'completed') {
      await evaluate();
      await loop.save(state.step);
      // How it was prompted in training: answer-time prompts should match (encodeQaPrompt options).
      const prompt = { ...(o.maxContextTokens ? { maxContextTokens: o.maxContextTokens } : {}), ...(o.systemPrompt ? { systemPrompt: o.systemPrompt } : {}) };
      adapter.meta = { ...adapter.meta, ...(o.adapterMeta ?? {}), prompt, step: state.step, valLoss: lastVal, baseValLoss: state.baseValLoss, trainedAt: new Date().toISOString() };
      await writeDirAtomic(path.join(runDir, 'adapter'), (tmp) => base.saveAdapter(tmp, adapter));
      if (o.saveMerged && base.tokenizer) {
        const merged = adapter.mergedModel(model);
        const meta = {
          source: 'sft',
          parent: o.baseVersion ?? null,
          base: o.base,
          adapter: path.join(runDir, 'adapter'),
          lora: adapter.configFile(),
          step: state.step,
          metrics: { sftValLoss: lastVal, sftBaseValLoss: state.baseValLoss },
          trainedAt: new Date().toISOString(),
        };
        await writeDirAtomic(path.join(runDir, 'model'), (tmp) => saveModelFiles(tmp, merged, base.tokenizer!, meta));
        merged.dispose();
      }
    }
    await chart();
  } finally {
    await metrics.close();
  }
  const { trainMs, steps: trainSteps } = loop.timer;
  const msPerIter = trainSteps ? trainMs / trainSteps : 0;
  const result: SftResult = {
    status,
    runDir,
    adapterDir: status === 'completed' ? path.join(runDir, 'adapter') : lastCheckpoint ?? runDir,
    step: state.step,
    totalSteps,
    epochs: (state.step * perStep) / train.length,
    trainLoss: lastLoss,
    valLoss: lastVal,
    baseValLoss: state.baseValLoss,
    lora: adapter.config,
    trainableParameters: trainable,
    totalParameters: total,
    trainableShare: trainable / total,
    examples: stats,
    msPerIter,
    msPerEpoch: msPerIter * stepsPerEpoch,
    tokensPerSec: trainMs > 0 ? (trainTokens * 1000) / trainMs : 0,
    backend,
  };
  if (status === 'completed' && o.saveMerged && base.kind === 'teamllm') result.modelDir = path.join(runDir, 'model');
  if (resumedFrom !== undefined) result.resumedFrom = resumedFrom;
  LoraAdapter.detach(model);
  adapter.dispose();
  model.dispose();
  opt.dispose();
  return result;
}
