/**
 * The whole model on the native backend against the cpu backend: GPT.loss on the portable op set
 * (every kernel underneath native) and on the native op set (src/model/native/forward-ops.ts,
 * what the wiring selects), loss and every parameter's gradient; and cached generation logits (the
 * native op set decodes each token after the prompt with one TeamllmNativeDecodeLayer kernel per block).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, expectClose, hasNative, setup, tf } from './helpers.ts';
import { GPT } from '../../src/model/gpt.ts';
import type { GPTConfig } from '../../src/model/config.ts';
import { profiler } from '../../src/model/native/profile.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';

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
    model.fusedOnNative = fused; // false: the portable op set on the native kernels
    const f = tf.valueAndGrads((...ps: tf.Tensor[]) => model.loss(xs, ys, {}, ps));
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
    // GPT.loss went through the fused block kernel, one call per layer.
    profiler.start();
    lossAt({ training: true, dropoutSeed: 5 });
    expect(profiler.stop().find((s) => s.kernel === 'TeamllmNativeBlock')?.calls).toBe(config.nLayer);
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

  it('per-op path and block kernel draw the same dropout masks (an identity adapter hook forces the per-op path)', async () => {
    await tf.setBackend('native');
    const config: GPTConfig = { vocabSize: 65, blockSize: 17, nLayer: 2, nHead: 3, nEmbd: 24, dropout: 0.25, bias: false };
    const model = build(config, makeParams(config, 42));
    const rng = new Rng(43);
    const B = 2;
    const T = config.blockSize;
    const x = Int32Array.from({ length: B * T }, () => rng.int(65));
    const y = Int32Array.from({ length: B * T }, () => rng.int(65));
    const run = () =>
      tf.tidy(() => {
        const f = tf.valueAndGrads((...ps: tf.Tensor[]) => model.loss(tf.tensor2d(x, [B, T], 'int32'), tf.tensor2d(y, [B, T], 'int32'), { training: true, dropoutSeed: 9 }, ps));
        const { value, grads } = f(model.paramList());
        return [Float32Array.of(value.dataSync()[0]!), ...grads.map((g) => Float32Array.from(g.dataSync()))];
      }) as unknown as Float32Array[];
    const viaBlock = run();
    model.projectionHook = (_x, out) => out;
    const viaOps = run();
    model.projectionHook = undefined;
    const names = ['loss', ...model.paramNames];
    viaBlock.forEach((v, i) => expectClose(viaOps[i]!, v, `per-op vs block: ${names[i]}`, 1e-4, 1e-6));
    model.dispose();
  });

  for (const [ci, config] of configs.entries()) {
    it(`a LoRA adapter on the fused path: loss and gradients (base and adapter, adapter dropout on) and cached logits match cpu (config ${ci})`, async () => {
      const values = makeParams(config, 50 + ci);
      const rng = new Rng(60 + ci);
      const B = 2;
      const T = config.blockSize;
      const x = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
      const y = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
      const ids = Array.from({ length: T }, () => rng.int(config.vocabSize));
      const measure = async (backend: string) => {
        await tf.setBackend(backend);
        const model = build(config, values);
        const adapter = LoraAdapter.create(model, { rank: 2, alpha: 4, dropout: 0.3, targets: ['q', 'v', 'attn_out', 'mlp_in', 'mlp_out'] }, { seed: 7 });
        // B starts at 0 (the adapter changes nothing); give it values so the updates count.
        for (const n of adapter.paramNames) {
          const t = adapter.params.get(n)!;
          adapter.params.set(n, tf.keep(tf.add(t, tf.mul(tf.randomNormal(t.shape, 0, 1, 'float32', 3), 0.3))));
          t.dispose();
        }
        adapter.attach(model);
        const names = [...model.paramNames, ...adapter.paramNames];
        const out = tf.tidy(() => {
          const f = tf.valueAndGrads((...ps: tf.Tensor[]) => {
            const p = new Map(names.map((n, i) => [n, ps[i]!]));
            return model.loss(tf.tensor2d(x, [B, T], 'int32'), tf.tensor2d(y, [B, T], 'int32'), { training: true, dropoutSeed: 4 }, p);
          });
          const { value, grads } = f([...model.paramList(), ...adapter.paramList()]);
          return [Float32Array.of(value.dataSync()[0]!), ...grads.map((g) => Float32Array.from(g.dataSync()))];
        }) as unknown as Float32Array[];
        // Cached generation through the hook: a 3-token prompt, then one token at a time.
        const cache = model.emptyCache();
        const cached: number[] = [];
        for (const chunk of [ids.slice(0, 3), ...ids.slice(3).map((t) => [t])]) {
          const logits = model.forwardCached(tf.tensor2d(Int32Array.from(chunk), [1, chunk.length], 'int32'), cache);
          cached.push(...logits.dataSync());
          logits.dispose();
        }
        for (const l of cache.layers) {
          l.kT.dispose();
          l.v.dispose();
        }
        model.dispose();
        return { out, cached: Float32Array.from(cached), names };
      };
      const ref = await measure('cpu');
      const got = await measure('native');
      const labels = ['loss', ...ref.names];
      ref.out.forEach((r, i) => expectClose(got.out[i]!, r, `LoRA ${labels[i]}`, 1e-3, 1e-5));
      expectClose(got.cached, ref.cached, 'LoRA cached logits', 1e-3, 1e-4);
    });

    it(`loss and all gradients, unfused (gpt.ts's ops on native kernels) and fused (config ${ci})`, async () => {
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
        model.fusedOnNative = fused;
        const cache = model.emptyCache();
        // A prompt of 3 tokens, then one token at a time.
        const steps: number[][] = [ids.slice(0, 3), ...ids.slice(3).map((t) => [t])];
        let pos = 0;
        profiler.start();
        for (const chunk of steps) {
          const idx = tf.tensor2d(Int32Array.from(chunk), [1, chunk.length], 'int32');
          const logits = model.forwardCached(idx, cache);
          pos += chunk.length;
          const V = config.vocabSize;
          expectClose(Float32Array.from(logits.dataSync()), refLogits.slice((pos - 1) * V, pos * V), `${fused ? 'fused' : 'unfused'} logits at ${pos}`, 1e-3, 1e-5);
          idx.dispose();
          logits.dispose();
        }
        // The native op set decodes every token after the prompt with one kernel per block.
        const decodes = profiler.stop().find((k) => k.kernel === 'TeamllmNativeDecodeLayer')?.calls ?? 0;
        expect(decodes).toBe(fused ? (steps.length - 1) * config.nLayer : 0);
        GPT.disposeCache(cache);
      }
      model.dispose();
    });
  }
});
