/**
 * Training the reward model: base GPT frozen, LoRA adapter + scalar head trainable, on pairs
 * (Bradley-Terry) and single votes (logistic) at once, each step taking `batchSize` pairs and
 * `batchSize` votes. AdamW with warmup + cosine (the pretraining/SFT pieces), global-norm
 * clipping. Held-out pair accuracy and vote AUC are measured before training (step 0: the
 * untrained head, i.e. chance) and every `evalInterval` steps, logged to metrics.jsonl and drawn
 * (reward.png: training loss and held-out accuracy).
 *
 * Checkpoints: every `checkpointInterval` steps and when stopped, the trainables (LoRA adapter +
 * head), the AdamW moments and step, the data order (each shuffle's epoch and position) and the
 * curves so far are written atomically under `<runDir>/checkpoints/step-NNNNNNNN/` (only the
 * newest is kept). A run whose runDir holds a checkpoint continues from it (the job's resume), and
 * ends with the same weights as an uninterrupted run of the same seed.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { ensureBackend } from '../../model/backend.ts';
import type { Params } from '../../model/gpt.ts';
import { LoraAdapter } from '../../model/lora/adapter.ts';
import type { LoraConfig, LoraConfigInput } from '../../model/lora/config.ts';
import { mixSeed } from '../../model/random.ts';
import { writeJsonAtomic } from '../../model/files.ts';
import { loadTrainerCheckpoint, trainerCheckpoints, type TrainerCheckpointState } from '../checkpoint.ts';
import { AdamW } from '../adamw.ts';
import { clippedUpdate, TrainingLoop } from '../loop.ts';
import { EpochOrder, type OrderPosition } from '../data-order.ts';
import { openMetricsLog } from '../metrics-log.ts';
import type { RewardData } from '../feedback-datasets.ts';
import { writeLossChart } from '../loss-chart.ts';
import { combinedLoss, createHead, HEAD_BIAS, HEAD_WEIGHT, pairLoss, rewardBatch, rewardScores, voteLoss } from './model.ts';
import { DEFAULT_GATE, rewardGate, type Estimate, type GateOptions } from './metrics.ts';
import { describeHeldOut, evaluateRewardModel, type RewardEvaluation } from './evaluation.ts';
import { RewardScorer, saveRewardModel, type RewardConfigFile } from './store.ts';
import { openRewardBase } from './reward-base.ts';

export const RewardTrainOptionsSchema = z.object({
  /** Run folder: metrics.jsonl, reward.png, report. */
  runDir: z.string(),
  /** Where the finished reward model folder is written. */
  outDir: z.string(),
  name: z.string(),
  /**
   * Base model folder (trained here, or an imported chat model's version folder: its own chat
   * template, the adapter in PEFT's format), and its registry version when it has one.
   */
  base: z.string(),
  baseVersion: z.string().optional(),
  /** LoRA: rank, alpha, dropout, targets (names read as the base's family names them: LoraAdapter.create). */
  lora: z
    .custom<LoraConfigInput>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'a LoRA configuration object')
    .default({ rank: 8, alpha: 16, dropout: 0, targets: ['q', 'k', 'v', 'attn_out'] }),
  /** Passes over the training votes (or pairs, when there are more pairs). */
  epochs: z.number().positive().default(4),
  maxIters: z.number().int().positive().optional(),
  /** Pairs per step, and votes per step. */
  batchSize: z.number().int().positive().default(8),
  learningRate: z.number().positive().default(2e-3),
  minLearningRate: z.number().nonnegative().default(2e-4),
  warmupIters: z.number().int().nonnegative().default(10),
  weightDecay: z.number().nonnegative().default(0),
  gradClip: z.number().nonnegative().default(1),
  /** Weights of the Bradley-Terry (pairs) and logistic (votes) losses. */
  pairWeight: z.number().nonnegative().default(1),
  voteWeight: z.number().nonnegative().default(1),
  evalInterval: z.number().int().positive().optional(),
  /** Steps between checkpoints (one is also written when the run is stopped). */
  checkpointInterval: z.number().int().positive().default(50),
  maxContextTokens: z.number().int().positive().optional(),
  seed: z.number().int().default(1337),
  gate: z
    .object({ minAccuracy: z.number(), minAuc: z.number(), minHeldOutPairs: z.number().int(), minHeldOutVotes: z.number().int() })
    .partial()
    .optional(),
  /** Free text saved with the model (e.g. the simulated users' taste in tests and demos). */
  taste: z.string().optional(),
});

export type RewardTrainOptions = z.input<typeof RewardTrainOptionsSchema>;

export interface RewardProgress {
  phase: 'train' | 'eval';
  step: number;
  totalSteps: number;
  loss: number;
  /** Held-out pair accuracy (NaN without held-out pairs). */
  accuracy?: number;
  /** Held-out vote AUC. */
  auc?: number;
  etaSec: number;
  msPerStep: number;
}

export interface RewardHooks {
  signal?: AbortSignal;
  log?: (line: string) => void;
  onProgress?: (ev: RewardProgress) => void;
}

export type { RewardEvaluation } from './evaluation.ts';

export interface RewardTrainResult {
  status: 'completed' | 'aborted';
  /** Step of the newest checkpoint in runDir (a stopped run continues from it). */
  checkpointStep?: number;
  /** Step the run continued from, when it resumed from a checkpoint. */
  resumedFrom?: number;
  name: string;
  dir?: string;
  steps: number;
  trainLoss: number;
  before: RewardEvaluation;
  after: RewardEvaluation;
  trainAccuracy: Estimate;
  trainAuc: Estimate;
  gate: { passed: boolean; reasons: string[] };
  metrics: Record<string, number>;
  lora: LoraConfig;
  trainableParameters: number;
  msPerStep: number;
  wallSec: number;
  backend: string;
}

const REWARD_FORMAT = 'teamllm-reward-checkpoint/1';
/** Keeps the reward model's pair and vote orders apart from other seeded streams. */
const REWARD_SALT = 71;

/** What a reward checkpoint's state.json holds besides the tensors. */
interface RewardCheckpointState extends TrainerCheckpointState {
  pairs: OrderPosition;
  votes: OrderPosition;
  lastLoss: number;
  trainMs: number;
  history: { train: { step: number; loss: number }[]; val: { step: number; loss: number }[] };
  before: RewardEvaluation;
  after?: RewardEvaluation;
}

export async function trainRewardModel(options: RewardTrainOptions, data: Pick<RewardData, 'train' | 'heldOut'> & { stats?: RewardData['stats'] }, hooks: RewardHooks = {}): Promise<RewardTrainResult> {
  const o = RewardTrainOptionsSchema.parse(options);
  const log = hooks.log ?? (() => {});
  const started = performance.now();
  const backend = await ensureBackend();
  const gateOptions: GateOptions = { ...DEFAULT_GATE, ...(o.gate ?? {}) };
  await fs.mkdir(o.runDir, { recursive: true });

  const rewardBase = await openRewardBase(o.base, o.maxContextTokens ? { maxContextTokens: o.maxContextTokens } : {});
  const { model, encoding } = rewardBase;
  const head = createHead(model.config.nEmbd, mixSeed(o.seed, 5));
  const scorer = new RewardScorer(model, rewardBase.inputs, head);
  // An answer whose question does not fit an imported model's context even without passages is left out.
  let unfit = 0;
  const enc = (ex: Parameters<RewardScorer['encode']>[0]): number[] | undefined => {
    try {
      return scorer.encode(ex);
    } catch (err) {
      if (rewardBase.kind === 'teamllm') throw err;
      unfit += 1;
      return undefined;
    }
  };
  const votesOf = (vs: typeof data.train.votes) => vs.flatMap((v) => {
    const ids = enc(v);
    return ids ? [{ ids, label: v.label }] : [];
  });
  const pairsOf = (ps: typeof data.train.pairs) => ps.flatMap((p) => {
    const chosen = enc(p.chosen);
    const rejected = enc(p.rejected);
    return chosen && rejected ? [{ chosen, rejected }] : [];
  });
  const train = { votes: votesOf(data.train.votes), pairs: pairsOf(data.train.pairs) };
  const held = { votes: votesOf(data.heldOut.votes), pairs: pairsOf(data.heldOut.pairs) };
  if (unfit) log(`${unfit} rated answers do not fit the model's ${encoding.maxTokens} tokens: left out`);
  if (train.votes.length === 0 && train.pairs.length === 0) {
    model.dispose();
    throw new Error('reward: no training feedback after the held-out split');
  }

  const adapter = LoraAdapter.create(model, o.lora, { seed: mixSeed(o.seed, 9), ...(o.baseVersion ? { version: o.baseVersion } : {}), meta: { source: 'reward', name: o.name } });
  adapter.attach(model, o.baseVersion);
  const names = [...adapter.paramNames, HEAD_WEIGHT, HEAD_BIAS];
  const trainable = adapter.numParameters + model.config.nEmbd + 1;
  log(
    `reward model on ${o.baseVersion ?? path.basename(o.base)}: LoRA r=${adapter.config.rank} on ${adapter.config.targets.join(',')} + scalar head = ${trainable.toLocaleString('en-US')} trainable parameters; ` +
      `train ${train.votes.length} votes / ${train.pairs.length} pairs, held out ${held.votes.length} votes / ${held.pairs.length} pairs`,
  );

  const pad = rewardBase.inputs.pad;
  const B = o.batchSize;
  const usePairs = train.pairs.length > 0 && o.pairWeight > 0;
  const useVotes = train.votes.length > 0 && o.voteWeight > 0;
  const unit = Math.max(usePairs ? train.pairs.length : 0, useVotes ? train.votes.length : 0);
  const totalSteps = o.maxIters ?? Math.max(1, Math.ceil((o.epochs * unit) / B));
  const evalInterval = o.evalInterval ?? Math.max(1, Math.ceil(totalSteps / 10));
  const schedule = { learningRate: o.learningRate, minLearningRate: o.minLearningRate, warmupIters: Math.min(o.warmupIters, Math.floor(totalSteps / 2)), decayIters: totalSteps };
  const pairCursor = new EpochOrder(usePairs ? train.pairs.length : 0, mixSeed(o.seed, 1), REWARD_SALT);
  const voteCursor = new EpochOrder(useVotes ? train.votes.length : 0, mixSeed(o.seed, 2), REWARD_SALT);
  const opt = new AdamW({ beta1: 0.9, beta2: 0.999, weightDecay: o.weightDecay }, (n) => n !== HEAD_BIAS && o.weightDecay > 0);
  const run = {
    seed: o.seed, totalSteps, batchSize: B, learningRate: o.learningRate, minLearningRate: o.minLearningRate, warmupIters: o.warmupIters,
    weightDecay: o.weightDecay, gradClip: o.gradClip, pairWeight: o.pairWeight, voteWeight: o.voteWeight, lora: adapter.config,
    base: adapter.base.fingerprint, trainVotes: train.votes.length, trainPairs: train.pairs.length, heldOutVotes: held.votes.length, heldOutPairs: held.pairs.length,
  };

  const paramsWith = (trainables: Map<string, Tensor>): Params => new Map([...model.params, ...trainables]);
  const current = () => new Map<string, Tensor>([...adapter.params, ...head]);

  const evaluate = (step: number, votes: typeof held.votes, pairs: typeof held.pairs): RewardEvaluation =>
    evaluateRewardModel(scorer, paramsWith(current()), step, { votes, pairs });

  // Resume: the newest checkpoint in runDir, if it was made by this run's settings.
  const found = await loadTrainerCheckpoint<RewardCheckpointState>(o.runDir, { format: REWARD_FORMAT, run, what: 'reward' }, opt);
  let resumed: RewardCheckpointState | undefined;
  if (found) {
    const st = found.state;
    adapter.setParams(new Map(adapter.paramNames.map((n) => [n, found.trainables.get(n)!])));
    for (const n of [HEAD_WEIGHT, HEAD_BIAS]) {
      head.get(n)!.dispose();
      head.set(n, found.trainables.get(n)!);
    }
    pairCursor.restore(st.pairs);
    voteCursor.restore(st.votes);
    resumed = st;
    log(`resuming from the checkpoint at step ${st.step} of ${totalSteps}`);
  }

  const metricsFile = await openMetricsLog(path.join(o.runDir, 'metrics.jsonl'), resumed?.step);
  const history = resumed?.history ?? { train: [] as { step: number; loss: number }[], val: [] as { step: number; loss: number }[] };
  const record = async (e: RewardEvaluation) => {
    const shown = Number.isFinite(e.accuracy.value) ? e.accuracy.value : e.auc.value;
    if (Number.isFinite(shown)) history.val.push({ step: e.step, loss: shown });
    await metricsFile.appendFile(`${JSON.stringify({ step: e.step, heldout_accuracy: e.accuracy.value, heldout_auc: e.auc.value, heldout_pair_loss: e.pairLoss, heldout_vote_loss: e.voteLoss })}\n`);
    hooks.onProgress?.({ phase: 'eval', step: e.step, totalSteps, loss: history.train.at(-1)?.loss ?? NaN, accuracy: e.accuracy.value, auc: e.auc.value, etaSec: 0, msPerStep: 0 });
  };
  const chart = () =>
    writeLossChart(path.join(o.runDir, 'reward.png'), {
      ...history,
      title: 'REWARD MODEL',
      labels: { train: 'LOSS', val: held.pairs.length ? 'HELD-OUT ACC' : 'HELD-OUT AUC' },
    });

  let batchRef: { x: Tensor; last: Tensor; nPairs: number; labels: boolean[] } | undefined;
  let dropoutSeed = 0;
  const lossAndGrads = tf.valueAndGrads((...ps: Tensor[]) => {
    const p = paramsWith(new Map(names.map((n, i) => [n, ps[i]!])));
    const b = batchRef!;
    const s = rewardScores(model, b, p, { training: true, dropoutSeed });
    const parts: { pairs?: Tensor; votes?: Tensor } = {};
    if (b.nPairs > 0) parts.pairs = pairLoss(tf.slice(s, [0], [b.nPairs]), tf.slice(s, [b.nPairs], [b.nPairs]));
    if (b.labels.length > 0) parts.votes = voteLoss(tf.slice(s, [2 * b.nPairs], [b.labels.length]), b.labels);
    return combinedLoss(parts, { pairs: o.pairWeight, votes: o.voteWeight }) as tf.Scalar;
  });

  let lastLoss = resumed?.lastLoss ?? NaN;
  const trainMsBefore = resumed?.trainMs ?? 0;
  let before = resumed?.before;
  let after = resumed?.after;
  const loop = new TrainingLoop({
    totalSteps,
    learningRate: { learningRate: o.learningRate, minLearningRate: o.minLearningRate, warmupIters: Math.min(o.warmupIters, Math.floor(totalSteps / 2)), decayIters: totalSteps },
    signal: hooks.signal,
    resumedFrom: resumed?.step,
    metrics: metricsFile,
    step: (step, lr) => {
      const pi = usePairs ? pairCursor.next(B) : [];
      const vi = useVotes ? voteCursor.next(B) : [];
      const seqs = [...pi.map((i) => train.pairs[i]!.chosen), ...pi.map((i) => train.pairs[i]!.rejected), ...vi.map((i) => train.votes[i]!.ids)];
      const batch = rewardBatch(seqs, pad);
      batchRef = { ...batch, nPairs: pi.length, labels: vi.map((i) => train.votes[i]!.label) };
      dropoutSeed = mixSeed(o.seed, 99, step);
      const res = tf.tidy(() => lossAndGrads(names.map((n) => (n === HEAD_WEIGHT || n === HEAD_BIAS ? head.get(n)! : adapter.params.get(n)!))));
      batch.x.dispose();
      batch.last.dispose();
      lastLoss = res.value.dataSync()[0]!;
      res.value.dispose();
      const { next, norm } = clippedUpdate(opt, current(), new Map(names.map((n, i) => [n, res.grads[i]!])), lr, o.gradClip);
      res.grads.forEach((g) => g.dispose());
      adapter.setParams(new Map(adapter.paramNames.map((n) => [n, next.get(n)!])));
      for (const n of [HEAD_WEIGHT, HEAD_BIAS]) {
        head.get(n)!.dispose();
        head.set(n, next.get(n)!);
      }
      return { loss: lastLoss, gradNorm: norm };
    },
    diverged: (step, loss) => `reward model training diverged at step ${step} (loss ${loss}); try a lower learningRate`,
    onStep: ({ step, loss }) => {
      history.train.push({ step, loss });
      const { emaMs } = loop.timer;
      hooks.onProgress?.({ phase: 'train', step, totalSteps, loss, etaSec: ((totalSteps - step) * emaMs) / 1000, msPerStep: emaMs });
    },
    evaluate: {
      every: evalInterval,
      run: async (step) => {
        if (step === 0) {
          before = evaluate(0, held.votes, held.pairs);
          log(`before training (untrained head): ${describeHeldOut(before)}`);
          await record(before);
        } else if (after?.step !== step) {
          after = evaluate(step, held.votes, held.pairs);
          await record(after);
          await chart();
        }
      },
    },
    ...trainerCheckpoints(o.runDir, o.checkpointInterval, opt, (step): { state: RewardCheckpointState; trainables: Map<string, Tensor> } => ({
      state: {
        format: REWARD_FORMAT, step, run, pairs: pairCursor.position, votes: voteCursor.position,
        lastLoss, trainMs: trainMsBefore + loop.timer.trainMs, history, before: before!, ...(after ? { after } : {}),
      },
      trainables: current(),
    })),
  });
  let status: RewardTrainResult['status'];
  let step: number;
  let lastCheckpoint: number | undefined;
  try {
    ({ status, step, lastCheckpoint } = await loop.run());
    if (status === 'aborted') log(`stopped at step ${step}; checkpoint saved at step ${lastCheckpoint ?? 0}`);
    else {
      after = evaluate(step, held.votes, held.pairs);
      await record(after);
      await chart();
    }
    after ??= evaluate(step, held.votes, held.pairs);
    log(`after ${step} steps: ${describeHeldOut(after)}`);
    await chart();
  } finally {
    await metricsFile.close();
  }
  const trainMs = trainMsBefore + loop.timer.trainMs;
  before = before!;

  // How it does on what it was trained on (for spotting over- and under-fitting), and the scale
  // of its scores (RLHF whitens rewards; these numbers say what to expect).
  const sample = train.votes.slice(0, 256);
  const trainEval = evaluate(step, sample, train.pairs.slice(0, 128));
  const trainScores = scorer.scoreEncoded(sample.map((v) => v.ids), paramsWith(current()));
  const scoreMean = trainScores.reduce((a, b) => a + b, 0) / Math.max(1, trainScores.length);
  const scoreStd = Math.sqrt(trainScores.reduce((a, b) => a + (b - scoreMean) ** 2, 0) / Math.max(1, trainScores.length));
  const gate = rewardGate(after.accuracy, after.auc, gateOptions);
  const metrics: Record<string, number> = {
    pairAccuracy: after.accuracy.value,
    pairAccuracyLo: after.accuracy.lo,
    pairAccuracyHi: after.accuracy.hi,
    heldOutPairs: after.accuracy.n,
    voteAuc: after.auc.value,
    voteAucLo: after.auc.lo,
    voteAucHi: after.auc.hi,
    heldOutVotes: after.auc.n,
    heldOutPairLoss: after.pairLoss,
    heldOutVoteLoss: after.voteLoss,
    baselinePairAccuracy: before.accuracy.value,
    baselineVoteAuc: before.auc.value,
    trainPairAccuracy: trainEval.accuracy.value,
    trainVoteAuc: trainEval.auc.value,
    trainLoss: lastLoss,
    scoreMean,
    scoreStd,
    steps: step,
  };
  const msPerStep = step ? trainMs / step : 0;
  const result: RewardTrainResult = {
    status,
    ...(lastCheckpoint !== undefined ? { checkpointStep: lastCheckpoint } : {}),
    resumedFrom: resumed?.step,
    name: o.name,
    steps: step,
    trainLoss: lastLoss,
    before,
    after,
    trainAccuracy: trainEval.accuracy,
    trainAuc: trainEval.auc,
    gate: status === 'completed' ? gate : { passed: false, reasons: ['stopped before the end of training', ...gate.reasons] },
    metrics,
    lora: adapter.config,
    trainableParameters: trainable,
    msPerStep,
    wallSec: 0,
    backend,
  };
  try {
    if (status === 'completed') {
      const config: RewardConfigFile = {
        format: 'teamllm-reward/1',
        name: o.name,
        base: { ...(o.baseVersion ? { version: o.baseVersion } : {}), dir: path.resolve(o.base), fingerprint: adapter.base.fingerprint, config: model.config },
        encoding,
        metrics,
        gate: result.gate,
        data: { trainVotes: train.votes.length, trainPairs: train.pairs.length, heldOutVotes: held.votes.length, heldOutPairs: held.pairs.length, ...(data.stats ?? {}) },
        ...(o.taste ? { taste: o.taste } : {}),
        runDir: path.resolve(o.runDir),
        trainedAt: new Date().toISOString(),
      };
      adapter.meta = { ...adapter.meta, steps: step, ...metrics };
      await saveRewardModel(o.outDir, { adapter, head, config, saveAdapter: rewardBase.saveAdapter });
      result.dir = o.outDir;
    }
    result.wallSec = (performance.now() - started) / 1000;
    await writeJsonAtomic(path.join(o.runDir, 'result.json'), { ...result, metrics, msPerStep, wallSec: result.wallSec });
  } finally {
    LoraAdapter.detach(model);
    adapter.dispose();
    for (const t of head.values()) t.dispose();
    opt.dispose();
    model.dispose();
  }
  return result;
}
