/**
 * Conversions between float32 and the 16-bit float formats that model files store (IEEE half
 * "F16" and bfloat16 "BF16"), in bulk. Float32 → 16 bits rounds to nearest, ties to even (as
 * PyTorch and ggml do), so a file written here reads back as those libraries would write it.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half (as its 16 bits) → float32. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x03ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** float32 → IEEE half bits, round to nearest even; overflow → ±Inf. */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0
    mant |= 0x800000; // implicit leading 1
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && h & 1)) h += 1;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h += 1; // may carry into the exponent: correct
  return sign | h;
}

/** bfloat16 bits → float32. */
export function bf16ToFloat(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0]!;
}

/** float32 → bfloat16 bits, round to nearest even (NaN stays NaN). */
export function floatToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** `count` little-endian 16-bit values at `bytes` → float32. */
export function decode16(bytes: Uint8Array, count: number, kind: 'F16' | 'BF16'): Float32Array {
  const out = new Float32Array(count);
  if (kind === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = (bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16;
    return out;
  }
  // A table of all 65,536 halves: one lookup per value.
  const table = halfTable();
  for (let i = 0; i < count; i++) out[i] = table[bytes[2 * i]! | (bytes[2 * i + 1]! << 8)]!;
  return out;
}

/** float32 values → little-endian 16-bit bytes. */
export function encode16(values: ArrayLike<number>, kind: 'F16' | 'BF16'): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const conv = kind === 'BF16' ? floatToBf16 : floatToHalf;
  for (let i = 0; i < values.length; i++) {
    const h = conv(values[i]!);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

/** Rounds float32 values through a 16-bit format and back (what a file of that dtype holds). */
export function roundTo16(values: Float32Array, kind: 'F16' | 'BF16'): Float32Array {
  return decode16(encode16(values, kind), values.length, kind);
}

let table: Float32Array | undefined;
function halfTable(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  }
  return table;
}
