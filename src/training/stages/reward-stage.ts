import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { initBackend, parseBackendName } from '../../model/backend.ts';
import { rewardData } from '../feedback-datasets.ts';
import type { RunStage } from '../jobs/stage.ts';
import { DEFAULT_GATE } from '../reward/metrics.ts';
import { rewardDir, setCurrentRewardModel } from '../reward/store.ts';
import { trainRewardModel } from '../reward/train.ts';
import { resolveBase } from '../base-model.ts';
import { NO_BASE_TO_TUNE } from '../sft/pipeline.ts';
import { int, num, parseStageParams } from './stage-params.ts';

/** Least feedback a reward model is trained on: answers with a net vote, and of each kind. */
export const MIN_VOTES = 100;
export const MIN_EACH = 20;

/**
 * `/train reward [base=v3] [name=...] [heldOut=0.2] [epochs=4] [rank=8] ...`: a reward model
 * (base frozen + LoRA + scalar head) trained on the 👍/👎 in the records — pairs of answers to one
 * question (Bradley-Terry) and single votes (logistic) — and measured on held-out questions. It
 * is saved under $TEAMLLM_HOME/reward/<name> either way, but made the one RLHF uses only when it
 * is better than chance there (the gate). It checkpoints every 50 steps and when stopped; a resumed
 * job (or a rerun in the same run folder) continues from the newest checkpoint.
 */
export const runStage: RunStage = async (ctx) => {
  const { params, home, runDir, resume, signal, progress, log } = ctx;
  const p = parseStageParams('reward', params, {
    base: z.string().optional(),
    name: z.string().optional(),
    heldOut: num().refine((v) => v > 0 && v < 1, 'must be between 0 and 1').optional(),
    minVotes: int().optional(),
    epochs: num().optional(),
    maxIters: int().optional(),
    batchSize: int().optional(),
    learningRate: num().optional(),
    rank: int().optional(),
    alpha: num().optional(),
    targets: z.string().optional(),
    pairWeight: num().optional(),
    voteWeight: num().optional(),
    /** `anonymousVotes=false`: train only on votes of identities someone vouches for (docs/feedback-loop.md). */
    anonymousVotes: z.enum(['true', 'false']).optional(),
    minAccuracy: num().optional(),
    minAuc: num().optional(),
    evalInterval: int().optional(),
    checkpointInterval: int().optional(),
    maxContextTokens: int().optional(),
    seed: int().optional(),
    backend: z.string().optional(),
  });
  if (p.backend) await initBackend(parseBackendName(p.backend));
  const heldOut = p.heldOut ?? 0.2;
  const store = ctx.store.open();
  if (!store) throw new Error(`reward: no feedback recorded yet (no ${ctx.store.location}); users rate answers with 👍/👎 first`);
  const data = await rewardData(store, { heldOutFraction: heldOut, seed: p.seed ?? 0, ...(p.anonymousVotes === 'false' ? { anonymousVotes: false } : {}) }).finally(() => store.close());
  const s = data.stats;
  const minVotes = Math.max(p.minVotes ?? MIN_VOTES, Math.ceil(DEFAULT_GATE.minHeldOutVotes / heldOut));
  const minEach = Math.min(MIN_EACH, Math.ceil(minVotes / 5));
  const have = `${s.votes} answers with a net vote (${s.up} 👍, ${s.down} 👎) on ${s.questions} questions, ${s.pairs} liked/disliked pairs`;
  if (s.votes < minVotes || s.up < minEach || s.down < minEach) {
    throw new Error(
      `reward: too little feedback to train a reward model: ${have}. It needs at least ${minVotes} rated answers, ` +
        `${minEach} of them 👍 and ${minEach} 👎, so that ${Math.round(heldOut * 100)}% of the questions can be held out to check it against chance. ` +
        'Pairs (two answers to one question, one liked, one disliked — e.g. after regenerate) help most.',
    );
  }
  const h = data.heldOut;
  if (h.votes.length < DEFAULT_GATE.minHeldOutVotes && h.pairs.length < DEFAULT_GATE.minHeldOutPairs) {
    throw new Error(
      `reward: the held-out questions (${s.heldOutQuestions} of ${s.questions}) have only ${h.votes.length} votes and ${h.pairs.length} pairs; ` +
        `the check against chance needs ${DEFAULT_GATE.minHeldOutVotes} votes or ${DEFAULT_GATE.minHeldOutPairs} pairs there. Collect feedback on more distinct questions, or raise heldOut.`,
    );
  }
  log(`feedback: ${have}; held out ${s.heldOutQuestions} questions (${h.votes.length} votes, ${h.pairs.length} pairs)`);

  const base = await resolveBase(home, p.base, NO_BASE_TO_TUNE);
  // Run folders are named <job>-<kind> ("7-reward"): the default name is "<base>-reward-<job>".
  const name = p.name ?? `${base.version ?? 'base'}-reward-${basename(runDir).replace(/-reward$/, '')}`.replace(/[^\w.-]/g, '-');
  const outDir = rewardDir(home, name);
  const lora = {
    ...(p.rank !== undefined ? { rank: p.rank } : {}),
    ...(p.alpha !== undefined ? { alpha: p.alpha } : {}),
    ...(p.targets !== undefined ? { targets: p.targets } : {}),
  };
  // A checkpoint in the run folder (a stopped or crashed run) is continued from in any case.
  if (resume && !existsSync(join(runDir, 'checkpoints'))) log('resume: no reward checkpoint in this run yet; training from the start');
  const result = await trainRewardModel(
    {
      runDir,
      outDir,
      name,
      base: base.dir,
      ...(base.version ? { baseVersion: base.version } : {}),
      ...(Object.keys(lora).length ? { lora: { dropout: 0, ...lora } } : {}),
      ...Object.fromEntries((['epochs', 'maxIters', 'batchSize', 'learningRate', 'pairWeight', 'voteWeight', 'evalInterval', 'checkpointInterval', 'maxContextTokens', 'seed'] as const).filter((k) => p[k] !== undefined).map((k) => [k, p[k]])),
      gate: { ...(p.minAccuracy !== undefined ? { minAccuracy: p.minAccuracy } : {}), ...(p.minAuc !== undefined ? { minAuc: p.minAuc } : {}) },
    },
    data,
    {
      signal,
      log,
      onProgress: (ev) => {
        const measured = [
          ...(ev.accuracy !== undefined && Number.isFinite(ev.accuracy) ? [`held-out pair accuracy ${(100 * ev.accuracy).toFixed(1)}%`] : []),
          ...(ev.auc !== undefined && Number.isFinite(ev.auc) ? [`vote AUC ${ev.auc.toFixed(3)}`] : []),
        ];
        progress({
          stage: ev.phase === 'eval' ? 'evaluate' : 'reward',
          step: ev.step,
          totalSteps: ev.totalSteps,
          ...(Number.isFinite(ev.loss) ? { loss: ev.loss } : {}),
          ...(ev.phase === 'train' ? { etaSec: ev.etaSec } : {}),
          ...(measured.length ? { message: measured.join(', ') } : {}),
        });
      },
    },
  );
  const m = result.metrics;
  const metrics: Record<string, number> = {
    steps: result.steps,
    trainLoss: result.trainLoss,
    secPerStep: result.msPerStep / 1000,
    trainableParameters: result.trainableParameters,
    heldOutPairs: m.heldOutPairs!,
    heldOutVotes: m.heldOutVotes!,
  };
  // "base → trained" in the job's message: the untrained head is the chance baseline.
  if (Number.isFinite(m.pairAccuracy)) Object.assign(metrics, { pairAccuracy: m.pairAccuracy, basePairAccuracy: m.baselinePairAccuracy, pairAccuracyLo: m.pairAccuracyLo, pairAccuracyHi: m.pairAccuracyHi });
  if (Number.isFinite(m.voteAuc)) Object.assign(metrics, { voteAuc: m.voteAuc, baseVoteAuc: m.baselineVoteAuc, voteAucLo: m.voteAucLo, voteAucHi: m.voteAucHi });
  const files = { lossChart: join(runDir, 'reward.png'), metrics: join(runDir, 'metrics.jsonl'), ...(result.dir ? { rewardModel: result.dir } : {}) };
  if (result.status === 'aborted') {
    const saved =
      result.checkpointStep !== undefined
        ? `checkpoint saved at step ${result.checkpointStep}: /train resume continues from it`
        : 'no checkpoint yet (it stopped before the first step): start it again with /train reward';
    return { summary: `Reward model training stopped at step ${result.steps}; ${saved}.`, metrics, files, gate: result.gate };
  }
  const measured = [
    Number.isFinite(m.pairAccuracy) ? `held-out pair accuracy ${(100 * m.pairAccuracy!).toFixed(1)}% (95% CI ${(100 * m.pairAccuracyLo!).toFixed(1)}–${(100 * m.pairAccuracyHi!).toFixed(1)}%, ${m.heldOutPairs} pairs)` : undefined,
    Number.isFinite(m.voteAuc) ? `vote AUC ${m.voteAuc!.toFixed(3)} (95% CI ${m.voteAucLo!.toFixed(3)}–${m.voteAucHi!.toFixed(3)}, ${m.heldOutVotes} votes)` : undefined,
  ].filter(Boolean);
  let summary: string;
  if (result.gate.passed) {
    await setCurrentRewardModel(home, name);
    summary = `Reward model "${name}" is now the one RLHF uses: ${measured.join(', ')}.`;
  } else {
    summary = `Reward model "${name}" is not used: it is no better than chance on held-out questions (${result.gate.reasons.filter((r) => !/better than chance$/.test(r)).join('; ')}). Collect more feedback and train again.`;
  }
  return { summary, metrics, files, gate: result.gate };
};
