/**
 * The addon's own float32 GEMM/GEMV (native/src/sgemm.cc), which a build without OpenBLAS runs
 * on (scripts/build-native.mjs: -DTEAMLLM_NO_OPENBLAS when OpenBLAS is missing or
 * TEAMLLM_NATIVE_BLAS=off). The addon's `sgemm`/`sgemv` run it even where OpenBLAS is linked.
 *
 * Error, per output, relative to the scale float32 rounding works on, |alpha|·Σ|a·b| + |beta·c|:
 * the bound is k·2^-24 (k rounded additions, each ≤ half an ulp of a partial sum); the tolerance
 * asserted is 2·k·2^-24 + 2^-23, measured ≤ 2.4e-7 on this machine (k up to 513).
 * Against OpenBLAS (where linked): both within their bound of the exact sum, so ≤ twice it.
 *
 * Sizes: 1, 6 (the register tile's rows), 7, 33, 257 and 513 (past the 256-deep k block), n past
 * the 512-column block, leading dimensions larger than the rows (the sub-blocks gemm.cc passes).
 *
 * Then the whole addon built with TEAMLLM_NATIVE_BLAS=off into a temporary directory (~15-30 s on
 * 2 cores): its one line and build-info.json say "own", and one GPT training step (loss and every
 * gradient, tests/native/fixtures/gpt-step.ts) matches the OpenBLAS build's: loss to 1e-5, each
 * gradient to 1e-4 of its largest entry (the same sums in another order; measured ~1e-7 / ~1e-6).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAddon } from '../../src/model/native/addon.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..', '..');
const loaded = loadAddon();
const addon = loaded.ok && loaded.addon.sgemm ? loaded.addon : undefined;
const linkedBlas = addon?.info().gemm === 'openblas';

function rand(seed: number, n: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

interface Case {
  m: number;
  n: number;
  k: number;
  ta: boolean;
  tb: boolean;
  alpha: number;
  beta: number;
  /** extra elements per stored row of a, b and c */
  pad: number;
}

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [1, 257, 33],
  [257, 1, 7],
  [7, 33, 257],
  [33, 257, 7],
  [257, 7, 33],
  [6, 64, 256],
  [13, 70, 513],
  [5, 600, 20],
];
const cases: Case[] = [];
for (const [m, n, k] of shapes)
  for (const ta of [false, true])
    for (const tb of [false, true])
      for (const [alpha, beta, pad] of [
        [1, 0, 0],
        [0.5, 1.5, 3],
      ] as const)
        cases.push({ m, n, k, ta, tb, alpha, beta, pad });

/** Runs one case on our GEMM (and OpenBLAS); returns the largest relative errors. */
function check(c: Case): { ref: number; blas: number } {
  const { m, n, k, ta, tb, alpha, beta, pad } = c;
  const lda = (ta ? m : k) + pad;
  const ldb = (tb ? k : n) + pad;
  const ldc = n + pad;
  const a = rand(m * 31 + k, (ta ? k : m) * lda);
  const b = rand(n * 17 + k, (tb ? n : k) * ldb);
  const c0 = rand(m + n, m * ldc);
  // beta 0 must ignore C entirely (BLAS semantics), NaN included.
  if (beta === 0) c0.fill(Number.NaN);
  const own = c0.slice();
  addon!.sgemm!(false, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, own, ldc);
  const blas = c0.slice();
  if (linkedBlas) addon!.sgemm!(true, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, blas, ldc);
  let ref = 0;
  let vsBlas = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let scale = 0;
      for (let p = 0; p < k; p++) {
        const prod = (ta ? a[p * lda + i]! : a[i * lda + p]!) * (tb ? b[j * ldb + p]! : b[p * ldb + j]!);
        s += prod;
        scale += Math.abs(prod);
      }
      const cij = beta === 0 ? 0 : c0[i * ldc + j]!;
      const exact = alpha * s + beta * cij;
      const norm = Math.abs(alpha) * scale + Math.abs(beta * cij) || 1;
      ref = Math.max(ref, Math.abs(own[i * ldc + j]! - exact) / norm);
      if (linkedBlas) vsBlas = Math.max(vsBlas, Math.abs(own[i * ldc + j]! - blas[i * ldc + j]!) / norm);
      if (Number.isNaN(own[i * ldc + j]!)) ref = Infinity;
    }
    // The padding between rows of C is never written.
    for (let j = n; j < ldc; j++) if (!Object.is(own[i * ldc + j], c0[i * ldc + j])) ref = Infinity;
  }
  return { ref, blas: vsBlas };
}

describe.skipIf(!addon)('own float32 GEMM (native/src/sgemm.cc)', () => {
  it('matches a float64 reference and OpenBLAS for every transpose, awkward sizes, alpha/beta and strides', () => {
    let worst = 0;
    let worstBlas = 0;
    for (const c of cases) {
      const { ref, blas } = check(c);
      const tol = 2 * c.k * 2 ** -24 + 2 ** -23;
      if (!(ref <= tol) || !(blas <= 2 * tol)) throw new Error(`${JSON.stringify(c)}: error ${ref} (vs OpenBLAS ${blas}), tolerance ${tol}`);
      worst = Math.max(worst, ref);
      worstBlas = Math.max(worstBlas, blas);
    }
    console.log(`own sgemm: ${cases.length} cases, worst error ${worst.toExponential(2)} vs float64, ${linkedBlas ? worstBlas.toExponential(2) : 'n/a'} vs OpenBLAS`);
  });

  it('k = 0 and alpha = 0 give beta·C (zeros for beta 0, whatever C held)', () => {
    const c = Float32Array.of(1, 2, Number.NaN, 4);
    addon!.sgemm!(false, false, false, 2, 2, 0, 1, new Float32Array(0), 1, new Float32Array(0), 2, 0, c, 2);
    expect(Array.from(c)).toEqual([0, 0, 0, 0]);
    const d = Float32Array.of(1, 2, 3, 4);
    addon!.sgemm!(false, true, false, 2, 2, 3, 0, rand(1, 6), 2, rand(2, 6), 2, 2, d, 2);
    expect(Array.from(d)).toEqual([2, 4, 6, 8]);
  });

  it('gemv (y = alpha·A·x + beta·y, strided x) matches float64 and OpenBLAS', () => {
    let worst = 0;
    for (const [m, n] of [[1, 1], [7, 33], [257, 7], [33, 257], [5, 1030]] as const) {
      for (const [incx, alpha, beta, pad] of [[1, 1, 0, 0], [3, 0.5, 1.5, 5]] as const) {
        const lda = n + pad;
        const a = rand(m + n, m * lda);
        const x = rand(n, (n - 1) * incx + 1);
        const y0 = rand(m, m);
        if (beta === 0) y0.fill(Number.NaN);
        const y = y0.slice();
        addon!.sgemv!(false, m, n, alpha, a, lda, x, incx, beta, y);
        const yb = y0.slice();
        if (linkedBlas) addon!.sgemv!(true, m, n, alpha, a, lda, x, incx, beta, yb);
        for (let i = 0; i < m; i++) {
          let s = 0;
          let scale = 0;
          for (let j = 0; j < n; j++) {
            s += a[i * lda + j]! * x[j * incx]!;
            scale += Math.abs(a[i * lda + j]! * x[j * incx]!);
          }
          const yi = beta === 0 ? 0 : y0[i]!;
          const norm = Math.abs(alpha) * scale + Math.abs(beta * yi) || 1;
          const tol = 2 * n * 2 ** -24 + 2 ** -23;
          const err = Math.abs(y[i]! - (alpha * s + beta * yi)) / norm;
          expect(err).toBeLessThanOrEqual(tol);
          if (linkedBlas) expect(Math.abs(y[i]! - yb[i]!) / norm).toBeLessThanOrEqual(2 * tol);
          worst = Math.max(worst, err);
        }
      }
    }
    console.log(`own sgemv: worst error ${worst.toExponential(2)} vs float64`);
  });
});

describe.skipIf(!addon || process.env.TEAMLLM_SKIP_NATIVE_BUILD_TEST === '1')('an addon built without OpenBLAS (TEAMLLM_NATIVE_BLAS=off)', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'teamllm-own-gemm-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('builds, says so in one line and in build-info.json, and trains a GPT step like the OpenBLAS build', async () => {
    const env = { ...process.env, TEAMLLM_NATIVE_BLAS: 'off', TEAMLLM_NATIVE_OUT: out, CI: 'true' };
    const built = await run(process.execPath, [path.join(root, 'scripts', 'build-native.mjs')], { env, timeout: 170_000 });
    expect(built.stdout.trim().split('\n')).toHaveLength(1);
    expect(built.stdout).toMatch(/built .*teamllm_native\.node .*\(own GEMM; OpenBLAS not used: TEAMLLM_NATIVE_BLAS=off; -march=/);
    const info = JSON.parse(readFileSync(path.join(out, 'build-info.json'), 'utf8')) as { gemm?: string };
    expect(info.gemm).toBe('own');
    const addonFile = path.join(out, 'teamllm_native.node');
    expect(existsSync(addonFile)).toBe(true);
    // No OpenBLAS in the library's dependencies.
    const ldd = await run('ldd', [addonFile]).catch(() => undefined);
    if (ldd) expect(ldd.stdout).not.toMatch(/openblas/i);

    const fixture = path.join(import.meta.dirname, 'fixtures', 'gpt-step.ts');
    const step = async (addonPath?: string) => {
      const stepEnv: NodeJS.ProcessEnv = { ...process.env };
      if (addonPath) stepEnv.TEAMLLM_NATIVE_ADDON = addonPath;
      else delete stepEnv.TEAMLLM_NATIVE_ADDON;
      const { stdout } = await run(process.execPath, ['--import', 'tsx', fixture], { env: stepEnv, timeout: 60_000, maxBuffer: 64 << 20 });
      return JSON.parse(stdout.trim().split('\n').pop()!) as { gemm: string; loss: number; grads: number[][] };
    };
    const [own, base] = [await step(addonFile), await step()];
    expect(own.gemm).toBe('own');
    expect(Number.isFinite(own.loss)).toBe(true);
    expect(Math.abs(own.loss - base.loss)).toBeLessThanOrEqual(1e-5);
    expect(own.grads.length).toBe(base.grads.length);
    let worst = 0;
    own.grads.forEach((g, i) => {
      const b = base.grads[i]!;
      const scale = Math.max(...b.map(Math.abs)) || 1;
      for (let j = 0; j < b.length; j++) worst = Math.max(worst, Math.abs(g[j]! - b[j]!) / scale);
    });
    expect(worst).toBeLessThanOrEqual(1e-4);
    console.log(`GPT step: loss ${own.loss} (own) vs ${base.loss} (${base.gemm}); worst gradient difference ${worst.toExponential(2)} of its largest entry`);
  }, 240_000);
});
