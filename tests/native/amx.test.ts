/**
 * The frozen bf16 products on AMX tiles (native/src/amx.cc): y = x·Wᵀ and dx = dy·W for W [n, k]
 * stored as bf16, chosen at run time for products of 32 rows or more where the CPU has AMX-BF16
 * and Linux grants the tile state (quantKernels().bf16 === 'amx_bf16'), and the AVX512_BF16
 * kernels otherwise, or with $TEAMLLM_NATIVE_AMX=off.
 *
 * AMX rounds the activations (x, or dy) to bf16 as the AVX512_BF16 kernels do and sums in
 * float32, so on shapes with every kind of edge (m, n, k not multiples of 16 or 32, a single
 * row block, n past one 128-column panel, a reduction longer than one 4096-row chunk):
 *   against float64 over the same bf16-rounded activations: ≤ 1e-5 of Σ|x·w| (float32 sums);
 *   against float64 over the float32 activations: ≤ 2^-8 + 1e-5 (the rounding, as the test of
 *   the AVX512_BF16 kernels in quant-kernels.test.ts states it);
 *   against the AVX512_BF16 kernel (mode 2): within 2e-5 of Σ|x·w| (two float32 sums in another order);
 *   one thread and two: bit for bit (each output's sums run in the same order whatever the split).
 * Where the CPU has no AMX these run the fallback and the same bounds hold.
 *
 * int8 weights with one scale per row (an int8 base's forward product from 32 rows, x rounded to
 * bf16 and each column times its scale, to the same bounds as bf16 above; and its input gradient):
 * dx = (dy·diag(scales))·W_int8 with dy·scale rounded to bf16 (the int8 values are exact in bf16):
 * ≤ 1e-5 of Σ|dy·w| against float64 over those rounded values, ≤ 2^-8 + 1e-5 against the exact
 * product; mode 1 (portable) ≤ 1e-5 of the exact one.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadAddon } from '../../src/model/native/addon.ts';

const loaded = loadAddon();
const addon = loaded.ok ? loaded.addon : undefined;
const amx = addon?.quantKernels?.().bf16 === 'amx_bf16';
const run = promisify(execFile);

function rand(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 4294967296 - 0.5;
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** float32 → bf16 bits, round to nearest even (as the kernels and src/model/import/dtypes.ts do). */
function toBf16(v: number): number {
  f32[0] = v;
  const u = u32[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function fromBf16(b: number): number {
  u32[0] = b << 16;
  return f32[0]!;
}

/** C [m, N] = A [m, K] · B[K, N] in float64 (B read through `b(kk, j)`), and Σ|a·b| per output. */
function reference(a: Float32Array | Float64Array, m: number, K: number, N: number, b: (kk: number, j: number) => number, bias?: Float32Array | null) {
  const c = new Float64Array(m * N);
  const mag = new Float64Array(m * N);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j]! : 0;
      let g = Math.abs(s);
      for (let kk = 0; kk < K; kk++) {
        const v = a[i * K + kk]! * b(kk, j);
        s += v;
        g += Math.abs(v);
      }
      c[i * N + j] = s;
      mag[i * N + j] = g;
    }
  return { c, mag };
}

function worst(got: Float32Array, ref: { c: Float64Array; mag: Float64Array }): number {
  let e = 0;
  for (let i = 0; i < got.length; i++) e = Math.max(e, Math.abs(got[i]! - ref.c[i]!) / Math.max(1e-30, ref.mag[i]!));
  return e;
}

// [m, n, k]: one 32-row block exactly, tails in every dimension, n over one 128-column panel,
// the reduction (k forward, n backward) over one 4096-row chunk.
const SHAPES: [number, number, number][] = [
  [32, 16, 32],
  [33, 17, 45],
  [70, 130, 97],
  [100, 300, 520],
  [45, 4100, 37],
  [40, 21, 4133],
];

describe.skipIf(!addon?.linear16 || !addon.linear16T)('bf16 products on AMX tiles', () => {
  const a = addon!;

  it('reports the kernel: amx_bf16 where /proc/cpuinfo has amx_bf16 (and TEAMLLM_NATIVE_AMX is not off)', () => {
    console.log(`bf16 kernel here: ${a.quantKernels!().bf16}`);
    expect(['amx_bf16', 'avx512_bf16', 'portable']).toContain(a.quantKernels!().bf16);
  });

  it.each(SHAPES)('[m %i, n %i, k %i]: forward and transposed products within float32 rounding of float64 over the bf16-rounded activations', (m, n, k) => {
    const next = rand(m * 131 + n * 7 + k);
    const w = Uint16Array.from({ length: n * k }, () => toBf16(next() * 0.4));
    const x = Float32Array.from({ length: m * k }, () => next() * 4);
    const dy = Float32Array.from({ length: m * n }, () => next() * 2);
    const bias = n % 2 ? Float32Array.from({ length: n }, () => next()) : null;
    const wAt = (j: number, p: number) => fromBf16(w[j * k + p]!);

    const y = new Float32Array(m * n);
    const yNoAmx = new Float32Array(m * n);
    a.linear16!(0, x, w, bias, y, m, n, k, 0);
    a.linear16!(0, x, w, bias, yNoAmx, m, n, k, 2);
    const xRounded = Float64Array.from(x, (v) => fromBf16(toBf16(v)));
    const fwdRounded = reference(xRounded, m, k, n, (p, j) => wAt(j, p), bias);
    const fwdExact = reference(x, m, k, n, (p, j) => wAt(j, p), bias);
    expect(worst(y, fwdRounded)).toBeLessThan(1e-5);
    expect(worst(y, fwdExact)).toBeLessThan(2 ** -8 + 1e-5);
    expect(worst(y, { c: Float64Array.from(yNoAmx), mag: fwdRounded.mag })).toBeLessThan(2e-5);

    const dx = new Float32Array(m * k);
    const dxNoAmx = new Float32Array(m * k);
    a.linear16T!(0, dy, w, dx, m, n, k, 0);
    a.linear16T!(0, dy, w, dxNoAmx, m, n, k, 2);
    const dyRounded = Float64Array.from(dy, (v) => fromBf16(toBf16(v)));
    const bwdRounded = reference(dyRounded, m, n, k, (j, p) => wAt(j, p));
    const bwdExact = reference(dy, m, n, k, (j, p) => wAt(j, p));
    if (amx) expect(worst(dx, bwdRounded)).toBeLessThan(1e-5);
    expect(worst(dx, bwdExact)).toBeLessThan(2 ** -8 + 1e-5);
    // (The AVX512_BF16 kernel keeps an odd last row of W's dy in float32, hence the exact reference's scale.)
    expect(worst(dx, { c: Float64Array.from(dxNoAmx), mag: bwdExact.mag })).toBeLessThan(2 ** -8 + 1e-5);

    if (amx && k > 64) {
      // AMX ran: its sums of many terms come in another order than the AVX512_BF16 kernel's, so some output differs in its last bits.
      expect(y).not.toEqual(yNoAmx);
    }
  });

  it('gives the same bits on one thread and on two', () => {
    const threads = a.info().threads;
    const next = rand(7);
    const [m, n, k] = [70, 300, 130];
    const w = Uint16Array.from({ length: n * k }, () => toBf16(next() * 0.4));
    const x = Float32Array.from({ length: m * k }, () => next() * 4);
    const dy = Float32Array.from({ length: m * n }, () => next() * 2);
    const products = (t: number) => {
      a.setThreads(t);
      const y = new Float32Array(m * n);
      const dx = new Float32Array(m * k);
      a.linear16!(0, x, w, null, y, m, n, k, 0);
      a.linear16T!(0, dy, w, dx, m, n, k, 0);
      return [y, dx];
    };
    try {
      expect(products(2)).toEqual(products(1));
    } finally {
      a.setThreads(threads);
    }
  });

  it('TEAMLLM_NATIVE_AMX=off runs the AVX512_BF16 kernels (mode 0 then equals mode 2 bit for bit)', async () => {
    const script = `
      const { loadAddon } = await import(${JSON.stringify(new URL('../../src/model/native/addon.ts', import.meta.url).href)});
      const a = loadAddon().addon;
      const [m, n, k] = [64, 48, 96];
      const w = Uint16Array.from({ length: n * k }, (_, i) => 0x3c00 + ((i * 7919) % 509));
      const x = Float32Array.from({ length: m * k }, (_, i) => ((i * 31) % 17) / 17 - 0.5);
      const dy = Float32Array.from({ length: m * n }, (_, i) => ((i * 13) % 19) / 19 - 0.5);
      const same = (mode) => {
        const y = new Float32Array(m * n), dx = new Float32Array(m * k);
        a.linear16(0, x, w, null, y, m, n, k, mode);
        a.linear16T(0, dy, w, dx, m, n, k, mode);
        return [Array.from(y), Array.from(dx)];
      };
      console.log(JSON.stringify({ kernel: a.quantKernels().bf16, equal: JSON.stringify(same(0)) === JSON.stringify(same(2)) }));
    `;
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, TEAMLLM_NATIVE_AMX: 'off' },
      timeout: 60_000,
    });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { kernel: string; equal: boolean };
    expect(r.kernel).not.toBe('amx_bf16');
    expect(r.equal).toBe(true);
  });
});

describe.skipIf(!addon?.linearInt8T)('int8 products on AMX tiles (one scale per row)', () => {
  const a = addon!;
  it.each(SHAPES)('[m %i, n %i, k %i]: dx within float32 rounding of float64 over dy·scale rounded to bf16 (the portable mode exact); y over x rounded', (m, n, k) => {
    const next = rand(m * 17 + n * 3 + k);
    const w = Int8Array.from({ length: n * k }, () => Math.round(next() * 254));
    const scales = Float32Array.from({ length: n }, () => 0.001 + Math.abs(next()) * 0.01);
    const dy = Float32Array.from({ length: m * n }, () => next() * 2);
    const wAt = (j: number, p: number) => w[j * k + p]!;
    const dx = new Float32Array(m * k);
    const dxPortable = new Float32Array(m * k);
    a.linearInt8T!(dy, w, scales, k, dx, m, n, k, 0);
    a.linearInt8T!(dy, w, scales, k, dxPortable, m, n, k, 1);
    // dy[i, j]·W[j, p] = (dy[i, j]·scale[j])·w[j, p]: the scale goes with dy.
    const scaled = Float64Array.from(dy, (v, i) => Math.fround(v * scales[i % n]!));
    const rounded = Float64Array.from(scaled, (v) => fromBf16(toBf16(v)));
    const exact = reference(scaled, m, n, k, (j, p) => wAt(j, p));
    expect(worst(dxPortable, exact)).toBeLessThan(1e-5);
    if (amx) expect(worst(dx, reference(rounded, m, n, k, (j, p) => wAt(j, p)))).toBeLessThan(1e-5);
    expect(worst(dx, exact)).toBeLessThan(2 ** -8 + 1e-5);

    // The forward product y = x·Wᵀ: x rounded to bf16, each column times its row's scale.
    const x = Float32Array.from({ length: m * k }, () => next() * 4);
    const bias = n % 2 ? Float32Array.from({ length: n }, () => next()) : null;
    const y = new Float32Array(m * n);
    a.linearInt8!(x, w, scales, k, bias, y, m, n, k, 0);
    const wScaled = (p: number, j: number) => w[j * k + p]! * scales[j]!;
    const xRounded = Float64Array.from(x, (v) => fromBf16(toBf16(v)));
    if (amx) expect(worst(y, reference(xRounded, m, k, n, wScaled, bias))).toBeLessThan(1e-5);
    expect(worst(y, reference(x, m, k, n, wScaled, bias))).toBeLessThan(2 ** -8 + 1e-5);
  });
});
