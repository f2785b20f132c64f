/**
 * The 'native' backend itself: loading (and failing to load) cleanly, buffer recycling that never
 * corrupts an array someone can still see, the sgemm peak, and the list of native kernels (each
 * one has a parity test in kernels.test.ts or fused.test.ts).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { hasNative, setup, tf } from './helpers.ts';
import { activeNativeBackend, measureSgemmPeak, nativeInfo, setNativeThreads } from '../../src/model/native/index.ts';
import { sizeClass } from '../../src/model/native/backend.ts';
import { nativeKernelNames } from '../../src/model/native/kernels.ts';
import { loadAddon } from '../../src/model/native/addon.ts';

const run = promisify(execFile);
const fixture = path.join(import.meta.dirname, 'fixtures', 'load-native.ts');

async function loadWith(env: Record<string, string>): Promise<{ ok: boolean; reason?: string }> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', fixture], { env: { ...process.env, ...env }, timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { ok: boolean; reason?: string };
}

describe('loading the native backend', () => {
  it('reports a missing addon as one line, without throwing', async () => {
    const r = await loadWith({ TEAMLLM_NATIVE_ADDON: '/nonexistent/teamllm_native.node' });
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/not built.*build-native\.mjs/);
    expect(r.reason).not.toContain('\n');
  });

  it('reports a broken addon file as one line, without crashing', async () => {
    const r = await loadWith({ TEAMLLM_NATIVE_ADDON: fixture }); // not a shared library
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/loading .* failed/);
    expect(r.reason).not.toContain('\n');
  });

  it.skipIf(!hasNative)('loads and registers the backend when built', async () => {
    expect(await loadWith({})).toEqual({ ok: true });
  });
});

describe.skipIf(!hasNative)('the native backend', () => {
  beforeAll(setup);

  it('is a registered TensorFlow.js backend with OpenBLAS behind it', async () => {
    await tf.setBackend('native');
    expect(tf.getBackend()).toBe('native');
    expect(activeNativeBackend()).toBeDefined();
    const info = nativeInfo()!;
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(info.blas).toMatch(/OpenBLAS/);
  });

  it('measures the sgemm peak', () => {
    // How fast is `npm run bench -- native matmul`'s business (peak_gflops=); here only that it measures.
    const gflops = measureSgemmPeak(256, 2);
    expect(Number.isFinite(gflops)).toBe(true);
    expect(gflops).toBeGreaterThan(0);
  });

  it('recycles buffers of disposed intermediates', async () => {
    await tf.setBackend('native');
    const nb = activeNativeBackend()!;
    const x = tf.ones([64, 64]);
    const before = nb.poolStats.hits;
    for (let i = 0; i < 10; i++) tf.tidy(() => tf.exp(tf.add(x, x)));
    expect(nb.poolStats.hits).toBeGreaterThan(before);
    x.dispose();
  });

  it('rounds large buffers to size classes (at most 12.5% over), so growing tensors reuse them', async () => {
    for (const n of [1, 100, 16383, 16384, 20000, 384 * 77, 1 << 20, (1 << 20) + 1, 3e6]) {
      const c = sizeClass(n);
      expect(c).toBeGreaterThanOrEqual(n);
      expect(c).toBeLessThanOrEqual(Math.ceil(n * 1.125));
      expect(sizeClass(c)).toBe(c);
    }
    await tf.setBackend('native');
    const nb = activeNativeBackend()!;
    // A KV-cache-like tensor growing by one row at a time: after the first few, buffers are reused.
    let cache = tf.zeros([16, 1024]);
    const hits = nb.poolStats.hits;
    for (let i = 0; i < 60; i++) {
      const row = tf.fill([1, 1024], i);
      const next = tf.concat([cache, row], 0);
      row.dispose();
      cache.dispose();
      cache = next;
    }
    // Exact sizes would give no hit at all; classes 1-2 rows apart give about one every other row.
    expect(nb.poolStats.hits - hits).toBeGreaterThan(20);
    const v = cache.dataSync();
    expect(v.length).toBe(76 * 1024);
    expect(v[75 * 1024]).toBe(59);
    expect(v[16 * 1024]).toBe(0);
    expect(v[15 * 1024]).toBe(0);
    cache.dispose();
  });

  it('never reuses an array handed out by dataSync', async () => {
    await tf.setBackend('native');
    const a = tf.add(tf.ones([1000]), tf.ones([1000]));
    const values = a.dataSync();
    a.dispose();
    for (let i = 0; i < 5; i++) tf.tidy(() => tf.mul(tf.fill([1000], 7), tf.fill([1000], 3)));
    expect(values.every((v) => v === 2)).toBe(true);
  });

  it('never writes into an array passed to tf.tensor', async () => {
    await tf.setBackend('native');
    const mine = new Float32Array(500).fill(1);
    const t = tf.tensor(mine);
    tf.tidy(() => tf.neg(t));
    t.dispose();
    for (let i = 0; i < 5; i++) tf.tidy(() => tf.neg(tf.fill([500], 9)));
    expect(mine.every((v) => v === 1)).toBe(true);
  });

  it('keeps views (contiguous slices) of a disposed tensor intact', async () => {
    await tf.setBackend('native');
    const big = tf.add(tf.range(0, 4096), 0) as tf.Tensor1D; // a kernel output: recyclable
    const view = tf.slice(tf.reshape(big, [64, 64]), [10, 0], [2, 64]);
    big.dispose();
    for (let i = 0; i < 5; i++) tf.tidy(() => tf.mul(tf.fill([4096], -1), 2));
    const v = view.dataSync();
    expect(v[0]).toBe(640);
    expect(v[127]).toBe(767);
    view.dispose();
  });

  it('gives the same results on one thread and on all', async () => {
    await tf.setBackend('native');
    const threads = nativeInfo()!.threads;
    const a = tf.randomNormal([300, 200], 0, 1, 'float32', 1);
    const b = tf.randomNormal([200, 170], 0, 1, 'float32', 2);
    const f = () => tf.tidy(() => Float32Array.from(tf.sum(tf.softmax(tf.matMul(a, b)), 0).dataSync()));
    setNativeThreads(1);
    const one = f();
    setNativeThreads(Math.max(threads, 2));
    const all = f();
    setNativeThreads(threads);
    for (let i = 0; i < one.length; i++) expect(Math.abs(one[i]! - all[i]!)).toBeLessThan(1e-4);
    a.dispose();
    b.dispose();
  });

  it('implements exactly the kernels that have parity tests', () => {
    const loaded = loadAddon();
    if (!loaded.ok) throw new Error(loaded.reason);
    // Adding a native kernel? Add its parity test (kernels.test.ts / fused.test.ts / model.test.ts),
    // then list it here. TeamllmNativeDecodeLayer (inference only, no gradient) is checked by the
    // cached-generation test in model.test.ts. TeamllmNativeFrozenLinear(T) (a frozen base's
    // products, forward and input gradient) and TeamllmNativeFrozenLoraLinear(Grad) (LoRA fused
    // with them) are checked in tests/lora/frozen-base.test.ts.
    expect(nativeKernelNames(loaded.addon)).toEqual(
      [
        'Abs', 'Add', 'AddN', 'BatchMatMul', 'Concat', 'Erf', 'Exp', 'GatherV2', 'Log', 'Max', 'Maximum', 'Mean', 'Min',
        'Minimum', 'Multiply', 'Neg', 'PadV2', 'Pow', 'Prod', 'RealDiv', 'Reciprocal', 'Relu', 'Rsqrt', 'Sigmoid', 'Slice',
        'Softmax', 'SplitV', 'Sqrt', 'Square', 'SquaredDifference', 'Sub', 'Sum', 'Tanh', 'TeamllmAdamW',
        'TeamllmAdamWMulti', 'TeamllmSumSquares', 'TeamllmNativeBlock', 'TeamllmNativeBlockGrad', 'TeamllmNativeDropout', 'TeamllmNativeLinearGelu', 'TeamllmNativeLinearGrad',
        'TeamllmNativeAttention', 'TeamllmNativeAttentionGrad', 'TeamllmNativeCrossEntropy', 'TeamllmNativeCrossEntropyGrad',
        'TeamllmNativeDecodeLayer', 'TeamllmNativeFrozenLinear', 'TeamllmNativeFrozenLinearT', 'TeamllmNativeFrozenLoraLinear', 'TeamllmNativeFrozenLoraLinearGrad',
        'TeamllmNativeGelu', 'TeamllmNativeGeluGrad', 'TeamllmNativeLayerNorm', 'TeamllmNativeLayerNormGrad',
        'TeamllmNativeSelfAttention', 'TeamllmNativeSelfAttentionGrad', 'TeamllmNativeRmsNorm', 'TeamllmNativeRmsNormGrad',
        'TeamllmNativeRope', 'TeamllmNativeSwiglu', 'TeamllmNativeSwigluGrad', 'Transpose', 'UnsortedSegmentSum', '_FusedMatMul',
      ].sort(),
    );
  });
});
