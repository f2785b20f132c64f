/** One measurement of a reward model on a set of votes and pairs (held-out, or a sample of the training data). */
import type { Params } from '../../model/gpt.ts';
import { auc, pairAccuracy, type Estimate } from './metrics.ts';
import type { RewardScorer } from './store.ts';

export interface RewardEvaluation {
  step: number;
  accuracy: Estimate;
  auc: Estimate;
  /** Held-out losses (BT on pairs, logistic on votes). */
  pairLoss: number;
  voteLoss: number;
}

export interface EncodedFeedback {
  votes: { ids: number[]; label: boolean }[];
  pairs: { chosen: number[]; rejected: number[] }[];
}

/** −log σ(±s), computed without overflow. */
const logistic = (s: number, y: boolean) => {
  const z = y ? -s : s;
  return Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z)));
};

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

/** Scores every answer once (pairs' chosen, then rejected, then votes) with the given weights. */
export function evaluateRewardModel(scorer: RewardScorer, params: Params, step: number, { votes, pairs }: EncodedFeedback): RewardEvaluation {
  const seqs = [...pairs.map((x) => x.chosen), ...pairs.map((x) => x.rejected), ...votes.map((v) => v.ids)];
  const s = seqs.length ? scorer.scoreEncoded(seqs, params) : [];
  const n = pairs.length;
  const c = s.slice(0, n);
  const r = s.slice(n, 2 * n);
  const vs = s.slice(2 * n);
  const labels = votes.map((v) => v.label);
  return {
    step,
    accuracy: pairAccuracy(c, r),
    auc: auc(vs, labels),
    pairLoss: mean(c.map((ci, i) => logistic(ci - r[i]!, true))),
    voteLoss: mean(vs.map((si, i) => logistic(si, labels[i]!))),
  };
}

/** The log line: "held-out pair accuracy 71.0% (n=40), vote AUC 0.702 (n=80)". */
export function describeHeldOut(e: RewardEvaluation): string {
  const acc = Number.isFinite(e.accuracy.value) ? `${(100 * e.accuracy.value).toFixed(1)}% (n=${e.accuracy.n})` : '-';
  const a = Number.isFinite(e.auc.value) ? `${e.auc.value.toFixed(3)} (n=${e.auc.n})` : '-';
  return `held-out pair accuracy ${acc}, vote AUC ${a}`;
}
