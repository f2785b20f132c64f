/**
 * How good a reward model is on held-out questions, and whether it is better than chance:
 * accuracy on pairs (the liked answer scores higher) with a Wilson interval, and AUC on single
 * votes (a random 👍 scores above a random 👎) with the Hanley-McNeil interval.
 */

const Z95 = 1.959964;

export interface Estimate {
  value: number;
  lo: number;
  hi: number;
  n: number;
}

/** Share of pairs ranked right (ties count half) with a 95% Wilson score interval. */
export function pairAccuracy(chosen: readonly number[], rejected: readonly number[]): Estimate {
  const n = chosen.length;
  if (n === 0) return { value: NaN, lo: NaN, hi: NaN, n: 0 };
  let right = 0;
  for (let i = 0; i < n; i++) right += chosen[i]! > rejected[i]! ? 1 : chosen[i] === rejected[i] ? 0.5 : 0;
  const p = right / n;
  const z2 = Z95 * Z95;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (Z95 * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { value: p, lo: Math.max(0, centre - half), hi: Math.min(1, centre + half), n };
}

/**
 * ROC AUC of scores for binary labels (Mann-Whitney U, ties count half), with a 95% interval
 * from the Hanley-McNeil (1982) standard error. n = number of examples; NaN without both classes.
 */
export function auc(scores: readonly number[], labels: readonly boolean[]): Estimate {
  const order = scores.map((s, i) => ({ s, y: labels[i]! })).sort((a, b) => a.s - b.s);
  const nPos = order.filter((o) => o.y).length;
  const nNeg = order.length - nPos;
  if (nPos === 0 || nNeg === 0) return { value: NaN, lo: NaN, hi: NaN, n: order.length };
  // Sum of (mid-)ranks of the positives.
  let rankSum = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]!.s === order[i]!.s) j++;
    const mid = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (order[k]!.y) rankSum += mid;
    i = j + 1;
  }
  const a = (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
  const q1 = a / (2 - a);
  const q2 = (2 * a * a) / (1 + a);
  const variance = Math.max(0, (a * (1 - a) + (nPos - 1) * (q1 - a * a) + (nNeg - 1) * (q2 - a * a)) / (nPos * nNeg));
  const se = Math.sqrt(variance);
  return { value: a, lo: Math.max(0, a - Z95 * se), hi: Math.min(1, a + Z95 * se), n: order.length };
}

export interface GateOptions {
  /** Held-out pair accuracy needed (point estimate). */
  minAccuracy: number;
  /** Held-out vote AUC needed (point estimate). */
  minAuc: number;
  /** Fewer held-out pairs than this: accuracy is not judged (too noisy). */
  minHeldOutPairs: number;
  /** Fewer held-out votes than this (or no 👍 or no 👎): AUC is not judged. */
  minHeldOutVotes: number;
}

export const DEFAULT_GATE: GateOptions = { minAccuracy: 0.6, minAuc: 0.6, minHeldOutPairs: 10, minHeldOutVotes: 20 };

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

/**
 * Better than chance on held-out data? Each measure with enough held-out examples must reach its
 * threshold and have its 95% interval above 0.5; at least one measure must be judged.
 */
export function rewardGate(accuracy: Estimate, votesAuc: Estimate, options: GateOptions = DEFAULT_GATE): { passed: boolean; reasons: string[] } {
  const reasons: string[] = [];
  let judged = 0;
  let failed = false;
  if (accuracy.n >= options.minHeldOutPairs) {
    judged++;
    const line = `held-out pair accuracy ${pct(accuracy.value)} (95% CI ${pct(accuracy.lo)}–${pct(accuracy.hi)}, n=${accuracy.n} pairs)`;
    if (accuracy.lo <= 0.5) {
      failed = true;
      reasons.push(`${line}: not distinguishable from chance (the interval includes 50%)`);
    } else if (accuracy.value < options.minAccuracy) {
      failed = true;
      reasons.push(`${line}: below the required ${pct(options.minAccuracy)}`);
    } else reasons.push(`${line}: better than chance`);
  } else reasons.push(`pair accuracy not judged: ${accuracy.n} held-out pairs (needs ${options.minHeldOutPairs})`);
  if (votesAuc.n >= options.minHeldOutVotes && Number.isFinite(votesAuc.value)) {
    judged++;
    const line = `held-out vote AUC ${votesAuc.value.toFixed(3)} (95% CI ${votesAuc.lo.toFixed(3)}–${votesAuc.hi.toFixed(3)}, n=${votesAuc.n} votes)`;
    if (votesAuc.lo <= 0.5) {
      failed = true;
      reasons.push(`${line}: not distinguishable from chance (the interval includes 0.5)`);
    } else if (votesAuc.value < options.minAuc) {
      failed = true;
      reasons.push(`${line}: below the required ${options.minAuc.toFixed(2)}`);
    } else reasons.push(`${line}: better than chance`);
  } else reasons.push(`vote AUC not judged: ${votesAuc.n} held-out votes${Number.isFinite(votesAuc.value) || votesAuc.n === 0 ? '' : ' (all 👍 or all 👎)'} (needs ${options.minHeldOutVotes} with both 👍 and 👎)`);
  if (judged === 0) {
    failed = true;
    reasons.push('too little held-out feedback to tell this reward model from chance');
  }
  return { passed: !failed, reasons };
}
