/**
 * The arithmetic of RLHF, kept apart from models and data so each piece can be checked against
 * hand-worked numbers (tests/rlhf/losses.test.ts):
 *
 * - DPO (Rafailov et al., 2023) on pairs: -log σ(β·[(log πθ(y_w) − log π_ref(y_w)) − (log πθ(y_l) − log π_ref(y_l))]);
 * - KTO (Ethayarajh et al., 2024) on unpaired 👍/👎: with r = log πθ(y|x) − log π_ref(y|x) and a
 *   reference point z (a detached, clamped estimate of KL(πθ‖π_ref)),
 *   👍: λ_D·(1 − σ(β(r − z))),  👎: λ_U·(1 − σ(β(z − r)));
 * - PPO as in InstructGPT / Ziegler et al. (2019): per-token rewards −β·(log π − log π_ref) with the
 *   reward model's score added at the last token, GAE (Schulman et al., 2016), whitening, the
 *   clipped surrogate policy loss, the clipped value loss, and the adaptive KL coefficient.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';

/** log σ(x), stable for large |x|: −softplus(−x). */
export function logSigmoid(x: Tensor): Tensor {
  return tf.neg(tf.softplus(tf.neg(x)));
}

/**
 * DPO loss, mean over pairs. Inputs are sequence log-probabilities [N] (sums over the answer's
 * tokens) of the chosen and rejected answers under the policy and the frozen reference.
 */
export function dpoLoss(policyChosen: Tensor, policyRejected: Tensor, refChosen: Tensor, refRejected: Tensor, beta: number): tf.Scalar {
  return tf.tidy(() => {
    const margin = tf.sub(tf.sub(policyChosen, refChosen), tf.sub(policyRejected, refRejected));
    return tf.neg(tf.mean(logSigmoid(tf.mul(margin, beta)))) as tf.Scalar;
  });
}

export interface KtoWeights {
  beta: number;
  /** Weight of desirable (👍) examples, λ_D (default 1). */
  desirable?: number;
  /** Weight of undesirable (👎) examples, λ_U (default 1). */
  undesirable?: number;
}

/**
 * KTO loss, mean over examples. `labels` [N] is 1 for 👍 and 0 for 👎; `zRef` the reference point
 * (a number: it is not differentiated, as in the paper).
 */
export function ktoLoss(policyLogp: Tensor, refLogp: Tensor, labels: Tensor, zRef: number, w: KtoWeights): tf.Scalar {
  return tf.tidy(() => {
    const r = tf.sub(policyLogp, refLogp);
    const good = tf.mul(w.desirable ?? 1, tf.sub(1, tf.sigmoid(tf.mul(tf.sub(r, zRef), w.beta))));
    const bad = tf.mul(w.undesirable ?? 1, tf.sub(1, tf.sigmoid(tf.mul(tf.sub(zRef, r), w.beta))));
    const y = tf.cast(labels, 'float32');
    return tf.mean(tf.add(tf.mul(y, good), tf.mul(tf.sub(1, y), bad))) as tf.Scalar;
  });
}

/**
 * KTO's reference point: the mean of log πθ(y'|x) − log π_ref(y'|x) over mismatched pairs (an
 * answer y' that was given to another question), clamped at 0, as a plain number.
 */
export function ktoReferencePoint(policyMismatched: ArrayLike<number>, refMismatched: ArrayLike<number>): number {
  if (policyMismatched.length === 0) return 0;
  let s = 0;
  for (let i = 0; i < policyMismatched.length; i++) s += policyMismatched[i]! - refMismatched[i]!;
  return Math.max(0, s / policyMismatched.length);
}

/**
 * Generalized advantage estimation over one answer's tokens: δ_t = r_t + γ·V_{t+1} − V_t (V after
 * the last token is 0: the episode ends), A_t = δ_t + γλ·A_{t+1}; returns = A + V.
 */
export function gae(rewards: readonly number[], values: readonly number[], gamma: number, lambda: number): { advantages: number[]; returns: number[] } {
  if (rewards.length !== values.length) throw new Error(`gae: ${rewards.length} rewards but ${values.length} values`);
  const T = rewards.length;
  const advantages = new Array<number>(T).fill(0);
  let last = 0;
  for (let t = T - 1; t >= 0; t--) {
    const next = t + 1 < T ? values[t + 1]! : 0;
    const delta = rewards[t]! + gamma * next - values[t]!;
    last = delta + gamma * lambda * last;
    advantages[t] = last;
  }
  return { advantages, returns: advantages.map((a, t) => a + values[t]!) };
}

/** (x − mean) / std over all values (population variance); `shiftMean: false` keeps the mean. */
export function whiten(values: readonly number[], shiftMean = true): number[] {
  const n = values.length;
  if (n === 0) return [];
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = values.reduce((a, b) => a + (b - mean) * (b - mean), 0) / n;
  const inv = 1 / Math.sqrt(variance + 1e-8);
  return values.map((v) => (shiftMean ? (v - mean) * inv : (v - mean) * inv + mean));
}

/**
 * The reward each answer token receives: −β·(log π(a_t) − log π_ref(a_t)) (the per-token KL
 * penalty of InstructGPT), plus the reward model's score on the last token.
 */
export function tokenRewards(score: number, logp: readonly number[], refLogp: readonly number[], beta: number): number[] {
  const r = logp.map((l, t) => -beta * (l - refLogp[t]!));
  if (r.length) r[r.length - 1] = r.at(-1)! + score;
  return r;
}

export interface PpoLossInputs {
  /** Log-probabilities of the sampled tokens under the current policy [N] (differentiated). */
  logp: Tensor;
  /** ... under the policy that sampled them [N]. */
  oldLogp: Tensor;
  advantages: Tensor;
  /** Value predictions now [N] (differentiated) and at sampling time [N]. */
  values: Tensor;
  oldValues: Tensor;
  returns: Tensor;
  /** 1 where the token counts, 0 for padding [N]. */
  mask: Tensor;
}

export interface PpoLosses {
  policyLoss: tf.Scalar;
  valueLoss: tf.Scalar;
  /** Share of tokens whose ratio was clipped. */
  clipFraction: tf.Scalar;
  /** Mean of (ratio − 1) − log ratio: KL(old‖new) between sampling and now (k3 estimator). */
  approxKl: tf.Scalar;
}

function maskedMean(x: Tensor, mask: Tensor): tf.Scalar {
  return tf.div(tf.sum(tf.mul(x, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
}

/**
 * PPO's clipped surrogate: max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)) with ρ = exp(log π − log π_old), and the
 * clipped value loss ½·max((V − R)², (clip(V, V_old ± ε_v) − R)²), both masked means over tokens.
 */
export function ppoLosses(x: PpoLossInputs, clip: number, clipValue: number): PpoLosses {
  const ratio = tf.exp(tf.sub(x.logp, x.oldLogp));
  const pg1 = tf.mul(tf.neg(x.advantages), ratio);
  const pg2 = tf.mul(tf.neg(x.advantages), tf.clipByValue(ratio, 1 - clip, 1 + clip));
  const policyLoss = maskedMean(tf.maximum(pg1, pg2), x.mask);
  const vClipped = tf.add(x.oldValues, tf.clipByValue(tf.sub(x.values, x.oldValues), -clipValue, clipValue));
  const v1 = tf.square(tf.sub(x.values, x.returns));
  const v2 = tf.square(tf.sub(vClipped, x.returns));
  const valueLoss = tf.mul(0.5, maskedMean(tf.maximum(v1, v2), x.mask)) as tf.Scalar;
  const clipped = tf.cast(tf.greater(tf.abs(tf.sub(ratio, 1)), clip), 'float32');
  const clipFraction = maskedMean(clipped, x.mask);
  const logRatio = tf.sub(x.logp, x.oldLogp);
  const approxKl = maskedMean(tf.sub(tf.sub(ratio, 1), logRatio), x.mask);
  return { policyLoss, valueLoss, clipFraction, approxKl };
}

/**
 * The adaptive KL coefficient of Ziegler et al. (2019), used by InstructGPT: after each batch,
 * β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n/horizon), so the KL drifts towards the target.
 */
export class AdaptiveKlController {
  value: number;
  constructor(
    init: number,
    readonly target: number,
    readonly horizon: number,
  ) {
    this.value = init;
  }

  update(currentKl: number, nSteps: number): number {
    const error = Math.min(0.2, Math.max(-0.2, currentKl / this.target - 1));
    this.value *= 1 + (error * nSteps) / this.horizon;
    return this.value;
  }
}
