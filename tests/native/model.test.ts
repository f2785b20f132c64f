/**
 * The whole model on the native backend against the cpu backend: GPT.loss as gpt.ts computes it
 * (every kernel underneath native), and the fused path (src/model/native/gpt-native.ts, what the
 * wiring selects), loss and every parameter's gradient; and cached generation logits (the fused
 * path decodes each token after the prompt with one TeamllmNativeDecodeLayer kernel per block).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, expectClose, hasNative, setup, tf } from './helpers.ts';
import { GPT } from '../../src/model/gpt.ts';
import type { GPTConfig } from '../../src/model/config.ts';
import { nativeForwardCached, nativeLoss } from '../../src/model/native/gpt-native.ts';

const configs: GPTConfig[] = [
  { vocabSize: 11, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true },
  { vocabSize: 65, blockSize: 17, nLayer: 2, nHead: 3, nEmbd: 24, dropout: 0, bias: false },
];

/** A model with weights large enough to exercise every nonlinearity, same on every backend. */
function makeParams(config: GPTConfig, seed: number): Map<string, Float32Array> {
  const base = GPT.create(config, seed);
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const name of base.paramNames) {
    const p = base.params.get(name)!;
    const v = Float32Array.from(p.dataSync());
    for (let i = 0; i < v.length; i++) v[i] = v[i]! + 0.3 * rng.normal();
    out.set(name, v);
  }
  base.dispose();
  return out;
}

function build(config: GPTConfig, values: Map<string, Float32Array>): GPT {
  const model = GPT.create(config, 1);
  const params = new Map<string, tf.Tensor>();
  for (const name of model.paramNames) params.set(name, tf.keep(tf.tensor(values.get(name)!.slice(), model.params.get(name)!.shape)));
  model.setParams(params);
  return model;
}

function lossAndGrads(model: GPT, x: Int32Array, y: Int32Array, B: number, T: number, fused: boolean): Float32Array[] {
  return tf.tidy(() => {
    const xs = tf.tensor2d(x, [B, T], 'int32');
    const ys = tf.tensor2d(y, [B, T], 'int32');
    const f = tf.valueAndGrads((...ps: tf.Tensor[]) => (fused ? nativeLoss(model, xs, ys, ps) : model.loss(xs, ys, {}, ps)));
    const { value, grads } = f(model.paramList());
    return [Float32Array.of(value.dataSync()[0]!), ...grads.map((g) => Float32Array.from(g.dataSync()))];
  }) as unknown as Float32Array[];
}

describe.skipIf(!hasNative)('GPT on the native backend matches the cpu backend', () => {
  beforeAll(setup);

  it('training with dropout (bias-free) runs the fused block: masks fixed by the step seed, and it trains', async () => {
    await tf.setBackend('native');
    const config: GPTConfig = { vocabSize: 65, blockSize: 17, nLayer: 2, nHead: 3, nEmbd: 24, dropout: 0.2, bias: false };
    const model = build(config, makeParams(config, 40));
    const rng = new Rng(41);
    const B = 3;
    const T = config.blockSize;
    const xs = tf.tensor2d(Int32Array.from({ length: B * T }, () => rng.int(65)), [B, T], 'int32');
    const ys = tf.tensor2d(Int32Array.from({ length: B * T }, () => rng.int(65)), [B, T], 'int32');
    const lossAt = (options: { training?: boolean; dropoutSeed?: number }) => tf.tidy(() => model.loss(xs, ys, options).dataSync()[0]!);
    const evalLoss = lossAt({});
    const a = lossAt({ training: true, dropoutSeed: 5 });
    expect(lossAt({ training: true, dropoutSeed: 5 })).toBe(a); // same step, same masks
    expect(lossAt({ training: true, dropoutSeed: 6 })).not.toBe(a);
    expect(a).not.toBe(evalLoss); // dropout is on in training only
    // GPT.loss went through the fused kernels: the same value as nativeLoss with the same options.
    expect(tf.tidy(() => nativeLoss(model, xs, ys, undefined, { training: true, dropoutSeed: 5 }).dataSync()[0]!)).toBe(a);
    // Training steps with fresh masks each step lower the (dropout-free) loss on this batch.
    const f = tf.valueAndGrads((...ps: tf.Tensor[]) => model.loss(xs, ys, { training: true, dropoutSeed: step }, ps));
    let step = 0;
    for (; step < 30; step++) {
      const { value, grads } = f(model.paramList());
      value.dispose();
      const next = new Map(model.paramNames.map((n, i) => [n, tf.keep(tf.sub(model.params.get(n)!, tf.mul(grads[i]!, 0.05)))]));
      grads.forEach((g) => g.dispose());
      model.setParams(next);
    }
    expect(lossAt({})).toBeLessThan(evalLoss - 0.3);
    model.dispose();
    xs.dispose();
    ys.dispose();
  });

  for (const [ci, config] of configs.entries()) {
    it(`loss and all gradients, unfused and fused (config ${ci})`, async () => {
      const values = makeParams(config, 10 + ci);
      const rng = new Rng(ci);
      const B = 3;
      const T = config.blockSize;
      const x = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
      const y = Int32Array.from({ length: B * T }, (_, i) => (i % 7 === 6 ? -1 : rng.int(config.vocabSize)));

      await tf.setBackend('cpu');
      const refModel = build(config, values);
      const ref = lossAndGrads(refModel, x, y, B, T, false);
      refModel.dispose();

      await tf.setBackend('native');
      const model = build(config, values);
      const unfused = lossAndGrads(model, x, y, B, T, false);
      const fused = lossAndGrads(model, x, y, B, T, true);
      model.dispose();

      const names = ['loss', ...model.paramNames];
      ref.forEach((r, i) => {
        expectClose(unfused[i]!, r, `unfused ${names[i]}`, 1e-3, 1e-5);
        expectClose(fused[i]!, r, `fused ${names[i]}`, 1e-3, 1e-5);
      });
    });

    it(`cached generation logits (config ${ci})`, async () => {
      const values = makeParams(config, 20 + ci);
      const rng = new Rng(100 + ci);
      const T = config.blockSize;
      const ids = Array.from({ length: T }, () => rng.int(config.vocabSize));

      // Reference: the uncached forward on cpu, logits of every position.
      await tf.setBackend('cpu');
      const refModel = build(config, values);
      const refLogits = tf.tidy(() => Float32Array.from(refModel.forward(tf.tensor2d(Int32Array.from(ids), [1, T], 'int32')).dataSync()));
      refModel.dispose();

      await tf.setBackend('native');
      const model = build(config, values);
      for (const fused of [false, true]) {
        const cache = model.emptyCache();
        // A prompt of 3 tokens, then one token at a time.
        const steps: number[][] = [ids.slice(0, 3), ...ids.slice(3).map((t) => [t])];
        let pos = 0;
        for (const chunk of steps) {
          const idx = tf.tensor2d(Int32Array.from(chunk), [1, chunk.length], 'int32');
          const logits = fused ? nativeForwardCached(model, idx, cache) : model.forwardCached(idx, cache);
          pos += chunk.length;
          const V = config.vocabSize;
          expectClose(Float32Array.from(logits.dataSync()), refLogits.slice((pos - 1) * V, pos * V), `${fused ? 'fused' : 'unfused'} logits at ${pos}`, 1e-3, 1e-5);
          idx.dispose();
          logits.dispose();
        }
        GPT.disposeCache(cache);
      }
      model.dispose();
    });
  }
});
