import { describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { AdaptiveKlController, dpoLoss, gae, ktoLoss, ktoReferencePoint, ppoLosses, tokenRewards, whiten } from '../../src/training/rlhf/losses.ts';

await useBackend('cpu');

const t = (v: number[]) => tf.tensor1d(v);
const val = (x: tf.Tensor) => x.dataSync()[0]!;

/** Central finite differences of a scalar function of several vectors, element by element. */
function finiteDiff(f: (xs: number[][]) => number, xs: number[][], h = 1e-2): number[][] {
  return xs.map((x, a) =>
    x.map((_, i) => {
      const plus = xs.map((y, b) => (b === a ? y.map((v, j) => (j === i ? v + h : v)) : y));
      const minus = xs.map((y, b) => (b === a ? y.map((v, j) => (j === i ? v - h : v)) : y));
      return (f(plus) - f(minus)) / (2 * h);
    }),
  );
}

describe('DPO loss', () => {
  // Pair 1: margin (−5 − −6) − (−7 − −6.5) = 1.5, × β 0.5 = 0.75 → log(1 + e^−0.75) = 0.3868710061
  // Pair 2: margin (−2 − −2.2) − (−1 − −0.9) = 0.3, × 0.5 = 0.15 → log(1 + e^−0.15) = 0.6209570478
  const inputs = [
    [-5, -2],
    [-7, -1],
    [-6, -2.2],
    [-6.5, -0.9],
  ];
  const loss = (xs: number[][]) => val(dpoLoss(t(xs[0]!), t(xs[1]!), t(xs[2]!), t(xs[3]!), 0.5));

  it('matches the hand-computed value', () => {
    expect(loss(inputs)).toBeCloseTo((0.3868710061 + 0.6209570478) / 2, 5);
    // Policy = reference: log 2, whatever β.
    expect(val(dpoLoss(t([-3]), t([-4]), t([-3]), t([-4]), 0.1))).toBeCloseTo(Math.log(2), 6);
  });

  it('has the gradient finite differences give (policy and reference log-probs)', () => {
    const grads = tf.grads((a, b, c, d) => dpoLoss(a, b, c, d, 0.5))(inputs.map(t));
    const fd = finiteDiff(loss, inputs);
    grads.forEach((g, a) => Array.from(g.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(fd[a]![i]!, 3)));
    // The chosen answer's log-prob is pushed up, the rejected one's down.
    expect(grads[0]!.dataSync()[0]!).toBeLessThan(0);
    expect(grads[1]!.dataSync()[0]!).toBeGreaterThan(0);
  });
});

describe('KTO loss', () => {
  // r1 = −4 − −4.6 = 0.6 (👍): 1 − σ(0.5·(0.6 − 0.2)) = 1 − σ(0.2) = 0.4501660027
  // r2 = −3 − −2.5 = −0.5 (👎): λ_U 1.5 · (1 − σ(0.5·(0.2 + 0.5))) = 1.5 · (1 − σ(0.35)) = 0.6200736316
  const labels = t([1, 0]);
  const loss = (xs: number[][]) => val(ktoLoss(t(xs[0]!), t(xs[1]!), labels, 0.2, { beta: 0.5, desirable: 1, undesirable: 1.5 }));
  const inputs = [
    [-4, -3],
    [-4.6, -2.5],
  ];

  it('matches the hand-computed value', () => {
    expect(loss(inputs)).toBeCloseTo(0.5351198172, 5);
  });

  it('has the gradient finite differences give', () => {
    const grads = tf.grads((a, b) => ktoLoss(a, b, labels, 0.2, { beta: 0.5, desirable: 1, undesirable: 1.5 }))(inputs.map(t));
    const fd = finiteDiff(loss, inputs);
    grads.forEach((g, a) => Array.from(g.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(fd[a]![i]!, 3)));
    // 👍 pushed up, 👎 pushed down.
    expect(grads[0]!.dataSync()[0]!).toBeLessThan(0);
    expect(grads[0]!.dataSync()[1]!).toBeGreaterThan(0);
  });

  it('takes its reference point from mismatched pairs, clamped at 0', () => {
    expect(ktoReferencePoint([-3, -5], [-4, -5.5])).toBeCloseTo(0.75, 9);
    expect(ktoReferencePoint([-5], [-4])).toBe(0);
    expect(ktoReferencePoint([], [])).toBe(0);
  });
});

describe('GAE', () => {
  it('matches a hand-worked example', () => {
    // γ = 1, λ = 0.5; rewards [0, 0, 1], values [0.5, 0.4, 0.6]:
    // δ2 = 1 − 0.6 = 0.4            A2 = 0.4
    // δ1 = 0 + 0.6 − 0.4 = 0.2      A1 = 0.2 + 0.5·0.4 = 0.4
    // δ0 = 0 + 0.4 − 0.5 = −0.1     A0 = −0.1 + 0.5·0.4 = 0.1
    const { advantages, returns } = gae([0, 0, 1], [0.5, 0.4, 0.6], 1, 0.5);
    [0.1, 0.4, 0.4].forEach((v, i) => expect(advantages[i]).toBeCloseTo(v, 12));
    [0.6, 0.8, 1.0].forEach((v, i) => expect(returns[i]).toBeCloseTo(v, 12));
  });

  it('with λ = 1 and γ = 1 gives the reward-to-go minus the value (Monte Carlo)', () => {
    const r = [0.1, -0.2, 0.3, 1];
    const v = [0.3, 0.1, -0.4, 0.2];
    const { advantages, returns } = gae(r, v, 1, 1);
    r.forEach((_, i) => {
      const togo = r.slice(i).reduce((a, b) => a + b, 0);
      expect(advantages[i]).toBeCloseTo(togo - v[i]!, 12);
      expect(returns[i]).toBeCloseTo(togo, 12);
    });
  });

  it('with λ = 0 is the one-step TD error, discounted by γ', () => {
    const { advantages } = gae([1, 2], [0.5, 0.25], 0.9, 0);
    expect(advantages[0]).toBeCloseTo(1 + 0.9 * 0.25 - 0.5, 12);
    expect(advantages[1]).toBeCloseTo(2 - 0.25, 12);
  });
});

describe('reward shaping and whitening', () => {
  it('gives every token −β·(log π − log π_ref) and the last token the score', () => {
    const r = tokenRewards(2, [-1, -2, -0.5], [-1.5, -2, -0.25], 0.1);
    // −0.1·(−1 − −1.5) = −0.05; −0.1·0 = 0; −0.1·(−0.5 − −0.25) + 2 = 2.025
    [-0.05, 0, 2.025].forEach((v, i) => expect(r[i]).toBeCloseTo(v, 12));
  });

  it('whitens to mean 0 and unit variance (or keeps the mean)', () => {
    const w = whiten([1, 2, 3, 4]);
    expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(0, 9);
    expect(w.reduce((a, b) => a + b * b, 0) / 4).toBeCloseTo(1, 6);
    expect(w[0]).toBeCloseTo(-1.5 / Math.sqrt(1.25), 6);
    const kept = whiten([1, 2, 3, 4], false);
    expect(kept.reduce((a, b) => a + b, 0) / 4).toBeCloseTo(2.5, 9);
  });
});

describe('PPO losses', () => {
  it('clip the policy ratio and the value change as hand-computed, ignoring masked tokens', () => {
    // Token 1: A = 1, ρ = 1.5 → max(−1.5, −1.2) = −1.2. Token 2: A = −1, ρ = 0.5 → max(0.5, 0.8) = 0.8.
    // Values: V = [1, 0], V_old = [0.5, 0], R = [0.8, 1], ε_v = 0.2 → clipped [0.7, 0];
    // max((0.2)², (−0.1)²) = 0.04, max(1, 1) = 1 → ½·mean = 0.26. Token 3 is masked out.
    const l = ppoLosses(
      {
        logp: t([Math.log(1.5), Math.log(0.5), 5]),
        oldLogp: t([0, 0, 0]),
        advantages: t([1, -1, 100]),
        values: t([1, 0, 50]),
        oldValues: t([0.5, 0, 0]),
        returns: t([0.8, 1, -50]),
        mask: t([1, 1, 0]),
      },
      0.2,
      0.2,
    );
    expect(val(l.policyLoss)).toBeCloseTo(-0.2, 6);
    expect(val(l.valueLoss)).toBeCloseTo(0.26, 6);
    expect(val(l.clipFraction)).toBeCloseTo(1, 6);
    // k3: ((1.5 − 1) − log 1.5 + (0.5 − 1) − log 0.5) / 2
    expect(val(l.approxKl)).toBeCloseTo((0.5 - Math.log(1.5) - 0.5 - Math.log(0.5)) / 2, 6);
  });

  it('at ratio 1 is −mean(A) with a gradient of −A/n per token', () => {
    const adv = t([0.5, -2, 1.5]);
    const mask = t([1, 1, 1]);
    const z = t([0, 0, 0]);
    const f = (lp: tf.Tensor) => ppoLosses({ logp: lp, oldLogp: z, advantages: adv, values: z, oldValues: z, returns: z, mask }, 0.2, 0.2).policyLoss;
    const lp = t([0, 0, 0]); // a tensor of its own: the same values as oldLogp, not the same variable
    expect(val(f(lp))).toBeCloseTo(0, 6);
    const g = Array.from(tf.grad(f)(lp).dataSync());
    [-0.5 / 3, 2 / 3, -1.5 / 3].forEach((v, i) => expect(g[i]).toBeCloseTo(v, 6));
  });
});

describe('adaptive KL coefficient', () => {
  it('moves β by at most ±20%·n/horizon towards the target', () => {
    const c = new AdaptiveKlController(0.1, 6, 10000);
    expect(c.update(9, 256)).toBeCloseTo(0.1 * (1 + (0.2 * 256) / 10000), 12); // error 0.5, clipped to 0.2
    const d = new AdaptiveKlController(0.1, 6, 10000);
    expect(d.update(5.4, 100)).toBeCloseTo(0.1 * (1 - (0.1 * 100) / 10000), 12); // error −0.1
    const e = new AdaptiveKlController(0.1, 6, 100);
    for (let i = 0; i < 50; i++) e.update(0, 10);
    expect(e.value).toBeCloseTo(0.1 * 0.98 ** 50, 12); // KL 0: error −1, clipped to −0.2 each time
  });
});
