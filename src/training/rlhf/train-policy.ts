/**
 * Runs the chosen trainer (PPO, or KTO/DPO offline) on a policy and records its curves: each step
 * to metrics.jsonl, a held-out measure every `evalInterval` steps, and both into every checkpoint,
 * so that a resumed job neither re-measures the start nor loses its curves.
 */
import path from 'node:path';
import type { promises as fs } from 'node:fs';
import type { LoraAdapter } from '../../model/lora/adapter.ts';
import { openMetricsLog } from '../metrics-log.ts';
import type { RewardModel } from '../reward/reward-model.ts';
import type { ChartPoint } from './chart.ts';
import type { RlhfData } from './data.ts';
import type { RlhfPolicy } from './job-inputs.ts';
import type { RlhfMeasure } from './gate.ts';
import type { RlhfAlgo, RlhfJobContext, RlhfJobOptions, RlhfJobResult } from './job-spec.ts';
import type { MeasurePolicy } from './measure.ts';
import { readOfflineCheckpointExtra, trainOffline, type OfflineStepStats } from './offline.ts';
import { readPpoCheckpointExtra, trainPpo, type PpoStepStats } from './ppo.ts';

/** What the job keeps in each checkpoint besides the trainer's own state. */
export interface RlhfCheckpointExtra {
  before: RlhfMeasure;
  curves: Record<'reward' | 'kl' | 'entropy' | 'loss', ChartPoint[]>;
  evals: Record<'reward' | 'kl' | 'entropy', ChartPoint[]>;
}

export interface RlhfRunRecord {
  /** The checkpoint the run continues from, if any; `extra` is undefined when it carries none. */
  resumed?: { step: number; extra?: RlhfCheckpointExtra };
  metricsFile: string;
  metrics: fs.FileHandle;
  curves: RlhfCheckpointExtra['curves'];
  evals: RlhfCheckpointExtra['evals'];
}

/** Reads the newest checkpoint in runDir (if any) and opens metrics.jsonl where it left off. */
export async function openRunRecord(algo: RlhfAlgo, runDir: string, log: (line: string) => void): Promise<RlhfRunRecord> {
  const resumed = algo === 'ppo' ? await readPpoCheckpointExtra(runDir) : await readOfflineCheckpointExtra(runDir);
  const resumedExtra = resumed?.extra as RlhfCheckpointExtra | undefined;
  if (resumed) log(`resuming from the checkpoint at step ${resumed.step}`);
  const metricsFile = path.join(runDir, 'metrics.jsonl');
  const metrics = await openMetricsLog(metricsFile, resumed?.step);
  const curves = resumedExtra?.curves ?? { reward: [] as ChartPoint[], kl: [] as ChartPoint[], entropy: [] as ChartPoint[], loss: [] as ChartPoint[] };
  const evals = resumedExtra?.evals ?? { reward: [] as ChartPoint[], kl: [] as ChartPoint[], entropy: [] as ChartPoint[] };
  return { ...(resumed ? { resumed: { step: resumed.step, ...(resumedExtra ? { extra: resumedExtra } : {}) } } : {}), metricsFile, metrics, curves, evals };
}

export function addEval(record: RlhfRunRecord, step: number, m: RlhfMeasure): void {
  record.evals.reward.push({ step, value: m.reward });
  record.evals.kl.push({ step, value: m.kl });
  record.evals.entropy.push({ step, value: m.entropy });
}

export interface TrainedPolicy {
  adapter: LoraAdapter;
  status: RlhfJobResult['status'];
  /** The step of the checkpoint written last, if any. */
  checkpointStep?: number;
  /** The last step finished (the resumed step when none was). */
  steps: number;
}

export async function trainPolicy(o: {
  p: RlhfJobOptions;
  ctx: RlhfJobContext;
  policy: RlhfPolicy;
  data: RlhfData;
  reward: RewardModel | undefined;
  record: RlhfRunRecord;
  measure: MeasurePolicy;
  before: RlhfMeasure;
  startStep: number;
  /** The base's registry version, kept with an imported model's adapter. */
  baseVersion?: string;
}): Promise<TrainedPolicy> {
  const { p, ctx, policy, data, reward, record, measure, before } = o;
  const { gpt, codec } = policy;
  const { runDir } = ctx;
  const { metrics, curves, evals } = record;
  let steps = o.startStep;
    const lora = { ...(p.rank ? { rank: p.rank } : { rank: 4 }), ...(p.alpha ? { alpha: p.alpha } : { alpha: 8 }), ...(p.targets ? { targets: p.targets } : {}) };
    const totalSteps = p.steps ?? (p.algo === 'ppo' ? 20 : 60);
    const evalInterval = p.evalInterval ?? Math.max(1, Math.ceil(totalSteps / 4));
    const common = { model: gpt, lora, seed: p.seed, ...(ctx.signal ? { signal: ctx.signal } : {}) };
  const afterStep = async (step: number, line: Record<string, number>) => {
    steps = step;
    await metrics.appendFile(`${JSON.stringify({ step, ...line })}\n`);
    ctx.progress?.({ stage: 'rlhf', step, totalSteps, ...(line.loss !== undefined ? { loss: line.loss } : {}), ...(line.reward !== undefined ? { reward: line.reward } : {}), ...(line.kl !== undefined ? { kl: line.kl } : {}) });
    if (step % evalInterval === 0 && step < totalSteps) {
      const m = await measure('eval', step);
      addEval(record, step, m);
      await metrics.appendFile(`${JSON.stringify({ step, eval_reward: m.reward, eval_kl: m.kl, eval_entropy: m.entropy })}\n`);
    }
  };
  const checkpointExtra = (): RlhfCheckpointExtra => ({ before, curves, evals });
  if (p.algo === 'ppo') {
    const r = await trainPpo({
      ...common,
      episodes: codec,
      ...(policy.kind === 'chat' && o.baseVersion ? { baseVersion: o.baseVersion } : {}),
      prompts: data.train.prompts,
      reward: reward!,
      steps: totalSteps,
      ...(p.promptsPerStep ? { promptsPerStep: p.promptsPerStep } : {}),
      ...(p.samplesPerPrompt ? { samplesPerPrompt: p.samplesPerPrompt } : {}),
      ...(p.ppoEpochs ? { ppoEpochs: p.ppoEpochs } : {}),
      ...(p.initKlCoef !== undefined ? { initKlCoef: p.initKlCoef } : {}),
      ...(p.targetKl !== undefined ? { targetKl: p.targetKl } : {}),
      learningRate: p.learningRate ?? 1e-3,
      runDir,
      ...(p.checkpointInterval ? { checkpointInterval: p.checkpointInterval } : {}),
      checkpointExtra,
      onStep: async (st: PpoStepStats) => {
        curves.reward.push({ step: st.step, value: st.reward });
        curves.kl.push({ step: st.step, value: st.kl });
        curves.entropy.push({ step: st.step, value: st.entropy });
        curves.loss.push({ step: st.step, value: st.policyLoss + st.valueLoss });
        await afterStep(st.step, { reward: st.reward, kl: st.kl, kl_coef: st.klCoef, entropy: st.entropy, policy_loss: st.policyLoss, value_loss: st.valueLoss, clip_fraction: st.clipFraction, approx_kl: st.approxKl, ms: Math.round(st.ms) });
      },
    });
    r.valueHead.dispose();
    return { adapter: r.adapter, status: r.status, ...(r.checkpointStep !== undefined ? { checkpointStep: r.checkpointStep } : {}), steps };
  }
  const r = await trainOffline({
    ...common,
    episodes: codec,
    ...(policy.kind === 'chat' && o.baseVersion ? { baseVersion: o.baseVersion } : {}),
    algo: p.algo,
    pairs: data.train.pairs,
    votes: data.train.votes,
    steps: totalSteps,
    beta: p.beta ?? 0.1,
    learningRate: p.learningRate ?? 1e-3,
    ...(p.batchSize ? { batchSize: p.batchSize } : {}),
    runDir,
    ...(p.checkpointInterval ? { checkpointInterval: p.checkpointInterval } : {}),
    checkpointExtra,
    onStep: async (st: OfflineStepStats) => {
      curves.loss.push({ step: st.step, value: st.loss });
      curves.reward.push({ step: st.step, value: st.rewardLiked - st.rewardDisliked });
      await afterStep(st.step, { loss: st.loss, reward_liked: st.rewardLiked, reward_disliked: st.rewardDisliked, ...(st.accuracy !== undefined ? { accuracy: st.accuracy } : {}), ...(st.zRef !== undefined ? { z_ref: st.zRef } : {}), ms: Math.round(st.ms) });
    },
  });
  return { adapter: r.adapter, status: r.status, ...(r.checkpointStep !== undefined ? { checkpointStep: r.checkpointStep } : {}), steps };
}
