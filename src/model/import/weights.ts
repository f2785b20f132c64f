/**
 * Weight matrices of an imported chat model as they stay in memory: float32, bfloat16, IEEE half
 * or int8 with float32 scales, always [rows, cols] = [out, in] (PyTorch's Linear layout). The
 * products read them directly (native/src/quant.cc, or `linearJs` here when the addon is absent):
 * no float32 copy of a 16- or 8-bit model is ever made.
 *
 * int8 is symmetric: W[r, c] = q[r, c] · scales[r, ⌊c / group⌋], q in [-127, 127]. `--dtype int8`
 * quantises per output channel (group = cols: scale = max |row| / 127, q = round(w / scale));
 * GGUF Q8_0 tensors keep their own blocks (group 32, the block's F16 scale widened exactly).
 */
import { floatToBf16, halfToFloat } from './dtypes.ts';

export type WeightDtype = 'f32' | 'bf16' | 'f16' | 'int8';

export type WeightMatrix =
  | { dtype: 'f32'; rows: number; cols: number; data: Float32Array }
  | { dtype: 'bf16' | 'f16'; rows: number; cols: number; data: Uint16Array }
  | { dtype: 'int8'; rows: number; cols: number; data: Int8Array; scales: Float32Array; group: number };

/** Bytes a matrix takes in memory (its scales included). */
export function weightBytes(w: WeightMatrix): number {
  return w.data.byteLength + (w.dtype === 'int8' ? w.scales.byteLength : 0);
}

export function f32Matrix(data: Float32Array, rows: number, cols: number): WeightMatrix {
  if (data.length !== rows * cols) throw new Error(`a [${rows}, ${cols}] matrix needs ${rows * cols} values, got ${data.length}`);
  return { dtype: 'f32', rows, cols, data };
}

/** float32 → bf16 (round to nearest even). */
export function toBf16(data: Float32Array, rows: number, cols: number): WeightMatrix {
  const bits = new Uint16Array(rows * cols);
  for (let i = 0; i < bits.length; i++) bits[i] = floatToBf16(data[i]!);
  return { dtype: 'bf16', rows, cols, data: bits };
}

/** IEEE half bits → bf16 bits (through float32, round to nearest even: 10 mantissa bits down to 7). */
export function halfBitsToBf16(half: Uint16Array, rows: number, cols: number): WeightMatrix {
  const table = new Uint16Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = floatToBf16(halfToFloat(h));
  const bits = new Uint16Array(half.length);
  for (let i = 0; i < half.length; i++) bits[i] = table[half[i]!]!;
  return { dtype: 'bf16', rows, cols, data: bits };
}

/** Row r of w as float32 into out (length cols). */
export function weightRow(w: WeightMatrix, r: number, out: Float32Array): Float32Array {
  const { cols } = w;
  const o = r * cols;
  switch (w.dtype) {
    case 'f32':
      out.set(w.data.subarray(o, o + cols));
      break;
    case 'bf16': {
      const u = new Uint32Array(out.buffer, out.byteOffset, cols);
      for (let c = 0; c < cols; c++) u[c] = w.data[o + c]! << 16;
      break;
    }
    case 'f16':
      for (let c = 0; c < cols; c++) out[c] = halfToFloat(w.data[o + c]!);
      break;
    case 'int8': {
      const groups = cols / w.group;
      for (let c = 0; c < cols; c++) out[c] = w.data[o + c]! * w.scales[r * groups + Math.floor(c / w.group)]!;
      break;
    }
  }
  return out;
}

/** The whole matrix as float32 (tests, and a float32 model asked of a 16-bit checkpoint). */
export function dequantize(w: WeightMatrix): Float32Array {
  if (w.dtype === 'f32') return w.data;
  const out = new Float32Array(w.rows * w.cols);
  for (let r = 0; r < w.rows; r++) weightRow(w, r, out.subarray(r * w.cols, (r + 1) * w.cols));
  return out;
}

/** int8, one scale per row (output channel): scale = max |w| / 127, q = round(w / scale). */
export function quantizeInt8(w: WeightMatrix | Float32Array, rows: number, cols: number): WeightMatrix {
  const data = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    if (w instanceof Float32Array) row.set(w.subarray(r * cols, (r + 1) * cols));
    else weightRow(w, r, row);
    let amax = 0;
    for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(row[c]!));
    const scale = Math.fround(amax / 127);
    scales[r] = scale;
    const inv = scale > 0 ? 1 / scale : 0;
    for (let c = 0; c < cols; c++) data[r * cols + c] = Math.max(-127, Math.min(127, Math.round(row[c]! * inv)));
  }
  return { dtype: 'int8', rows, cols, data, scales, group: cols };
}

/** GGUF Q8_0 blocks (34 bytes: an F16 scale, 32 int8) → int8 with one scale per 32 columns, the same numbers. */
export function q8_0ToInt8(raw: Uint8Array, rows: number, cols: number): WeightMatrix {
  if (cols % 32) throw new Error(`Q8_0 rows must be a multiple of 32 wide, got ${cols}`);
  const blocks = (rows * cols) / 32;
  if (raw.length < blocks * 34) throw new Error(`Q8_0 tensor: ${raw.length} bytes for ${blocks} blocks`);
  const data = new Int8Array(rows * cols);
  const scales = new Float32Array(blocks);
  const bytes = new Int8Array(raw.buffer, raw.byteOffset, raw.length);
  for (let b = 0; b < blocks; b++) {
    const at = b * 34;
    scales[b] = halfToFloat(raw[at]! | (raw[at + 1]! << 8));
    data.set(bytes.subarray(at + 2, at + 34), b * 32);
  }
  return { dtype: 'int8', rows, cols, data, scales, group: 32 };
}

/** Converts a matrix to the dtype asked for (the same object when it already is). */
export function convertWeight(w: WeightMatrix, dtype: WeightDtype): WeightMatrix {
  if (w.dtype === dtype) return w;
  switch (dtype) {
    case 'f32':
      return f32Matrix(dequantize(w), w.rows, w.cols);
    case 'bf16':
      if (w.dtype === 'f16') return halfBitsToBf16(w.data, w.rows, w.cols);
      return toBf16(dequantize(w), w.rows, w.cols);
    case 'int8':
      return quantizeInt8(w, w.rows, w.cols);
    case 'f16':
      throw new Error('weights are converted to f16 only by reading an F16 checkpoint');
  }
}

/** Permutes the rows of a matrix: row `to(r)` of the result is row r of w (any dtype; int8 scales follow their rows). */
export function permuteWeightRows(w: WeightMatrix, to: (r: number) => number): WeightMatrix {
  const move = <T extends Float32Array | Uint16Array | Int8Array>(src: T, width: number, make: (n: number) => T): T => {
    const out = make(src.length);
    for (let r = 0; r < w.rows; r++) out.set(src.subarray(r * width, (r + 1) * width), to(r) * width);
    return out;
  };
  switch (w.dtype) {
    case 'f32':
      return { ...w, data: move(w.data, w.cols, (n) => new Float32Array(n)) };
    case 'bf16':
    case 'f16':
      return { ...w, data: move(w.data, w.cols, (n) => new Uint16Array(n)) };
    case 'int8':
      return { ...w, data: move(w.data, w.cols, (n) => new Int8Array(n)), scales: move(w.scales, w.cols / w.group, (n) => new Float32Array(n)) };
  }
}

/** A product's output: `out` (its first `size` values) when given, else a new array. */
export function outputBuffer(out: Float32Array | undefined, size: number): Float32Array {
  if (!out) return new Float32Array(size);
  if (out.length < size) throw new Error(`output buffer of ${out.length} values, ${size} needed`);
  return out.length === size ? out : out.subarray(0, size);
}

/**
 * y [m, rows] = x [m, cols] · wᵀ + bias in JavaScript (the addon is absent): each weight row widened
 * to float32 once, then dotted with every row of x in float64 (the native kernels sum in float32).
 * Into `out` (its first m·rows values) when given.
 */
export function linearJs(x: Float32Array, w: WeightMatrix, bias: Float32Array | null, m: number, out?: Float32Array): Float32Array {
  const { rows: n, cols: k } = w;
  const y = outputBuffer(out, m * n);
  const row = new Float32Array(k);
  for (let j = 0; j < n; j++) {
    const wr = w.dtype === 'f32' ? w.data.subarray(j * k, (j + 1) * k) : weightRow(w, j, row);
    const b = bias ? bias[j]! : 0;
    for (let i = 0; i < m; i++) {
      const xo = i * k;
      let s = 0;
      for (let p = 0; p < k; p++) s += x[xo + p]! * wr[p]!;
      y[i * n + j] = s + b;
    }
  }
  return y;
}


/**
 * dx [m, w.cols] = dy [m, w.rows] · W in JavaScript (the addon is absent): the input gradient of a
 * frozen projection. Each weight row widened once and added into every row of dx scaled by dy.
 */
export function linearTJs(dy: Float32Array, w: WeightMatrix, m: number, out?: Float32Array): Float32Array {
  const { rows: n, cols: k } = w;
  const dx = outputBuffer(out, m * k);
  dx.fill(0);
  const row = new Float32Array(k);
  for (let j = 0; j < n; j++) {
    const wr = w.dtype === 'f32' ? w.data.subarray(j * k, (j + 1) * k) : weightRow(w, j, row);
    for (let i = 0; i < m; i++) {
      const s = dy[i * n + j]!;
      if (s === 0) continue;
      const o = i * k;
      for (let p = 0; p < k; p++) dx[o + p]! += s * wr[p]!;
    }
  }
  return dx;
}
