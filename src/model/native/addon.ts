/**
 * Finds and loads the native addon (native/build/teamllm_native.node, built by
 * scripts/build-native.mjs). Loading never throws: a missing or unusable addon is reported as a
 * reason string, and the caller logs it once and stays on wasm.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon's functions (see native/src/addon.cc for the argument order of each). */
export interface NativeAddon {
  /** Version of the function signatures (native/src/addon.cc). */
  abi: number;
  /** gemm: the float32 products' library ('own' = native/src/sgemm.cc, a build without OpenBLAS; absent in older builds). */
  info(): { threads: number; blas: string; gemm?: 'openblas' | 'own' };
  setThreads(n: number): void;
  matmul(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    batchA: number,
    batchB: number,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    bias: Float32Array | null,
    activation: number,
    alpha: number,
  ): void;
  unary(op: number, x: Float32Array, y: Float32Array): void;
  binary(op: number, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], y: Float32Array, yShape: number[]): void;
  transpose(x: Float32Array, shape: number[], perm: number[], y: Float32Array): void;
  reduce(op: number, x: Float32Array, y: Float32Array, outer: number, mid: number, inner: number): void;
  addN(xs: Float32Array[], y: Float32Array): void;
  copyBlock(src: Float32Array, srcOffset: number, srcStride: number, dst: Float32Array, dstOffset: number, dstStride: number, rows: number, cols: number): void;
  slice(x: Float32Array, shape: number[], begin: number[], size: number[], y: Float32Array): void;
  pad(x: Float32Array, xShape: number[], before: number[], yShape: number[], value: number, y: Float32Array): void;
  softmax(x: Float32Array, y: Float32Array, rows: number, cols: number): void;
  layerNorm(
    x: Float32Array,
    w: Float32Array,
    b: Float32Array | null,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  layerNormGrad(
    x: Float32Array,
    w: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dy: Float32Array,
    dx: Float32Array,
    dw: Float32Array,
    db: Float32Array | null,
    rows: number,
    cols: number,
  ): void;
  geluGrad(x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  attention(
    q: Float32Array,
    kT: Float32Array,
    v: Float32Array,
    y: Float32Array,
    p: Float32Array,
    bh: number,
    t: number,
    s: number,
    d: number,
    past: number,
    scale: number,
    causal: boolean,
  ): void;
  attentionGrad(
    q: Float32Array,
    kT: Float32Array,
    v: Float32Array,
    p: Float32Array,
    dy: Float32Array,
    dq: Float32Array,
    dkT: Float32Array,
    dv: Float32Array,
    bh: number,
    t: number,
    s: number,
    d: number,
    scale: number,
  ): void;
  /** dropRate > 0: dropout on the probabilities, mask from dropSeed as in the block. */
  selfAttention(qkv: Float32Array, y: Float32Array, p: Float32Array, b: number, t: number, heads: number, d: number, scale: number, dropRate: number, dropSeed: number): void;
  selfAttentionGrad(
    qkv: Float32Array,
    p: Float32Array,
    dy: Float32Array,
    dqkv: Float32Array,
    b: number,
    t: number,
    heads: number,
    d: number,
    scale: number,
    dropRate: number,
    dropSeed: number,
  ): void;
  decodeLayer(
    x: Float32Array,
    kT: Float32Array,
    v: Float32Array,
    weights: (Float32Array | null)[],
    xOut: Float32Array,
    kTOut: Float32Array,
    vOut: Float32Array,
    c: number,
    heads: number,
    past: number,
    eps: number,
  ): void;
  crossEntropy(logits: Float32Array, targets: Int32Array, probs: Float32Array, rows: number, vocab: number): [number, number];
  crossEntropyGrad(probs: Float32Array, targets: Int32Array, dlogits: Float32Array, rows: number, vocab: number, scale: number): void;
  adamw(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    pOut: Float32Array,
    mOut: Float32Array,
    vOut: Float32Array,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    bc1: number,
    bc2: number,
    gradScale: number,
  ): void;
  /** One call for all parameters: `arrays` holds p, g, m, v, pOut, mOut, vOut per parameter. */
  adamwMulti(
    arrays: Float32Array[],
    weightDecays: number[],
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    bc1: number,
    bc2: number,
    gradScale: number,
  ): void;
  /** Σ x² over all the arrays. */
  sumSquares(arrays: Float32Array[]): number;
  /**
   * dx = dy·wᵀ [m, k] and dw = xᵀ·dy [k, n] for x [m, k], w [k, n], dy [m, n]; with geluPre (h
   * [m, n]) the gradients through GELU(h), h = x·w.
   */
  linearGrad(x: Float32Array, w: Float32Array, dy: Float32Array, dx: Float32Array, dw: Float32Array, m: number, k: number, n: number, geluPre: Float32Array | null): void;
  /** h = x·w and y = GELU(h) for x [m, k], w [k, n]. */
  linearGelu(x: Float32Array, w: Float32Array, h: Float32Array, y: Float32Array, m: number, k: number, n: number): void;
  /**
   * A transformer block (no biases) for training: weights [ln1, attn, proj, ln2, fc, fc2];
   * activations [a, mean1, rstd1, qkv, y, p, x1, m, mean2, rstd2, h, g] are filled for the backward.
   */
  blockForward(
    x: Float32Array,
    weights: Float32Array[],
    activations: Float32Array[],
    x2: Float32Array,
    b: number,
    t: number,
    c: number,
    heads: number,
    eps: number,
    dropRate: number,
    dropSeed: number,
  ): void;
  /** The block's gradients: dx and grads (same order as the weights) from dx2. */
  blockBackward(
    dx2: Float32Array,
    x: Float32Array,
    weights: Float32Array[],
    activations: Float32Array[],
    dx: Float32Array,
    grads: Float32Array[],
    b: number,
    t: number,
    c: number,
    heads: number,
    dropRate: number,
    dropSeed: number,
  ): void;
  /** y = x · mask, the mask drawn from (rate, seed, site) as the block draws its own (native/src/mathfun.h). */
  dropout(x: Float32Array, y: Float32Array, rate: number, seed: number, site: number): void;
  gatherRows(table: Float32Array, rows: number, inner: number, ids: Int32Array, count: number, out: Float32Array): void;
  scatterAddRows(x: Float32Array, ids: Int32Array, count: number, inner: number, out: Float32Array, segments: number): void;
  sgemmPeak(n: number, repeats: number): number;
  /**
   * One row-major float32 product c = alpha·op(a)·op(b) + beta·c on the calling thread, on OpenBLAS
   * (useBlas, where linked) or on native/src/sgemm.cc's own kernel (for tests; optional: older builds lack it).
   */
  sgemm?(
    useBlas: boolean,
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  /** y = alpha·a·x + beta·y, a [m, n] row-major with row stride lda (as sgemm: useBlas or our own). */
  sgemv?(useBlas: boolean, m: number, n: number, alpha: number, a: Float32Array, lda: number, x: Float32Array, incx: number, beta: number, y: Float32Array): void;
  /**
   * y [m, n] = x [m, k] · wᵀ + bias with w [n, k] as bf16 (kind 0) or IEEE half (kind 1) bits;
   * mode 0: the fastest kernel here (AVX512_BF16 for bf16 when the CPU has it), 1: the portable one.
   * Absent from addons built before it (the caller falls back to JavaScript).
   */
  linear16?(kind: number, x: Float32Array, w: Uint16Array, bias: Float32Array | null, y: Float32Array, m: number, n: number, k: number, mode: number): void;
  /** The same with w [n, k] int8 and scales [n, k / group] (group a multiple of 16, or k). */
  linearInt8?(x: Float32Array, w: Int8Array, scales: Float32Array, group: number, bias: Float32Array | null, y: Float32Array, m: number, n: number, k: number, mode: number): void;
  /**
   * The kernel each weight format runs with mode 0 here ('amx_bf16': AMX tiles for products of 32
   * rows or more, AVX512_BF16 below; 'avx512_bf16', 'avx512_vnni', 'portable'). Mode 1 is the
   * portable kernel, mode 2 the best without AMX (what $TEAMLLM_NATIVE_AMX=off makes mode 0).
   */
  quantKernels?(): { bf16: string; f16: string; int8: string };
  /** dx [m, k] = dy [m, n] · W for W [n, k] bf16 (kind 0) or half (1) bits: a frozen projection's input gradient. */
  linear16T?(kind: number, dy: Float32Array, w: Uint16Array, dx: Float32Array, m: number, n: number, k: number, mode: number): void;
  /**
   * dx [m, k] = dy [m, n] · W for W [n, k] int8 with scales [n, k / group]. Mode 0 runs AMX where
   * it can (one scale per row, 32 rows or more: dy times the scales rounded to bf16); 1, 2 or
   * absent: the exact widened weights, float32 sums.
   */
  linearInt8T?(dy: Float32Array, w: Int8Array, scales: Float32Array, group: number, dx: Float32Array, m: number, n: number, k: number, mode?: number): void;
  /** Row-wise RMSNorm of x [rows, cols] into y (y may be x), sums in double. Absent from addons built before it. */
  rmsNorm?(x: Float32Array, w: Float32Array, y: Float32Array, rows: number, cols: number, eps: number): void;
  /** y = gate · sigmoid(gate) · up (y may be gate). Absent from addons built before it. */
  siluMul?(gate: Float32Array, up: Float32Array, y: Float32Array): void;
  /** Its gradients: dgate = dy·up·silu'(gate), dup = dy·silu(gate). */
  siluMulGrad?(gate: Float32Array, up: Float32Array, dy: Float32Array, dgate: Float32Array, dup: Float32Array): void;
  /** LoRA fused with a frozen projection (y holds x·Wᵀ): t = s·x·Aᵀ [m, r], y += t·Bᵀ, for A [r, in], B [out, r]. */
  loraForward?(x: Float32Array, a: Float32Array, b: Float32Array, y: Float32Array, t: Float32Array, m: number, inDim: number, out: number, r: number, scale: number): void;
  /** Its gradient (dx holds dy·W): dx += s·dy·B·A, dA = s·(dy·B)ᵀ·x [r, in], dB = dyᵀ·t [out, r]. */
  loraBackward?(dy: Float32Array, x: Float32Array, t: Float32Array, a: Float32Array, b: Float32Array, dx: Float32Array, da: Float32Array, db: Float32Array, m: number, inDim: number, out: number, r: number, scale: number): void;
  /** RoPE on x [b, t, heads, d] with cos/sin [t, d] (inverse: its gradient, x then being dy). */
  rope?(x: Float32Array, cos: Float32Array, sin: Float32Array, y: Float32Array, b: number, t: number, heads: number, d: number, inverse: boolean): void;
  /** rmsNorm that also writes rstd [rows] = 1/√(mean(x²) + eps), for the gradient. */
  rmsNormTrain?(x: Float32Array, w: Float32Array, y: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void;
  /** RMSNorm's gradients: dx [rows, cols] and dw [cols] (summed over rows). */
  rmsNormGrad?(x: Float32Array, w: Float32Array, rstd: Float32Array, dy: Float32Array, dx: Float32Array, dw: Float32Array, rows: number, cols: number): void;
  /** Backs the array's memory with transparent huge pages (Linux; true when they were made now). */
  adviseHugePages?(data: ArrayBufferView): boolean;
}

export type AddonLoad = { ok: true; addon: NativeAddon; path: string } | { ok: false; reason: string };

const ADDON_FILE = path.join('native', 'build', 'teamllm_native.node');
/** The addon.cc `abi` these bindings are written for. */
const ABI = 4;

/** native/build/teamllm_native.node in this checkout (searched upward from this file), or $TEAMLLM_NATIVE_ADDON. */
function findAddon(): string | undefined {
  const fromEnv = process.env.TEAMLLM_NATIVE_ADDON;
  if (fromEnv) return existsSync(fromEnv) ? path.resolve(fromEnv) : undefined;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, ADDON_FILE);
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return undefined;
}

/** Instruction-set flags that decide whether code compiled with -march=native runs here. */
const ISA_FLAG = /^(sse|ssse|avx|fma|f16c|bmi|adx|sha|aes|vaes|pclmul|vpclmul|gfni|amx|popcnt|movbe|lzcnt|abm|cx16|clflushopt|clwb|asimd|sve|fp|neon)/;

function cpuFlags(): Set<string> | undefined {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const line = text.split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
    return line ? new Set(line.split(':')[1]!.trim().split(/\s+/)) : undefined;
  } catch {
    return undefined;
  }
}

/** A build made with -march=native on another CPU could hit an illegal instruction: refuse it. */
function checkCpu(addonPath: string): string | undefined {
  const infoFile = path.join(path.dirname(addonPath), 'build-info.json');
  if (!existsSync(infoFile)) return undefined;
  let required: string[] = [];
  try {
    required = (JSON.parse(readFileSync(infoFile, 'utf8')) as { cpuFlags?: string[] }).cpuFlags ?? [];
  } catch {
    return undefined;
  }
  const have = cpuFlags();
  if (!have || required.length === 0) return undefined;
  const missing = required.filter((f) => ISA_FLAG.test(f) && !have.has(f));
  if (missing.length === 0) return undefined;
  return (
    `it was built for a CPU with ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', ...' : ''}, which this one lacks; ` +
    'rebuild it here with `node scripts/build-native.mjs`'
  );
}

let cached: AddonLoad | undefined;

/** Loads the addon once per process (thread). */
export function loadAddon(): AddonLoad {
  if (cached) return cached;
  cached = tryLoad();
  return cached;
}

function tryLoad(): AddonLoad {
  if (process.platform === 'win32') return { ok: false, reason: 'the native addon is not built on Windows' };
  const addonPath = findAddon();
  if (!addonPath) {
    return {
      ok: false,
      reason: 'native/build/teamllm_native.node is not built (run `node scripts/build-native.mjs`; it needs g++; OpenBLAS (libopenblas-dev) is used when present)',
    };
  }
  const cpuProblem = checkCpu(addonPath);
  if (cpuProblem) return { ok: false, reason: `the native addon cannot run on this CPU: ${cpuProblem}` };
  // We split products over our own threads; OpenBLAS's own would compete for the same cores.
  // It reads this when the library loads (the addon also sets it to 1 thread at start).
  if (process.env.OPENBLAS_NUM_THREADS === undefined) process.env.OPENBLAS_NUM_THREADS = '1';
  try {
    const require = createRequire(import.meta.url);
    const addon = require(addonPath) as NativeAddon;
    if (typeof addon.matmul !== 'function' || typeof addon.info !== 'function') {
      return { ok: false, reason: `${addonPath} is not the teamllm addon (rebuild it: node scripts/build-native.mjs)` };
    }
    if (addon.abi !== ABI) {
      return { ok: false, reason: `${addonPath} was built from other sources (abi ${addon.abi}, expected ${ABI}); rebuild it: node scripts/build-native.mjs` };
    }
    addon.info();
    return { ok: true, addon, path: addonPath };
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0] ?? String(err);
    return { ok: false, reason: `loading ${addonPath} failed: ${msg}` };
  }
}
