/**
 * The llama-arch model (gpt.ts, `arch: 'llama'`) on the native backend against the cpu backend:
 * its RMSNorm, RoPE, SwiGLU and [out, in] projections are portable tf ops (native kernels
 * underneath), its attention, output head and cross-entropy the native op set's. Loss, every
 * parameter's gradient, and cached generation logits.
 */
import { beforeAll, describe, it } from 'vitest';
import { Rng, expectClose, hasNative, setup, tf } from './helpers.ts';
import { GPT } from '../../src/model/gpt.ts';
import { validateConfig } from '../../src/model/config.ts';

const config = validateConfig({
  arch: 'llama',
  vocabSize: 23,
  blockSize: 9,
  nLayer: 2,
  nHead: 4,
  nKvHead: 2,
  nEmbd: 16,
  headDim: 6,
  intermediateSize: 24,
  normEps: 1e-5,
  ropeScaling: { type: 'linear', factor: 2 },
  qkvBias: true,
  qkNorm: true,
  tiedHead: false,
});

function build(values: Map<string, Float32Array>): GPT {
  const model = GPT.create(config, 1);
  model.setParams(new Map(model.paramNames.map((n) => [n, tf.keep(tf.tensor(values.get(n)!.slice(), model.params.get(n)!.shape))])));
  return model;
}

describe.skipIf(!hasNative)('llama-arch model on the native backend matches the cpu backend', () => {
  beforeAll(setup);

  it('loss, every gradient and cached logits', async () => {
    const rng = new Rng(4);
    const base = GPT.create(config, 3);
    const values = new Map(base.paramNames.map((n) => [n, Float32Array.from(base.params.get(n)!.dataSync(), (v) => v + 0.3 * rng.normal())]));
    base.dispose();
    const B = 2;
    const T = config.blockSize;
    const x = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
    const y = Int32Array.from({ length: B * T }, (_, i) => (i % 5 === 4 ? -1 : rng.int(config.vocabSize)));
    const ids = Array.from(x.subarray(0, T));
    const measure = async (backend: string) => {
      await tf.setBackend(backend);
      const model = build(values);
      const out = tf.tidy(() => {
        const f = tf.valueAndGrads((...ps: tf.Tensor[]) => model.loss(tf.tensor2d(x, [B, T], 'int32'), tf.tensor2d(y, [B, T], 'int32'), {}, ps));
        const { value, grads } = f(model.paramList());
        return [Float32Array.of(value.dataSync()[0]!), ...grads.map((g) => Float32Array.from(g.dataSync()))];
      }) as unknown as Float32Array[];
      const cache = model.emptyCache();
      const cached: number[] = [];
      for (const chunk of [ids.slice(0, 3), ...ids.slice(3).map((t) => [t])]) {
        const logits = model.forwardCached(tf.tensor2d(Int32Array.from(chunk), [1, chunk.length], 'int32'), cache);
        cached.push(...logits.dataSync());
        logits.dispose();
      }
      GPT.disposeCache(cache);
      const names = model.paramNames;
      model.dispose();
      return { out, cached: Float32Array.from(cached), names };
    };
    const ref = await measure('cpu');
    const got = await measure('native');
    ['loss', ...ref.names].forEach((name, i) => expectClose(got.out[i]!, ref.out[i]!, name, 1e-3, 1e-5));
    expectClose(got.cached, ref.cached, 'cached logits', 1e-3, 1e-5);
  });
});
