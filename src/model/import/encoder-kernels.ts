/**
 * The few dense kernels a BERT-family forward needs, on plain Float32Arrays: on the native addon
 * (OpenBLAS sgemm, the exact-erf GELU, LayerNorm, softmax: native/src) when it loads, else in
 * JavaScript (slower, same results to float32 rounding). Inference only: no gradients, no tensors.
 */
import { loadAddon, type NativeAddon } from '../native/addon.ts';
import { linearJs, linearTJs, outputBuffer as output, type WeightMatrix } from './weights.ts';

/**
 * Which native kernel the 16/8-bit products run: 'best' (AVX512_BF16 for bf16, AVX512-VNNI for
 * int8, where the CPU has them) or 'portable' (what a CPU without them runs: the exact stored
 * weights times float32 activations). $TEAMLLM_QUANT_KERNEL=portable sets the default.
 */
export type QuantKernel = 'best' | 'portable';

export interface EncoderKernels {
  readonly name: 'native' | 'js';
  /** The native 16/8-bit kernel choice (absent on the JavaScript kernels). */
  readonly quant?: QuantKernel;
  // The products write into `out` when given (at least the result's length; the result is a view
  // of its start), else into a new array: a forward that reuses its buffers keeps its peak memory
  // near the weights' bytes (a 512-token prefill made ~45 MB of garbage per layer).
  /** y [m, n] = x [m, k] · wᵀ + bias, w stored [n, k] (PyTorch's Linear layout). */
  linear(x: Float32Array, w: Float32Array, bias: Float32Array | null, m: number, k: number, n: number, out?: Float32Array): Float32Array;
  /** y [m, w.rows] = x [m, w.cols] · wᵀ + bias, w in any stored dtype (float32, bf16, f16, int8), float32 sums. */
  linearWeight(x: Float32Array, w: WeightMatrix, bias: Float32Array | null, m: number, out?: Float32Array): Float32Array;
  /** dx [m, w.cols] = dy [m, w.rows] · W, W in any stored dtype: the transposed product (a frozen projection's input gradient). */
  linearWeightT(dy: Float32Array, w: WeightMatrix, m: number, out?: Float32Array): Float32Array;
  /** Which kernel linearWeight runs for each dtype here (e.g. bf16 'avx512_bf16', 'portable', 'js'). */
  weightKernels(): Record<'f32' | 'bf16' | 'f16' | 'int8', string>;
  /** c[b] = a[b] [m, k] · bt[b]ᵀ (bt[b] [n, k]) for b < batch. */
  batchMatmulT(a: Float32Array, bt: Float32Array, batch: number, m: number, k: number, n: number): Float32Array;
  /** c[b] = a[b] [m, k] · b[b] [k, n]. */
  batchMatmul(a: Float32Array, b: Float32Array, batch: number, m: number, k: number, n: number, out?: Float32Array): Float32Array;
  /** In place: exact GELU, 0.5·x·(1 + erf(x/√2)). */
  gelu(x: Float32Array): void;
  /** Row-wise RMSNorm of x [rows, cols] into y (y may be x): x / √(mean(x²) + eps) · w, sums in float64. */
  rmsNorm(x: Float32Array, w: Float32Array, rows: number, cols: number, eps: number, y: Float32Array): void;
  /** In place into gate: silu(gate) · up = gate · sigmoid(gate) · up (Llama's SwiGLU). */
  siluMul(gate: Float32Array, up: Float32Array): void;
  /**
   * Asks for the matrix's memory to be held in 2 MB pages (Linux transparent huge pages), which
   * a product streaming it reads faster than 4 KB ones; the values do not change. True when done.
   */
  adviseHugePages(data: ArrayBufferView): boolean;
  /** Row-wise LayerNorm of x [rows, cols]. */
  layerNorm(x: Float32Array, w: Float32Array, b: Float32Array, rows: number, cols: number, eps: number): Float32Array;
  /** In place: row-wise softmax of x [rows, cols]. */
  softmax(x: Float32Array, rows: number, cols: number): void;
}

const GELU_OP = 12; // native/src/kernels.h kGeluOp (exact erf GELU)

class NativeKernels implements EncoderKernels {
  readonly name = 'native' as const;
  private readonly mode: number;
  constructor(
    private readonly addon: NativeAddon,
    readonly quant: QuantKernel,
  ) {
    this.mode = quant === 'portable' ? 1 : 0;
  }
  linearWeight(x: Float32Array, w: WeightMatrix, bias: Float32Array | null, m: number, out?: Float32Array): Float32Array {
    const { rows: n, cols: k } = w;
    if (w.dtype === 'f32') return this.linear(x, w.data, bias, m, k, n, out);
    const a = this.addon;
    if (w.dtype === 'int8') {
      if (!a.linearInt8) return linearJs(x, w, bias, m, out);
      const y = output(out, m * n);
      a.linearInt8(x, w.data, w.scales, w.group, bias, y, m, n, k, this.mode);
      return y;
    }
    if (!a.linear16) return linearJs(x, w, bias, m, out);
    const y = output(out, m * n);
    a.linear16(w.dtype === 'bf16' ? 0 : 1, x, w.data, bias, y, m, n, k, this.mode);
    return y;
  }
  linearWeightT(dy: Float32Array, w: WeightMatrix, m: number, out?: Float32Array): Float32Array {
    const { rows: n, cols: k } = w;
    const a = this.addon;
    const dx = output(out, m * k);
    if (w.dtype === 'f32') a.matmul(dy, w.data, dx, 1, 1, m, k, n, false, false, null, 0, 0);
    else if (w.dtype === 'int8') {
      if (!a.linearInt8T) return linearTJs(dy, w, m, out);
      a.linearInt8T(dy, w.data, w.scales, w.group, dx, m, n, k, this.mode);
    } else {
      if (!a.linear16T) return linearTJs(dy, w, m, out);
      a.linear16T(w.dtype === 'bf16' ? 0 : 1, dy, w.data, dx, m, n, k, this.mode);
    }
    return dx;
  }
  weightKernels(): Record<'f32' | 'bf16' | 'f16' | 'int8', string> {
    const q = this.addon.quantKernels?.();
    const portable = (kind: string | undefined) => (kind === undefined ? 'js' : this.mode === 1 ? 'portable' : kind);
    // 'sgemm' = the addon's own float32 GEMM (native/src/sgemm.cc), in a build without OpenBLAS.
    return { f32: this.addon.info().gemm === 'own' ? 'sgemm' : 'openblas', bf16: portable(q?.bf16), f16: portable(q?.f16), int8: portable(q?.int8) };
  }
  linear(x: Float32Array, w: Float32Array, bias: Float32Array | null, m: number, k: number, n: number, out?: Float32Array): Float32Array {
    const y = output(out, m * n);
    this.addon.matmul(x, w, y, 1, 1, m, n, k, false, true, bias, 0, 0);
    return y;
  }
  batchMatmulT(a: Float32Array, bt: Float32Array, batch: number, m: number, k: number, n: number): Float32Array {
    const c = new Float32Array(batch * m * n);
    this.addon.matmul(a, bt, c, batch, batch, m, n, k, false, true, null, 0, 0);
    return c;
  }
  batchMatmul(a: Float32Array, b: Float32Array, batch: number, m: number, k: number, n: number, out?: Float32Array): Float32Array {
    const c = output(out, batch * m * n);
    this.addon.matmul(a, b, c, batch, batch, m, n, k, false, false, null, 0, 0);
    return c;
  }
  gelu(x: Float32Array): void {
    this.addon.unary(GELU_OP, x, x);
  }
  siluMul(gate: Float32Array, up: Float32Array): void {
    if (this.addon.siluMul) this.addon.siluMul(gate, up, gate);
    else siluMulJs(gate, up);
  }
  rmsNorm(x: Float32Array, w: Float32Array, rows: number, cols: number, eps: number, y: Float32Array): void {
    if (this.addon.rmsNorm) this.addon.rmsNorm(x, w, y, rows, cols, eps);
    else rmsNormJs(x, w, rows, cols, eps, y);
  }
  adviseHugePages(data: ArrayBufferView): boolean {
    return this.addon.adviseHugePages?.(data) ?? false;
  }
  layerNorm(x: Float32Array, w: Float32Array, b: Float32Array, rows: number, cols: number, eps: number): Float32Array {
    const y = new Float32Array(rows * cols);
    this.addon.layerNorm(x, w, b, y, new Float32Array(rows), new Float32Array(rows), rows, cols, eps);
    return y;
  }
  softmax(x: Float32Array, rows: number, cols: number): void {
    this.addon.softmax(x, x, rows, cols);
  }
}

/** erf to ~1e-7 absolute (Abramowitz-Stegun 7.1.26, as the native addon and tfjs compute it). */
function erf(x: number): number {
  const s = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return s * y;
}

function rmsNormJs(x: Float32Array, w: Float32Array, rows: number, cols: number, eps: number, y: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += x[o + c]! * x[o + c]!;
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let c = 0; c < cols; c++) y[o + c] = x[o + c]! * inv * w[c]!;
  }
}

function siluMulJs(gate: Float32Array, up: Float32Array): void {
  for (let i = 0; i < gate.length; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
}

class JsKernels implements EncoderKernels {
  readonly name = 'js' as const;
  linearWeight(x: Float32Array, w: WeightMatrix, bias: Float32Array | null, m: number, out?: Float32Array): Float32Array {
    return linearJs(x, w, bias, m, out);
  }
  linearWeightT(dy: Float32Array, w: WeightMatrix, m: number, out?: Float32Array): Float32Array {
    return linearTJs(dy, w, m, out);
  }
  weightKernels(): Record<'f32' | 'bf16' | 'f16' | 'int8', string> {
    return { f32: 'js', bf16: 'js', f16: 'js', int8: 'js' };
  }
  linear(x: Float32Array, w: Float32Array, bias: Float32Array | null, m: number, k: number, n: number, out?: Float32Array): Float32Array {
    const y = output(out, m * n);
    for (let i = 0; i < m; i++) {
      const xo = i * k;
      for (let j = 0; j < n; j++) {
        const wo = j * k;
        let s = 0;
        for (let p = 0; p < k; p++) s += x[xo + p]! * w[wo + p]!;
        y[i * n + j] = s + (bias ? bias[j]! : 0);
      }
    }
    return y;
  }
  batchMatmulT(a: Float32Array, bt: Float32Array, batch: number, m: number, k: number, n: number): Float32Array {
    const c = new Float32Array(batch * m * n);
    for (let b = 0; b < batch; b++) c.set(this.linear(a.subarray(b * m * k, (b + 1) * m * k), bt.subarray(b * n * k, (b + 1) * n * k), null, m, k, n), b * m * n);
    return c;
  }
  batchMatmul(a: Float32Array, bm: Float32Array, batch: number, m: number, k: number, n: number, out?: Float32Array): Float32Array {
    const c = output(out, batch * m * n).fill(0);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < m; i++) {
        const row = c.subarray(b * m * n + i * n, b * m * n + (i + 1) * n);
        for (let p = 0; p < k; p++) {
          const av = a[b * m * k + i * k + p]!;
          const bo = b * k * n + p * n;
          for (let j = 0; j < n; j++) row[j]! += av * bm[bo + j]!;
        }
      }
    }
    return c;
  }
  gelu(x: Float32Array): void {
    for (let i = 0; i < x.length; i++) x[i] = 0.5 * x[i]! * (1 + erf(x[i]! * Math.SQRT1_2));
  }
  siluMul(gate: Float32Array, up: Float32Array): void {
    siluMulJs(gate, up);
  }
  rmsNorm(x: Float32Array, w: Float32Array, rows: number, cols: number, eps: number, y: Float32Array): void {
    rmsNormJs(x, w, rows, cols, eps, y);
  }
  adviseHugePages(): boolean {
    return false;
  }
  layerNorm(x: Float32Array, w: Float32Array, b: Float32Array, rows: number, cols: number, eps: number): Float32Array {
    const y = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let mean = 0;
      for (let c = 0; c < cols; c++) mean += x[o + c]!;
      mean /= cols;
      let v = 0;
      for (let c = 0; c < cols; c++) v += (x[o + c]! - mean) ** 2;
      const rstd = 1 / Math.sqrt(v / cols + eps);
      for (let c = 0; c < cols; c++) y[o + c] = (x[o + c]! - mean) * rstd * w[c]! + b[c]!;
    }
    return y;
  }
  softmax(x: Float32Array, rows: number, cols: number): void {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let max = -Infinity;
      for (let c = 0; c < cols; c++) max = Math.max(max, x[o + c]!);
      let sum = 0;
      for (let c = 0; c < cols; c++) sum += x[o + c] = Math.exp(x[o + c]! - max);
      for (let c = 0; c < cols; c++) x[o + c]! /= sum;
    }
  }
}

/** The native kernels when the addon loads (or 'js' asked for), else JavaScript ones. */
export function encoderKernels(prefer: 'native' | 'js' = 'native', options: { quant?: QuantKernel } = {}): EncoderKernels {
  if (prefer === 'native') {
    const loaded = loadAddon();
    const quant = options.quant ?? (process.env.TEAMLLM_QUANT_KERNEL === 'portable' ? 'portable' : 'best');
    if (loaded.ok) return new NativeKernels(loaded.addon, quant);
  }
  return new JsKernels();
}
