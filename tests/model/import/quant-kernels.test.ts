/**
 * Products from bf16, f16 and int8 weights (native/src/quant.cc, weights.ts) and the chat model
 * running on them.
 *
 * Products, against a float64 reference over the same stored weights, error measured relative to
 * Σ|x·w| of each output (the scale float32 rounding works on):
 *   portable kernels (weights widened exactly, float32 activations and sums)  ≤ 1e-5 (k ≤ 1000: k·2^-24 ≈ 6e-5 worst case, ~1e-7 measured)
 *   AVX512_BF16 kernel (activations rounded to bf16 once: ≤ 2^-8 relative each)  ≤ 2^-8 + 1e-5
 *     (and AMX, which rounds them the same way: from 32 rows of x; tests/native/amx.test.ts)
 *   AVX512-VNNI int8 kernel (activations quantised to int8 per 32 columns, as llama.cpp's Q8_0
 *     does: d = max|block|/127, each value within d/2; per-row int8 from 32 rows of x runs on AMX
 *     where the CPU has it, x rounded to bf16: ≤ 2^-8 + 1e-5 as bf16), per output
 *       |y − ref| ≤ Σ_blocks (max|x_block|/254)·Σ_block |w| + 1e-5·Σ|x·w|
 *     and, against the same product computed in float64 from those quantised activations
 *     (reproduced here), ≤ 1e-5·Σ|x̂·w|: only float32 rounding of the sums
 *   JavaScript fallback (float64 sums)                                        ≤ 1e-5
 * Shapes: one row of x (decoding) and several (a prefill: 4-row tiles and the rows left over;
 * from 16 rows the VNNI kernel's 16-row panels, the last one partly filled),
 * k with and without a tail past the last 16/32/64 columns, n not a multiple of 4, and products
 * large enough to be split over the thread pool (1 and 2 threads give the same numbers).
 * Quantisation: int8 per output channel is within scale/2 = max|row|/254 of each weight; Q8_0
 * blocks read back as exactly the numbers the GGUF holds.
 * Logits (tiny random Qwen2 and Llama, 2 layers, hidden 64, a 24-token prompt), centred, per position
 * ‖Δ‖/‖f32‖: bf16 weights ≤ 1.5e-2 (the BF16 bound of the llama.cpp parity test), int8 ≤ 5e-2 (its
 * Q8_0 bound); the portable and JavaScript paths give the fast path's logits to 1e-2 (bf16: the
 * activation rounding), to 5e-2 (int8 on AVX512-VNNI: the activation quantisation, llama.cpp's
 * Q8_0 bound again) and to 1e-4 (f16, and int8 without VNNI: the same arithmetic in another order).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAddon } from '../../../src/model/native/addon.ts';
import { encoderKernels } from '../../../src/model/import/encoder-kernels.ts';
import { LlamaModel } from '../../../src/model/import/llama.ts';
import { loadGgufChatModel, loadHfChatModel } from '../../../src/model/import/llama-checkpoint.ts';
import { dequantize, linearJs, quantizeInt8, toBf16, f32Matrix, convertWeight, q8_0ToInt8, type WeightMatrix } from '../../../src/model/import/weights.ts';
import { roundedChat, tinyChatModel, writeChatGguf, writeHfChatFolder, type TinyArch } from './tiny-llama.ts';

const native = loadAddon().ok;

function rand(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 4294967296 - 0.5;
  };
}

/** Largest |y − ref| / Σ|x·w| over the outputs, the reference in float64 from the stored weights. */
function productError(x: Float32Array, w: WeightMatrix, bias: Float32Array | null, m: number, y: Float32Array): number {
  const wf = dequantize(w);
  const { rows: n, cols: k } = w;
  let worst = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      let mag = Math.abs(s);
      for (let p = 0; p < k; p++) {
        s += x[i * k + p]! * wf[j * k + p]!;
        mag += Math.abs(x[i * k + p]! * wf[j * k + p]!);
      }
      worst = Math.max(worst, Math.abs(y[i * n + j]! - s) / mag);
    }
  }
  return worst;
}

/** round(v), halves to even (vcvtps2dq's rounding). */
function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * x as the AVX512-VNNI kernel quantises it, back in float32: per row, per block of 32 columns,
 * d = max|x|/127 and q = round(x·(1/d)) in float32, x̂ = q·d (llama.cpp's quantize_row_q8_0).
 */
function q8Activations(x: Float32Array, m: number, k: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < m; i++) {
    for (let b = 0; b < k; b += 32) {
      const end = Math.min(k, b + 32);
      let amax = 0;
      for (let p = b; p < end; p++) amax = Math.max(amax, Math.abs(x[i * k + p]!));
      const d = Math.fround(amax / 127);
      const inv = d > 0 ? Math.fround(1 / d) : 0;
      for (let p = b; p < end; p++) out[i * k + p] = roundEven(Math.fround(x[i * k + p]! * inv)) * d;
    }
  }
  return out;
}

/**
 * The stated bound of a product with int8-quantised activations: each x within d/2 = max|block|/254
 * of its block, so |y − ref| ≤ Σ_blocks (max|x_block|/254)·Σ_block |w| (+ 1e-5·Σ|x·w| for float32
 * sums). `excess` > 0 where an output breaks it; `ratio`: the largest |y − ref| / that bound.
 */
function activationQuantisationError(x: Float32Array, w: WeightMatrix, bias: Float32Array | null, m: number, y: Float32Array): { excess: number; ratio: number } {
  const wf = dequantize(w);
  const { rows: n, cols: k } = w;
  let excess = -Infinity;
  let ratio = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      let mag = Math.abs(s);
      let bound = 0;
      for (let b = 0; b < k; b += 32) {
        let amax = 0;
        let wsum = 0;
        for (let p = b; p < Math.min(k, b + 32); p++) {
          amax = Math.max(amax, Math.abs(x[i * k + p]!));
          wsum += Math.abs(wf[j * k + p]!);
          s += x[i * k + p]! * wf[j * k + p]!;
          mag += Math.abs(x[i * k + p]! * wf[j * k + p]!);
        }
        bound += (amax / 254) * wsum;
      }
      const err = Math.abs(y[i * n + j]! - s);
      excess = Math.max(excess, err - bound * (1 + 1e-6) - 1e-5 * mag);
      ratio = Math.max(ratio, err / bound);
    }
  }
  return { excess, ratio };
}

// [m, n, k]: decode (m 1), prefill blocks (4-row tiles and the rows left over), k with and without
// a tail past the last 16/32/64 columns, n not a multiple of 4.
const SHAPES: [number, number, number][] = [
  [1, 37, 45],
  [1, 64, 256],
  [6, 33, 96],
  [9, 21, 130],
  [1, 30, 200],
  [17, 13, 70],
  [40, 9, 45],
];

type TestDtype = 'bf16' | 'f16' | 'int8' | 'q8' | 'q64' | 'q16';
/** Columns per scale of the blocked int8 layouts: GGUF's Q8_0 (32), and two other multiples of 16. */
const GROUP: Partial<Record<TestDtype, number>> = { q8: 32, q64: 64, q16: 16 };

function weightsOf(dtype: TestDtype, n: number, k: number, next: () => number): WeightMatrix {
  const f = Float32Array.from({ length: n * k }, () => next() * 0.2);
  if (dtype === 'bf16') return toBf16(f, n, k);
  if (dtype === 'int8') return quantizeInt8(f, n, k);
  const group = GROUP[dtype];
  if (group) {
    // int8 with one scale per `group` columns, as GGUF Q8_0 holds them (k padded to a multiple of the group by the caller).
    const m = quantizeInt8(f, n, k);
    const scales = Float32Array.from({ length: (n * k) / group }, () => 0.001 + Math.abs(next()) * 0.01);
    return { ...m, scales, group } as WeightMatrix;
  }
  const bits = new Uint16Array(n * k);
  // IEEE halves of moderate size: sign, exponent 10..17, any mantissa.
  for (let i = 0; i < bits.length; i++) bits[i] = (next() < 0 ? 0x8000 : 0) | ((10 + Math.floor((next() + 0.5) * 8)) << 10) | Math.floor((next() + 0.5) * 1023);
  return { dtype: 'f16', rows: n, cols: k, data: bits };
}

describe('products from stored weights', () => {
  const fast = encoderKernels('native', { quant: 'best' });
  const portable = encoderKernels('native', { quant: 'portable' });
  const js = encoderKernels('js');

  it.skipIf(!native)('reports which kernel each dtype runs (AVX512_BF16 / AVX512-VNNI chosen at run time where /proc/cpuinfo has avx512_bf16 / avx512_vnni)', () => {
    const kinds = fast.weightKernels();
    console.log('weight kernels here:', JSON.stringify(kinds));
    expect(['amx_bf16', 'avx512_bf16', 'portable']).toContain(kinds.bf16);
    expect(['avx512_vnni', 'portable']).toContain(kinds.int8);
    expect(portable.weightKernels()).toMatchObject({ bf16: 'portable', f16: 'portable', int8: 'portable' });
    expect(js.weightKernels().bf16).toBe('js');
  });

  for (const dtype of ['bf16', 'f16', 'int8', 'q8', 'q64', 'q16'] as const) {
    it.skipIf(!native)(`${dtype}: native (best and portable) and JavaScript products match a float64 reference`, () => {
      const next = rand(dtype.length * 7 + dtype.charCodeAt(1));
      const group = GROUP[dtype];
      const kernel = fast.weightKernels()[dtype === 'bf16' || dtype === 'f16' ? dtype : 'int8'];
      // The VNNI kernel takes per-row scales and groups of a multiple of 32; groups of 16 run the portable one.
      const vnni = kernel === 'avx512_vnni' && group !== 16;
      // int8 with one scale per row (a group as wide as the row too) from 32 rows of x runs on AMX
      // where the CPU has it (x rounded to bf16, not quantised).
      const amxInt8 = dtype !== 'bf16' && dtype !== 'f16' && fast.weightKernels().bf16 === 'amx_bf16';
      const worst = { best: 0, portable: 0, js: 0, bestVsQuantised: 0, quantisationBound: 0, amx: 0 };
      for (const [m, n, k0] of SHAPES) {
        const k = group ? Math.ceil(k0 / group) * group : k0;
        const w = weightsOf(dtype, n, k, next);
        const x = Float32Array.from({ length: m * k }, () => next() * 4);
        const bias = n % 2 ? Float32Array.from({ length: n }, () => next()) : null;
        const yb = fast.linearWeight(x, w, bias, m);
        const yp = portable.linearWeight(x, w, bias, m);
        const yj = js.linearWeight(x, w, bias, m);
        if (amxInt8 && m >= 32 && (!group || group === k)) {
          worst.amx = Math.max(worst.amx, productError(x, w, bias, m, yb));
        } else {
          if (vnni) {
            const { excess, ratio } = activationQuantisationError(x, w, bias, m, yb);
            worst.quantisationBound = Math.max(worst.quantisationBound, ratio);
            expect(excess).toBeLessThanOrEqual(0);
            worst.bestVsQuantised = Math.max(worst.bestVsQuantised, productError(q8Activations(x, m, k), w, bias, m, yb));
          }
          worst.best = Math.max(worst.best, productError(x, w, bias, m, yb));
        }
        worst.portable = Math.max(worst.portable, productError(x, w, bias, m, yp));
        worst.js = Math.max(worst.js, productError(x, w, bias, m, yj));
        expect(linearJs(x, w, bias, m)).toEqual(yj);
      }
      const vnniNote = vnni ? `, vs its own quantised activations ${worst.bestVsQuantised.toExponential(2)}, largest |error| / quantisation bound ${worst.quantisationBound.toFixed(3)}` : '';
      const amxNote = amxInt8 ? `, from 32 rows on AMX ${worst.amx.toExponential(2)}` : '';
      console.log(`${dtype} product error / Σ|x·w|: best ${worst.best.toExponential(2)} (${vnni ? kernel : dtype === 'q16' ? 'portable' : kernel}${vnniNote})${amxNote}, portable ${worst.portable.toExponential(2)}, js ${worst.js.toExponential(2)}`);
      // AMX rounds x to bf16: ≤ 2^-8 relative each (the bf16 bound).
      expect(worst.amx).toBeLessThan(2 ** -8 + 1e-5);
      if (vnni) {
        expect(worst.bestVsQuantised).toBeLessThan(1e-5);
        // The quantisation is real: the error is far above float32 rounding (a kernel that ignored x's blocks would not get here).
        expect(worst.best).toBeGreaterThan(1e-4);
      } else {
        const bestBound = dtype === 'bf16' && (kernel === 'avx512_bf16' || kernel === 'amx_bf16') ? 2 ** -8 + 1e-5 : 1e-5;
        expect(worst.best).toBeLessThan(bestBound);
      }
      expect(worst.portable).toBeLessThan(1e-5);
      expect(worst.js).toBeLessThan(1e-5);
    });
  }

  it.skipIf(!native)('products split over the thread pool give the numbers of one thread (every kernel, decode and prefill rows)', () => {
    const addon = loadAddon();
    if (!addon.ok) throw new Error(addon.reason);
    const threads = addon.addon.info().threads;
    const next = rand(99);
    // Large enough that the pool splits W's rows into pieces (2e5 flops each).
    const cases: [TestDtype, number, number, number][] = [
      ['int8', 1, 1001, 896],
      ['q8', 1, 998, 640],
      ['int8', 11, 300, 520],
      ['q8', 9, 301, 512],
      ['int8', 40, 300, 520],
      ['q8', 33, 301, 512],
      ['bf16', 1, 1003, 896],
      ['bf16', 7, 302, 520],
    ];
    try {
      for (const [dtype, m, n, k] of cases) {
        const w = weightsOf(dtype, n, k, next);
        const x = Float32Array.from({ length: m * k }, () => next() * 4);
        const run = (kernels: typeof fast, t: number) => {
          addon.addon.setThreads(t);
          return kernels.linearWeight(x, w, null, m);
        };
        for (const kernels of [fast, portable]) expect(run(kernels, 2)).toEqual(run(kernels, 1));
        expect(productError(x, w, null, m, run(portable, 2))).toBeLessThan(1e-5);
      }
    } finally {
      addon.addon.setThreads(threads);
    }
  });

  it('products write into a given output buffer (a view of its start when longer), and refuse a short one', () => {
    const next = rand(12);
    const w = weightsOf('int8', 9, 40, next);
    const x = Float32Array.from({ length: 3 * 40 }, () => next());
    for (const kernels of native ? [fast, portable, js] : [js]) {
      const fresh = kernels.linearWeight(x, w, null, 3);
      const out = new Float32Array(3 * 9 + 5).fill(7);
      const y = kernels.linearWeight(x, w, null, 3, out);
      expect(y.buffer).toBe(out.buffer);
      expect(y).toEqual(fresh);
      expect(out[3 * 9]).toBe(7);
      expect(() => kernels.linearWeight(x, w, null, 3, new Float32Array(3 * 9 - 1))).toThrow(/needed/);
      const scores = new Float32Array(3 * 9);
      expect(kernels.linear(x, dequantize(w), null, 3, 40, 9, scores)).toBe(scores);
      // A buffer holding old values: the product replaces them (the JavaScript one sums into it).
      const b = dequantize(w); // read as [40, 9]
      expect(kernels.batchMatmul(x, b, 1, 3, 40, 9, new Float32Array(27).fill(5))).toEqual(kernels.batchMatmul(x, b, 1, 3, 40, 9));
    }
  });

  it('siluMul: native and JavaScript agree (silu(g)·u = g·sigmoid(g)·u)', () => {
    const next = rand(5);
    const g = Float32Array.from({ length: 20001 }, () => next() * 30);
    const u = Float32Array.from({ length: g.length }, () => next() * 2);
    const want = g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]!);
    for (const kernels of native ? [fast, js] : [js]) {
      const y = g.slice();
      kernels.siluMul(y, u);
      let worst = 0;
      for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i]! - want[i]!) / (Math.abs(u[i]!) * (1 + Math.abs(g[i]!))));
      expect(worst).toBeLessThan(1e-6);
    }
  });

  it('rmsNorm: native and JavaScript agree with a float64 RMSNorm (in place too)', () => {
    const next = rand(8);
    const rows = 37;
    const cols = 200;
    const x = Float32Array.from({ length: rows * cols }, () => next() * 10);
    const w = Float32Array.from({ length: cols }, () => 1 + next());
    const want = new Float64Array(x.length);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let c = 0; c < cols; c++) ss += x[r * cols + c]! ** 2;
      const inv = 1 / Math.sqrt(ss / cols + 1e-6);
      for (let c = 0; c < cols; c++) want[r * cols + c] = x[r * cols + c]! * inv * w[c]!;
    }
    for (const kernels of native ? [fast, js] : [js]) {
      const y = new Float32Array(x.length);
      kernels.rmsNorm(x, w, rows, cols, 1e-6, y);
      const inPlace = x.slice();
      kernels.rmsNorm(inPlace, w, rows, cols, 1e-6, inPlace);
      expect(inPlace).toEqual(y);
      let worst = 0;
      for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i]! - want[i]!) / Math.max(1e-30, Math.abs(want[i]!)));
      expect(worst).toBeLessThan(2 ** -23);
    }
  });

  it.skipIf(!native)('adviseHugePages keeps the values (on Linux the matrix is moved into 2 MB pages)', () => {
    const w = new Int8Array(6 << 20);
    for (let i = 0; i < w.length; i++) w[i] = (i * 7919) % 255 - 127;
    const done = fast.adviseHugePages(w);
    console.log(`adviseHugePages here: ${done}`);
    expect(typeof done).toBe('boolean');
    for (let i = 0; i < w.length; i += 4097) expect(w[i]).toBe((i * 7919) % 255 - 127);
    expect(js.adviseHugePages(w)).toBe(false);
  });

  it('int8 per output channel is within max|row|/254 of each weight; bf16 within 2^-8 relative; Q8_0 blocks are read exactly', () => {
    const next = rand(3);
    const n = 8;
    const k = 64;
    const f = Float32Array.from({ length: n * k }, () => next());
    const q = quantizeInt8(f, n, k);
    expect(q.dtype === 'int8' && q.group).toBe(k);
    const back = dequantize(q);
    for (let r = 0; r < n; r++) {
      let amax = 0;
      for (let c = 0; c < k; c++) amax = Math.max(amax, Math.abs(f[r * k + c]!));
      for (let c = 0; c < k; c++) expect(Math.abs(back[r * k + c]! - f[r * k + c]!)).toBeLessThanOrEqual((amax / 254) * (1 + 1e-6));
    }
    const b = dequantize(toBf16(f, n, k));
    for (let i = 0; i < f.length; i++) expect(Math.abs(b[i]! - f[i]!)).toBeLessThanOrEqual(Math.abs(f[i]!) * 2 ** -8);
    // A Q8_0 block: scale 0.5 (F16 0x3800), values -127..127.
    const raw = new Uint8Array(34 * 2);
    for (let blk = 0; blk < 2; blk++) {
      raw[blk * 34] = 0x00;
      raw[blk * 34 + 1] = 0x38;
      for (let j = 0; j < 32; j++) raw[blk * 34 + 2 + j] = (j * 8 - 127 + blk) & 0xff;
    }
    const q8 = dequantize(q8_0ToInt8(raw, 1, 64));
    for (let i = 0; i < 64; i++) expect(q8[i]).toBe(0.5 * ((((i % 32) * 8 - 127 + Math.floor(i / 32)) << 24) >> 24));
    // Converting back and forth keeps shapes; f32 → bf16 → f32 is the rounding above.
    expect(dequantize(convertWeight(f32Matrix(f, n, k), 'bf16'))).toEqual(b);
  });
});

/** Per position ‖a − b‖ / ‖b‖ of the centred logits, the largest. */
function logitError(a: Float32Array, b: Float32Array, vocab: number): number {
  let worst = 0;
  for (let t = 0; t < a.length / vocab; t++) {
    let ma = 0;
    let mb = 0;
    for (let i = 0; i < vocab; i++) {
      ma += a[t * vocab + i]!;
      mb += b[t * vocab + i]!;
    }
    ma /= vocab;
    mb /= vocab;
    let d2 = 0;
    let n2 = 0;
    for (let i = 0; i < vocab; i++) {
      const y = b[t * vocab + i]! - mb;
      d2 += (a[t * vocab + i]! - ma - y) ** 2;
      n2 += y ** 2;
    }
    worst = Math.max(worst, Math.sqrt(d2 / n2));
  }
  return worst;
}

function promptIds(vocab: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 37 + 11) % (vocab - 8));
}

describe('a tiny chat model on bf16 and int8 weights', () => {
  for (const arch of ['qwen2', 'llama'] as TinyArch[]) {
    it(`${arch}: bf16 and int8 logits near the float32 model's; portable, JavaScript and fast paths agree; cached decoding = recomputing`, () => {
      const base = tinyChatModel(arch, 5);
      const V = base.config.vocabSize;
      const ids = promptIds(V, 24);
      const f32 = new LlamaModel(base.config, base.weights).forward(ids);
      const errors: string[] = [];
      for (const dtype of ['bf16', 'int8'] as const) {
        const bound = dtype === 'bf16' ? 1.5e-2 : 5e-2;
        const paths = native ? (['best', 'portable', 'js'] as const) : (['js'] as const);
        const logits = paths.map((p) => {
          const kernels = p === 'js' ? encoderKernels('js') : encoderKernels('native', { quant: p });
          const model = new LlamaModel(base.config, base.weights, { dtype, kernels });
          expect(model.weightDtype()).toBe(dtype);
          return model.forward(ids);
        });
        const vsF32 = logitError(logits[0]!, f32, V);
        errors.push(`${dtype} vs f32 ${vsF32.toExponential(2)}`);
        expect(vsF32).toBeLessThan(bound);
        // The fast path rounds activations (bf16) or quantises them (int8 on AVX512-VNNI); the others do not.
        const fastKernel = native ? encoderKernels('native').weightKernels()[dtype] : 'js';
        const pathBound = fastKernel === 'avx512_bf16' || fastKernel === 'amx_bf16' ? 1e-2 : fastKernel === 'avx512_vnni' ? 5e-2 : 1e-4;
        for (let i = 1; i < logits.length; i++) {
          const e = logitError(logits[i]!, logits[0]!, V);
          errors.push(`${dtype} ${paths[i]} vs ${paths[0]} ${e.toExponential(2)}`);
          expect(e).toBeLessThan(pathBound);
        }
        if (paths.length > 1) {
          // The portable path is the float32 model up to the weights' own rounding, within the same bound.
          const viaPortable = logitError(logits[1]!, f32, V);
          errors.push(`${dtype} portable vs f32 ${viaPortable.toExponential(2)}`);
          expect(viaPortable).toBeLessThan(bound);
        }
      }
      console.log(`${arch} logits (centred, relative per position): ${errors.join(', ')}`);
      // Decoding through the cache on bf16 weights gives what recomputing the whole sequence gives.
      const model = new LlamaModel(base.config, base.weights, { dtype: 'bf16' });
      expect(model.generate(ids, { maxTokens: 8 })).toEqual(model.generate(ids, { maxTokens: 8, useCache: false }));
      // Memory: bf16 matrices take half of float32's bytes, int8 about a quarter (plus float32 norms, biases and scales).
      const f32Bytes = new LlamaModel(base.config, base.weights).weightBytes();
      expect(model.weightBytes()).toBeLessThan(0.51 * f32Bytes);
      expect(new LlamaModel(base.config, base.weights, { dtype: 'int8' }).weightBytes()).toBeLessThan(0.3 * f32Bytes);
    });
  }
});

describe('loading keeps the checkpoint precision', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'teamllm-quant-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('BF16 folder → bf16, F16 → f16 (exact) or bf16 when asked, Q8_0 GGUF → int8 blocks with the file numbers, --dtype int8 → per channel', () => {
    const base = tinyChatModel('qwen2', 9);
    const ids = promptIds(base.config.vocabSize, 12);
    const bf = roundedChat(base, 'BF16');
    writeHfChatFolder(path.join(dir, 'bf16'), bf, 'BF16');
    const loaded = loadHfChatModel(path.join(dir, 'bf16'));
    expect(loaded.model.weightDtype()).toBe('bf16');
    const asInt8 = loadHfChatModel(path.join(dir, 'bf16'), { dtype: 'int8' });
    expect(asInt8.model.weightDtype()).toBe('int8');
    const exact = new LlamaModel(bf.config, bf.weights, { kernels: encoderKernels('native', { quant: 'portable' }) }).forward(ids);
    const viaPortable = loadHfChatModel(path.join(dir, 'bf16'), { kernels: encoderKernels('native', { quant: 'portable' }) }).model.forward(ids);
    expect(logitError(viaPortable, exact, bf.config.vocabSize)).toBeLessThan(1e-5);

    const half = roundedChat(base, 'F16');
    writeChatGguf(path.join(dir, 'f16.gguf'), half, 'F16');
    const f16 = loadGgufChatModel(path.join(dir, 'f16.gguf'));
    expect(f16.model.weightDtype()).toBe('f16');
    expect(logitError(f16.model.forward(ids), new LlamaModel(half.config, half.weights).forward(ids), half.config.vocabSize)).toBeLessThan(1e-5);
    expect(loadGgufChatModel(path.join(dir, 'f16.gguf'), { dtype: 'bf16' }).model.weightDtype()).toBe('bf16');

    writeChatGguf(path.join(dir, 'q8.gguf'), base, 'Q8_0');
    const q8 = loadGgufChatModel(path.join(dir, 'q8.gguf'), { kernels: encoderKernels('native', { quant: 'portable' }) });
    expect(q8.model.weightDtype()).toBe('int8');
    // The same numbers as reading every tensor dequantised to float32 (on the portable kernel: the
    // VNNI one quantises the activations too, within llama.cpp's Q8_0 bound).
    const dequantised = loadGgufChatModel(path.join(dir, 'q8.gguf'), { dtype: 'f32' });
    expect(dequantised.model.weightDtype()).toBe('f32');
    const reference = dequantised.model.forward(ids);
    expect(logitError(q8.model.forward(ids), reference, base.config.vocabSize)).toBeLessThan(1e-5);
    expect(logitError(loadGgufChatModel(path.join(dir, 'q8.gguf')).model.forward(ids), reference, base.config.vocabSize)).toBeLessThan(5e-2);
    expect(q8.model.weightBytes()).toBeLessThan(0.3 * dequantised.model.weightBytes());
  });
});
