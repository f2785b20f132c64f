/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian data. Readable by Python's `safetensors` and by our loader.
 */
import { promises as fs } from 'node:fs';
import { writeFileAtomic } from './files.ts';

export type SafetensorsDType = 'F32' | 'I32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'U8';

export interface NamedArray {
  dtype: 'F32' | 'I32';
  shape: number[];
  data: Float32Array | Int32Array;
}

export interface SafetensorsContent {
  tensors: Map<string, NamedArray>;
  metadata: Record<string, string>;
}

const BYTES: Record<SafetensorsDType, number> = { F32: 4, I32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, U8: 1 };

export function encodeSafetensors(tensors: Map<string, NamedArray>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.data.length) throw new Error(`Tensor ${name}: shape [${t.shape}] does not match ${t.data.length} values`);
    const bytes = size * 4;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned.
  const headerBytes = Buffer.byteLength(json);
  json += ' '.repeat((8 - ((8 + headerBytes) % 8)) % 8);
  const jsonBuf = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + jsonBuf.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(jsonBuf.length), true);
  out.set(jsonBuf, 8);
  let pos = 8 + jsonBuf.length;
  for (const t of tensors.values()) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(bytes, pos); // typed arrays are little-endian on every platform Node runs on
    pos += bytes.length;
  }
  return out;
}

function halfToFloat(h: number): number {
  const s = (h & 0x8000) >> 15;
  const e = (h & 0x7c00) >> 10;
  const f = h & 0x03ff;
  let v: number;
  if (e === 0) v = (f / 1024) * 2 ** -14;
  else if (e === 31) v = f ? NaN : Infinity;
  else v = (1 + f / 1024) * 2 ** (e - 15);
  return s ? -v : v;
}

export function decodeSafetensors(buf: Uint8Array): SafetensorsContent {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n <= 0 || 8 + n > buf.length) throw new Error('Not a safetensors file (bad header length)');
  const header = JSON.parse(Buffer.from(buf.subarray(8, 8 + n)).toString('utf8')) as Record<string, unknown>;
  const base = 8 + n;
  const tensors = new Map<string, NamedArray>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = raw as Record<string, string>;
      continue;
    }
    const info = raw as { dtype: SafetensorsDType; shape: number[]; data_offsets: [number, number] };
    const [start, end] = info.data_offsets;
    const size = info.shape.reduce((a, b) => a * b, 1);
    if (!(info.dtype in BYTES)) throw new Error(`Tensor ${name}: unsupported dtype ${info.dtype}`);
    if (end - start !== size * BYTES[info.dtype]) throw new Error(`Tensor ${name}: byte range does not match its shape`);
    const bytes = buf.slice(base + start, base + end); // copy: aligned and owned
    const dv = new DataView(bytes.buffer);
    let data: Float32Array | Int32Array;
    let dtype: 'F32' | 'I32' = 'F32';
    switch (info.dtype) {
      case 'F32':
        data = new Float32Array(bytes.buffer);
        break;
      case 'I32':
        data = new Int32Array(bytes.buffer);
        dtype = 'I32';
        break;
      case 'F16':
        data = new Float32Array(size).map((_, i) => halfToFloat(dv.getUint16(i * 2, true)));
        break;
      case 'BF16':
        data = new Float32Array(size).map((_, i) => {
          const b = new DataView(new ArrayBuffer(4));
          b.setUint32(0, dv.getUint16(i * 2, true) << 16, true);
          return b.getFloat32(0, true);
        });
        break;
      case 'F64':
        data = new Float32Array(size).map((_, i) => dv.getFloat64(i * 8, true));
        break;
      case 'I64':
        data = new Int32Array(size).map((_, i) => Number(dv.getBigInt64(i * 8, true)));
        dtype = 'I32';
        break;
      case 'U8':
        data = Int32Array.from(bytes);
        dtype = 'I32';
        break;
    }
    tensors.set(name, { dtype, shape: info.shape, data });
  }
  return { tensors, metadata };
}

export async function writeSafetensors(
  file: string,
  tensors: Map<string, NamedArray>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}

export async function readSafetensors(file: string): Promise<SafetensorsContent> {
  return decodeSafetensors(new Uint8Array(await fs.readFile(file)));
}
