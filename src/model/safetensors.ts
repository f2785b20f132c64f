/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian data. Readable by Python's `safetensors` and by our loader.
 */
import { closeSync, existsSync, fstatSync, openSync, promises as fs, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, writeFileStreamAtomic } from './files.ts';
import { decode16, encode16 } from './import/dtypes.ts';

export type SafetensorsDType = 'F32' | 'I32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'U8';

export interface NamedArray {
  dtype: 'F32' | 'I32';
  shape: number[];
  data: Float32Array | Int32Array;
  /** The dtype the file stores it as: read, what it held; written, F32 data may be stored as F16 or BF16. */
  stored?: SafetensorsDType;
}

export interface SafetensorsContent {
  tensors: Map<string, NamedArray>;
  metadata: Record<string, string>;
}

const BYTES: Record<SafetensorsDType, number> = { F32: 4, I32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, U8: 1 };

/**
 * The header block of a safetensors file (length, JSON padded with spaces so the data starts
 * 8-byte aligned) for tensors laid out one after another in the given order.
 */
function safetensorsHeader(tensors: { name: string; dtype: SafetensorsDType; shape: number[] }[], metadata: Record<string, string>): { head: Uint8Array; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const headerBytes = Buffer.byteLength(json);
  json += ' '.repeat((8 - ((8 + headerBytes) % 8)) % 8);
  const jsonBuf = Buffer.from(json, 'utf8');
  const head = new Uint8Array(8 + jsonBuf.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(jsonBuf.length), true);
  head.set(jsonBuf, 8);
  return { head, dataBytes: offset };
}

export function encodeSafetensors(tensors: Map<string, NamedArray>, metadata: Record<string, string> = {}): Uint8Array {
  const list = [...tensors].map(([name, t]) => {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.data.length) throw new Error(`Tensor ${name}: shape [${t.shape}] does not match ${t.data.length} values`);
    return { name, dtype: half(t) ?? t.dtype, shape: t.shape };
  });
  const { head, dataBytes } = safetensorsHeader(list, metadata);
  const out = new Uint8Array(head.length + dataBytes);
  out.set(head, 0);
  let pos = head.length;
  for (const t of tensors.values()) {
    const as16 = half(t);
    const bytes = as16 ? encode16(t.data, as16) : new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(bytes, pos); // typed arrays are little-endian on every platform Node runs on
    pos += bytes.length;
  }
  return out;
}

/** A tensor to stream into a file: its bytes, already in `dtype`, made when its turn comes. */
export interface SafetensorsTensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  bytes: () => Uint8Array;
}

/** Bytes a safetensors file of these tensors takes. */
export function safetensorsFileBytes(tensors: SafetensorsTensorToWrite[], metadata: Record<string, string> = {}): number {
  const { head, dataBytes } = safetensorsHeader(tensors, metadata);
  return head.length + dataBytes;
}

/**
 * Writes a safetensors file one tensor at a time (a model larger than memory allows twice is
 * never encoded whole), atomically: beside the target, flushed, renamed.
 */
export async function writeSafetensorsStream(file: string, tensors: SafetensorsTensorToWrite[], metadata: Record<string, string> = {}): Promise<void> {
  const { head } = safetensorsHeader(tensors, metadata);
  await writeFileStreamAtomic(file, async (write) => {
    await write(head);
    for (const t of tensors) {
      const bytes = t.bytes();
      const want = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
      if (bytes.length !== want) throw new Error(`Tensor ${t.name}: ${bytes.length} bytes for shape [${t.shape}] of ${t.dtype} (${want} expected)`);
      await write(bytes);
    }
  });
}

/** F32 data written as F16 or BF16 (`stored`), else undefined. */
function half(t: NamedArray): 'F16' | 'BF16' | undefined {
  if (t.stored === 'F16' || t.stored === 'BF16') {
    if (t.dtype !== 'F32') throw new Error(`only F32 data can be stored as ${t.stored}`);
    return t.stored;
  }
  return undefined;
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
    // A copy, aligned and owned (Buffer#slice would be a view into a shared pool).
    const bytes = Uint8Array.prototype.slice.call(buf, base + start, base + end);
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
      case 'BF16':
        data = decode16(bytes, size, info.dtype);
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
    tensors.set(name, { dtype, shape: info.shape, data, stored: info.dtype });
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

/** A tensor as a safetensors header describes it (no data read). */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDType | string;
  shape: number[];
  /** The file that holds it (shards: one of several). */
  file: string;
  /** Absolute byte range in that file. */
  start: number;
  end: number;
}

/** Reads only the JSON header of a safetensors file: names, dtypes, shapes, byte ranges. */
export function readSafetensorsHeader(file: string): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(8);
    if (readSync(fd, head, 0, 8, 0) !== 8) throw new Error(`${file} is not a safetensors file (shorter than 8 bytes)`);
    const n = Number(head.readBigUInt64LE(0));
    const size = fstatSync(fd).size;
    if (n <= 0 || 8 + n > size) throw new Error(`${file} is not a safetensors file (bad header length)`);
    const json = Buffer.alloc(n);
    readSync(fd, json, 0, n, 8);
    const header = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
    const entries: SafetensorsEntry[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = raw as Record<string, string>;
        continue;
      }
      const info = raw as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const start = 8 + n + info.data_offsets[0];
      const end = 8 + n + info.data_offsets[1];
      if (end > size) throw new Error(`${file}: tensor ${name} runs past the end of the file (truncated?)`);
      entries.push({ name, dtype: info.dtype, shape: info.shape, file, start, end });
    }
    return { entries, metadata };
  } finally {
    closeSync(fd);
  }
}

/**
 * The tensors of a Hugging Face folder: model.safetensors, or the shards that
 * model.safetensors.index.json names (its weight_map). Headers only; see readSafetensorsTensor.
 */
export function readSafetensorsFolder(dir: string): SafetensorsEntry[] {
  const single = path.join(dir, 'model.safetensors');
  const index = path.join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map;
    if (!map) throw new Error(`${index} has no weight_map`);
    const shards = [...new Set(Object.values(map))];
    const entries: SafetensorsEntry[] = [];
    for (const shard of shards) {
      const file = path.join(dir, shard);
      if (!existsSync(file)) throw new Error(`${index} names the shard ${shard}, which is missing from ${dir}`);
      entries.push(...readSafetensorsHeader(file).entries);
    }
    return entries;
  }
  if (existsSync(single)) return readSafetensorsHeader(single).entries;
  throw new Error(`${dir} has neither model.safetensors nor model.safetensors.index.json`);
}

/** One tensor's values as float32 (F32, F16, BF16, F64) from its file. */
/** A tensor's stored bytes as they are in the file (in a buffer of their own, offset 0: viewable as Uint16Array). */
export function readSafetensorsBytes(entry: SafetensorsEntry): Uint8Array {
  const raw = new Uint8Array(new ArrayBuffer(entry.end - entry.start));
  const fd = openSync(entry.file, 'r');
  try {
    readSync(fd, raw, 0, raw.length, entry.start);
  } finally {
    closeSync(fd);
  }
  return raw;
}

export function readSafetensorsTensor(entry: SafetensorsEntry): Float32Array {
  const count = entry.shape.reduce((a, b) => a * b, 1);
  const width = entry.dtype === 'F32' ? 4 : entry.dtype === 'F16' || entry.dtype === 'BF16' ? 2 : entry.dtype === 'F64' ? 8 : 0;
  if (!width) throw new Error(`${entry.file}: tensor ${entry.name} is ${entry.dtype}; floating-point tensors (F32, F16, BF16) are supported`);
  if (entry.end - entry.start !== count * width) throw new Error(`${entry.file}: tensor ${entry.name}: byte range does not match its shape`);
  const raw = Buffer.alloc(entry.end - entry.start);
  const fd = openSync(entry.file, 'r');
  try {
    readSync(fd, raw, 0, raw.length, entry.start);
  } finally {
    closeSync(fd);
  }
  if (entry.dtype === 'F16' || entry.dtype === 'BF16') return decode16(raw, count, entry.dtype);
  if (entry.dtype === 'F64') return Float32Array.from({ length: count }, (_, i) => raw.readDoubleLE(i * 8));
  const out = new Float32Array(count);
  new Uint8Array(out.buffer).set(raw);
  return out;
}
