/** Whether an RLHF run may be promoted (`rlhfGate`), and the report that says why. */
import type { QaScores } from '../eval/qa-eval.ts';
import type { RlhfData } from './data.ts';
import type { PolicyEvaluation } from './evaluate.ts';

export interface RlhfMeasure {
  /** Reward-model score (mean over sampled answers) or, without one, the held-out implicit reward margin. */
  reward: number;
  rewardKind: 'reward-model' | 'implicit-margin';
  /**
   * With a reward model: the held-out implicit reward margin as well (liked − disliked log π/π_ref
   * on the users' own held-out votes), a check of the users' taste independent of the reward model.
   */
  heldOutMargin?: number;
  kl: number;
  entropy: number;
  policy?: PolicyEvaluation;
  qa?: QaScores;
}

/**
 * The promotion gate of an RLHF run: reward up, KL to the SFT policy within `maxKl`, the users'
 * own held-out votes not turned against (when a reward model was the judge: it is the model the
 * policy was optimised against, so it cannot be the only judge), QA not down.
 */
export function rlhfGate(
  before: RlhfMeasure,
  after: RlhfMeasure,
  o: { completed: boolean; maxKl: number; qaTolerance: number; marginTolerance: number; rewardName?: string; /** What the KL is to (default: the SFT policy; an imported model's job: the base). */ reference?: string },
): { passed: boolean; reasons: string[]; failed: string[] } {
  const reference = o.reference ?? 'the SFT policy';
  const reasons: string[] = [];
  const failed: string[] = [];
  let passed = o.completed;
  const fail = (reason: string) => {
    passed = false;
    reasons.push(reason);
    failed.push(reason);
  };
  const what = before.rewardKind === 'reward-model' ? `reward (${o.rewardName ?? 'reward model'})` : 'held-out implicit reward margin';
  if (after.reward > before.reward) reasons.push(`${what} rose: ${before.reward.toFixed(3)} → ${after.reward.toFixed(3)}`);
  else fail(`${what} did not rise: ${before.reward.toFixed(3)} → ${after.reward.toFixed(3)}`);
  if (after.kl <= o.maxKl) reasons.push(`KL to ${reference} ${after.kl.toFixed(3)} ≤ bound ${o.maxKl}`);
  else fail(`KL to ${reference} ${after.kl.toFixed(3)} is over the bound ${o.maxKl}`);
  if (before.heldOutMargin !== undefined && after.heldOutMargin !== undefined && Number.isFinite(before.heldOutMargin) && Number.isFinite(after.heldOutMargin)) {
    const m = `${before.heldOutMargin.toFixed(3)} → ${after.heldOutMargin.toFixed(3)}`;
    if (after.heldOutMargin >= before.heldOutMargin - o.marginTolerance) reasons.push(`the users' held-out votes agree (liked − disliked implicit reward ${m})`);
    else fail(`the users' held-out votes disagree with the reward model: liked − disliked implicit reward fell ${m}`);
  }
  if (before.qa && after.qa) {
    const fell = (['f1', 'containsGold', 'exactMatch'] as const).filter((m) => after.qa![m] < before.qa![m] - o.qaTolerance);
    const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
    if (fell.length) {
      fail(`QA accuracy dropped: ${fell.map((m) => `${m} ${pct(before.qa![m])} → ${pct(after.qa![m])}`).join(', ')}`);
    } else reasons.push(`QA did not drop: F1 ${pct(before.qa.f1)} → ${pct(after.qa.f1)}, contains gold ${pct(before.qa.containsGold)} → ${pct(after.qa.containsGold)} (n=${after.qa.n})`);
  } else reasons.push('QA not evaluated (no held-out questions or skipQa)');
  return { passed, reasons, failed };
}

/** The run's report (report.txt and the log) and its one-line summary (the job's chat reply). */
export function rlhfReport(o: {
  algo: string;
  base: { dir: string; version?: string };
  status: 'completed' | 'aborted';
  steps: number;
  wallSec: number;
  data: RlhfData;
  before: RlhfMeasure;
  after: RlhfMeasure;
  gate: { passed: boolean; reasons: string[]; failed: string[] };
  maxKl: number;
  modelVersion?: string;
}): { report: string; summary: string } {
  const { algo, base, status, steps, wallSec, data, before, after, maxKl, modelVersion } = o;
  const { passed, reasons, failed } = o.gate;
  const pref = (x: RlhfMeasure) => `reward ${x.reward.toFixed(3)}, KL ${x.kl.toFixed(3)}, entropy ${x.entropy.toFixed(3)}${x.qa ? `, QA F1 ${(100 * x.qa.f1).toFixed(1)}%` : ''}`;
  const report = [
    `RLHF ${algo.toUpperCase()} on ${base.version ?? base.dir}: ${steps} steps in ${wallSec.toFixed(1)} s`,
    `data: ${data.train.prompts.length} training questions (${data.train.votes.length} votes, ${data.train.pairs.length} pairs), ${data.heldOut.prompts.length} held out`,
    `before: ${pref(before)}`,
    `after:  ${pref(after)}`,
    `gate: ${passed ? 'PASSED' : 'KEPT BACK'}`,
    ...reasons.map((r) => `  - ${r}`),
    modelVersion ? `registered ${modelVersion} (from ${base.version ?? base.dir})${passed ? '' : ': not to be promoted automatically (an admin can still /model promote it)'}` : 'nothing registered',
  ].join('\n');
  const summary = status !== 'completed'
    ? `RLHF (${algo}) stopped at step ${steps}; nothing registered.`
    : passed
      ? `RLHF (${algo}) improved the model: ${reasons[0]}; KL ${after.kl.toFixed(3)} ≤ ${maxKl}. Registered ${modelVersion}.`
      : `RLHF (${algo}) result ${modelVersion} was kept back: ${failed.join('; ')}.`;
  return { report, summary };
}
