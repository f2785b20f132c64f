import { describe, expect, it } from 'vitest';
import { tf, useBackend, tinyModel, tinyConfig, randomIds } from './helpers.ts';
import { Random } from '../../src/model/random.ts';
import { matMul, embedding, crossEntropy, gelu, layerNorm, composedOps } from '../../src/model/ops.ts';
import { fusedGelu, fusedLayerNorm, fusedCausalSoftmax } from '../../src/model/fused.ts';

/** Directional derivative check: (L(p + h·d) - L(p - h·d)) / 2h  vs  <∇L, d>, one tensor at a time. */
async function checkModelGradients(backend: 'wasm' | 'cpu') {
  await useBackend(backend);
  const model = tinyModel();
  const B = 3;
  const T = tinyConfig.blockSize;
  const x = tf.tensor2d(randomIds(B * T, tinyConfig.vocabSize, 1), [B, T], 'int32');
  const yIds = randomIds(B * T, tinyConfig.vocabSize, 2);
  yIds[3] = -1; // an ignored position
  const y = tf.tensor2d(yIds, [B, T], 'int32');
  const names = model.paramNames;
  const lossOf = (ps: tf.Tensor[]) => model.loss(x, y, {}, ps);
  const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => lossOf(ps))(model.paramList());
  expect(Number.isFinite(value.dataSync()[0]!)).toBe(true);
  const rng = new Random(3);
  const h = 1e-2;
  for (let i = 0; i < names.length; i++) {
    const p = model.paramList()[i]!;
    const d = tf.tensor(rng.normalArray(p.size, 1), p.shape);
    const analytic = tf.sum(tf.mul(grads[i]!, d)).dataSync()[0]!;
    const shifted = (sign: number) =>
      tf.tidy(() => {
        const ps = model.paramList().map((q, j) => (j === i ? tf.add(q, tf.mul(d, sign * h)) : q));
        return lossOf(ps).dataSync()[0]!;
      });
    const numeric = (shifted(1) - shifted(-1)) / (2 * h);
    const err = Math.abs(analytic - numeric) / Math.max(1e-3, Math.abs(analytic) + Math.abs(numeric));
    expect(err, `${backend} ${names[i]}: analytic ${analytic} numeric ${numeric}`).toBeLessThan(2e-2);
    d.dispose();
  }
  value.dispose();
  grads.forEach((g) => g.dispose());
  model.dispose();
}

describe('gradients against finite differences', () => {
  it('every parameter of a tiny GPT (cpu)', async () => {
    await checkModelGradients('cpu');
  });
  it('every parameter of a tiny GPT (wasm)', async () => {
    await checkModelGradients('wasm');
  });
});

describe.each(['wasm', 'cpu'] as const)('ops on %s', (backend) => {
  it('embedding lookup has a gradient (scatter-add into the table)', async () => {
    await useBackend(backend);
    const table = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const ids = tf.tensor2d([[0, 2], [2, 2]], [2, 2], 'int32');
    const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(embedding(t, ids), tf.tensor([1, 10]))))(table);
    expect(Array.from(g.dataSync())).toEqual([1, 10, 0, 0, 3, 30]);
  });

  it('matMul gradients match autodiff of tf.matMul (2-D, batched, broadcast weight)', async () => {
    await useBackend(backend);
    const rng = new Random(9);
    const cases: [number[], number[]][] = [
      [[5, 3], [3, 4]],
      [[2, 3, 5, 3], [2, 3, 3, 4]],
      [[2, 5, 3], [3, 4]],
    ];
    for (const [sa, sb] of cases) {
      const a = tf.tensor(rng.normalArray(sa.reduce((x, y) => x * y), 1), sa);
      const b = tf.tensor(rng.normalArray(sb.reduce((x, y) => x * y), 1), sb);
      const w = tf.tensor(rng.normalArray([...sa.slice(0, -1), sb[sb.length - 1]!].reduce((x, y) => x * y), 1), [...sa.slice(0, -1), sb[sb.length - 1]!]);
      const forwardDiff = tf.max(tf.abs(tf.sub(matMul(a, b), sb.length === 2 && sa.length > 2 ? tf.reshape(tf.matMul(tf.reshape(a, [-1, sa.at(-1)!]), b), w.shape) : tf.matMul(a, b))));
      expect(forwardDiff.dataSync()[0]).toBeLessThan(1e-5);
      const ours = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(matMul(p, q), w)))([a, b]);
      // tfjs' own BatchMatMul gradient does not reduce a broadcast weight: flatten the rows first.
      const refMatMul = (p: tf.Tensor, q: tf.Tensor) =>
        q.rank === 2 && p.rank > 2
          ? tf.reshape(tf.matMul(tf.reshape(p, [-1, p.shape[p.rank - 1]!]), q), [...p.shape.slice(0, -1), q.shape[1]!])
          : tf.matMul(p, q);
      const ref = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(refMatMul(p, q), w)))([a, b]);
      for (let k = 0; k < 2; k++) {
        const diff = tf.max(tf.abs(tf.sub(ours[k]!, ref[k]!))).dataSync()[0]!;
        expect(diff).toBeLessThan(1e-4);
      }
    }
  });

  it('gelu, layerNorm and crossEntropy match finite differences', async () => {
    await useBackend(backend);
    const rng = new Random(11);
    const x = tf.tensor2d(rng.normalArray(12, 1.5), [3, 4]);
    const w = tf.tensor1d(rng.normalArray(4, 1));
    const bias = tf.tensor1d(rng.normalArray(4, 1));
    const targets = tf.tensor1d([1, -1, 3], 'int32');
    const fns: [string, (t: tf.Tensor) => tf.Scalar][] = [
      ['gelu', (t) => tf.sum(tf.mul(gelu(t), w))],
      ['layerNorm', (t) => tf.sum(tf.mul(layerNorm(t, w, bias), tf.square(t)))],
      ['crossEntropy', (t) => crossEntropy(t, targets)],
    ];
    for (const [name, f] of fns) {
      const g = tf.grad(f)(x).dataSync();
      const base = x.dataSync();
      for (let i = 0; i < base.length; i++) {
        const at = (delta: number) => {
          const arr = Float32Array.from(base);
          arr[i] = arr[i]! + delta;
          return f(tf.tensor2d(arr, [3, 4])).dataSync()[0]!;
        };
        const numeric = (at(1e-2) - at(-1e-2)) / 2e-2;
        expect(Math.abs(numeric - g[i]!), `${name}[${i}]`).toBeLessThan(2e-3 + 2e-2 * Math.abs(numeric));
      }
    }
  });
});

describe.each(['wasm', 'cpu'] as const)('fused kernels on %s', (backend) => {
  it('match the composed tf ops used on other backends, values and gradients', async () => {
    await useBackend(backend);
    const rng = new Random(21);
    const x = tf.tensor3d(rng.normalArray(2 * 5 * 6, 1.3), [2, 5, 6]);
    const w = tf.tensor1d(rng.normalArray(6, 1));
    const b = tf.tensor1d(rng.normalArray(6, 1));
    const scores = tf.tensor4d(rng.normalArray(2 * 2 * 3 * 7, 2), [2, 2, 3, 7]);
    const probe = (t: tf.Tensor) => tf.tensor(rng.normalArray(t.size, 1), t.shape);
    const pairs: [string, (t: tf.Tensor) => tf.Tensor, (t: tf.Tensor) => tf.Tensor, tf.Tensor][] = [
      ['gelu', (t) => fusedGelu(t), composedOps.gelu, x],
      ['layerNorm', (t) => fusedLayerNorm(t, w, b), (t) => composedOps.layerNorm(t, w, b), x],
      ['layerNorm no bias', (t) => fusedLayerNorm(t, w), (t) => composedOps.layerNorm(t, w), x],
      ['causalSoftmax', (t) => fusedCausalSoftmax(t, 0.7, 4), (t) => composedOps.causalSoftmax(t, 0.7, 4), scores],
    ];
    for (const [name, fused, composed, input] of pairs) {
      const p = probe(fused(input));
      const diff = tf.max(tf.abs(tf.sub(fused(input), composed(input)))).dataSync()[0]!;
      expect(diff, `${name} value`).toBeLessThan(1e-5);
      const gf = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(fused(t), p)))(input);
      const gc = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(composed(t), p)))(input);
      expect(tf.max(tf.abs(tf.sub(gf, gc))).dataSync()[0]!, `${name} gradient`).toBeLessThan(1e-4);
    }
    // Weight and bias gradients of the fused LayerNorm.
    const p = probe(x);
    const [fw, fb] = tf.grads((ww: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(fusedLayerNorm(x, ww, bb), p)))([w, b]);
    const [cw, cb] = tf.grads((ww: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(composedOps.layerNorm(x, ww, bb), p)))([w, b]);
    expect(tf.max(tf.abs(tf.sub(fw!, cw!))).dataSync()[0]!).toBeLessThan(1e-4);
    expect(tf.max(tf.abs(tf.sub(fb!, cb!))).dataSync()[0]!).toBeLessThan(1e-4);
  });
});
