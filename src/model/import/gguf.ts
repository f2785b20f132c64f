/**
 * GGUF, llama.cpp's model file (https://github.com/ggml-org/gguf — spec docs/gguf.md): the magic
 * "GGUF", version 3, counts, typed key/value metadata, tensor infos (name, dimensions innermost
 * first, ggml type, offset), then the tensor data, each tensor aligned to `general.alignment`
 * (default 32). Reads F32, F16, BF16 and Q8_0 tensors into float32; writes the same four types
 * (`teamllm model export --format gguf` through chat-gguf.ts, and the tests' fixtures).
 *
 * The header is read through a file descriptor (a multi-GB file is never read whole); a tensor's
 * bytes are read when it is asked for.
 */
import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import { writeFileStreamAtomic } from '../files.ts';
import { decode16, encode16, floatToHalf, halfToFloat } from './dtypes.ts';

/** ggml tensor types this reader and writer handle (values from ggml.h). */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;
const TYPE_NAMES = new Map<number, GgmlTypeName>(Object.entries(GGML_TYPE).map(([k, v]) => [v, k as GgmlTypeName]));
/** Names of other ggml types, for the refusal message. */
const OTHER_TYPES: Record<number, string> = { 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64' };

/** GGUF metadata value types (gguf_type). */
const enum VT {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufScalar[];

/** A metadata value with the type to write it as (the reader also reports what it read). */
export type GgufTyped =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: number | bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64' | 'u64' | 'i64' | 'bool' | 'string'; value: GgufScalar[] };

const TYPE_CODE: Record<string, VT> = { u8: VT.U8, i8: VT.I8, u16: VT.U16, i16: VT.I16, u32: VT.U32, i32: VT.I32, f32: VT.F32, bool: VT.BOOL, string: VT.STRING, array: VT.ARRAY, u64: VT.U64, i64: VT.I64, f64: VT.F64 };

export interface GgufTensorInfo {
  name: string;
  /** ggml's dimensions, innermost first (a [out, in] matrix is ne = [in, out]). */
  ne: number[];
  /** The row-major shape (ne reversed), as safetensors and PyTorch write it. */
  shape: number[];
  type: GgmlTypeName | string;
  /** Byte offset of the data from the start of the file. */
  offset: number;
  bytes: number;
}

const Q8_0_BLOCK = 32;
const Q8_0_BYTES = 34;

function tensorBytes(type: number, count: number, name: string): number {
  switch (type) {
    case GGML_TYPE.F32:
      return count * 4;
    case GGML_TYPE.F16:
    case GGML_TYPE.BF16:
      return count * 2;
    case GGML_TYPE.Q8_0:
      if (count % Q8_0_BLOCK) throw new Error(`GGUF tensor ${name}: Q8_0 needs a multiple of 32 values, it has ${count}`);
      return (count / Q8_0_BLOCK) * Q8_0_BYTES;
    default:
      return -1;
  }
}

/** Reads little-endian values from a file descriptor through a window buffer. */
class FileCursor {
  pos = 0;
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  private need(n: number): Buffer {
    if (this.pos + n > this.size) throw new Error(`GGUF: unexpected end of file at byte ${this.pos} (wanted ${n} more bytes of ${this.size})`);
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      const len = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
      this.buf = Buffer.alloc(len);
      readSync(this.fd, this.buf, 0, len, this.pos);
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(at, at + n);
  }
  u8 = () => this.need(1).readUInt8(0);
  i8 = () => this.need(1).readInt8(0);
  u16 = () => this.need(2).readUInt16LE(0);
  i16 = () => this.need(2).readInt16LE(0);
  u32 = () => this.need(4).readUInt32LE(0);
  i32 = () => this.need(4).readInt32LE(0);
  f32 = () => this.need(4).readFloatLE(0);
  f64 = () => this.need(8).readDoubleLE(0);
  u64 = (): number | bigint => {
    const v = this.need(8).readBigUInt64LE(0);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  i64 = (): number | bigint => {
    const v = this.need(8).readBigInt64LE(0);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
  };
  count = (what: string): number => {
    const v = this.u64();
    if (typeof v !== 'number' || v > this.size) throw new Error(`GGUF: implausible ${what} ${v} at byte ${this.pos - 8}`);
    return v;
  };
  str = (): string => {
    const n = this.count('string length');
    return this.need(n).toString('utf8');
  };
}

function readValue(c: FileCursor, type: number): GgufValue {
  switch (type) {
    case VT.U8:
      return c.u8();
    case VT.I8:
      return c.i8();
    case VT.U16:
      return c.u16();
    case VT.I16:
      return c.i16();
    case VT.U32:
      return c.u32();
    case VT.I32:
      return c.i32();
    case VT.F32:
      return c.f32();
    case VT.BOOL:
      return c.u8() !== 0;
    case VT.STRING:
      return c.str();
    case VT.U64:
      return c.u64();
    case VT.I64:
      return c.i64();
    case VT.F64:
      return c.f64();
    case VT.ARRAY: {
      const of = c.u32();
      const n = c.count('array length');
      if (of === VT.ARRAY) throw new Error('GGUF: nested arrays are not supported');
      const out: GgufScalar[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, of) as GgufScalar;
      return out;
    }
    default:
      throw new Error(`GGUF: unknown metadata value type ${type} at byte ${c.pos - 4}`);
  }
}

/** An open GGUF file: its metadata and tensor infos; tensors are read on demand. close() when done. */
export class GgufFile {
  readonly version: number;
  readonly metadata = new Map<string, GgufValue>();
  readonly tensors = new Map<string, GgufTensorInfo>();
  readonly alignment: number;
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    const size = fstatSync(fd).size;
    const c = new FileCursor(fd, size);
    if (size < 24 || c.u32() !== 0x46554747) throw new Error(`${path} is not a GGUF file (no "GGUF" magic at its start)`);
    this.version = c.u32();
    if (this.version < 2 || this.version > 3) throw new Error(`${path}: GGUF version ${this.version} is not supported (2 and 3 are)`);
    const nTensors = c.count('tensor count');
    const nKv = c.count('metadata count');
    for (let i = 0; i < nKv; i++) {
      const key = c.str();
      this.metadata.set(key, readValue(c, c.u32()));
    }
    const align = this.metadata.get('general.alignment');
    this.alignment = typeof align === 'number' && align > 0 ? align : 32;
    const infos: { name: string; ne: number[]; type: number; rel: number }[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = c.str();
      const nd = c.u32();
      if (nd > 8) throw new Error(`${path}: tensor ${name} has ${nd} dimensions`);
      const ne: number[] = [];
      for (let d = 0; d < nd; d++) ne.push(c.count(`dimension of ${name}`));
      const type = c.u32();
      const rel = c.count(`offset of ${name}`);
      infos.push({ name, ne, type, rel });
    }
    const dataStart = Math.ceil(c.pos / this.alignment) * this.alignment;
    for (const { name, ne, type, rel } of infos) {
      const count = ne.reduce((a, b) => a * b, 1);
      const bytes = tensorBytes(type, count, name);
      const typeName = TYPE_NAMES.get(type) ?? OTHER_TYPES[type] ?? `ggml type ${type}`;
      const offset = dataStart + rel;
      if (bytes >= 0 && offset + bytes > size) throw new Error(`${path}: tensor ${name} runs past the end of the file (truncated?)`);
      this.tensors.set(name, { name, ne, shape: [...ne].reverse(), type: typeName, offset, bytes });
    }
  }

  static open(path: string): GgufFile {
    const fd = openSync(path, 'r');
    try {
      return new GgufFile(path, fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** A metadata value, checked to be of the JavaScript type asked for (undefined when absent). */
  get<T extends GgufValue>(key: string): T | undefined {
    return this.metadata.get(key) as T | undefined;
  }

  /** A tensor's values as float32 (F32, F16, BF16 and Q8_0 are read; other types are refused). */
  read(name: string): Float32Array {
    const info = this.tensors.get(name);
    if (!info) throw new Error(`${this.path} has no tensor ${name}`);
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    if (!TYPE_NAMES.has(GGML_TYPE[info.type as GgmlTypeName])) {
      throw new Error(`${this.path}: tensor ${name} is ${info.type}; supported tensor types are ${Object.keys(GGML_TYPE).join(', ')} (re-quantize it with llama.cpp's llama-quantize to Q8_0 or convert it to F16)`);
    }
    const raw = Buffer.alloc(info.bytes);
    readSync(this.fd, raw, 0, info.bytes, info.offset);
    const count = info.ne.reduce((a, b) => a * b, 1);
    return decodeTensor(info.type as GgmlTypeName, raw, count);
  }

  /** A tensor's stored bytes (F32, F16, BF16 or Q8_0 blocks as in the file), in a buffer of their own at offset 0. */
  readBytes(name: string): Uint8Array {
    const info = this.tensors.get(name);
    if (!info) throw new Error(`${this.path} has no tensor ${name}`);
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    const raw = new Uint8Array(new ArrayBuffer(info.bytes));
    readSync(this.fd, raw, 0, info.bytes, info.offset);
    return raw;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function decodeTensor(type: GgmlTypeName, raw: Uint8Array, count: number): Float32Array {
  switch (type) {
    case 'F32': {
      const out = new Float32Array(count);
      new Uint8Array(out.buffer).set(raw.subarray(0, count * 4));
      return out;
    }
    case 'F16':
    case 'BF16':
      return decode16(raw, count, type);
    case 'Q8_0': {
      const out = new Float32Array(count);
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      for (let b = 0; b < count / Q8_0_BLOCK; b++) {
        const at = b * Q8_0_BYTES;
        const d = halfToFloat(view.getUint16(at, true));
        for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = d * view.getInt8(at + 2 + j);
      }
      return out;
    }
  }
}

/**
 * Q8_0 as ggml's reference quantizer makes it (quantize_row_q8_0_ref): per block of 32,
 * d = max|x| / 127 (stored as F16), q = roundf(x · (1/d)) — roundf: halves away from zero.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % Q8_0_BLOCK) throw new Error(`Q8_0 needs a multiple of 32 values, got ${values.length}`);
  const out = new Uint8Array((values.length / Q8_0_BLOCK) * Q8_0_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < values.length / Q8_0_BLOCK; b++) {
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(values[b * Q8_0_BLOCK + j]!));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    view.setUint16(b * Q8_0_BYTES, floatToHalf(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const x = Math.fround(values[b * Q8_0_BLOCK + j]! * id);
      view.setInt8(b * Q8_0_BYTES + 2 + j, Math.sign(x) * Math.round(Math.abs(x)));
    }
  }
  return out;
}

export interface GgufTensorToWrite {
  name: string;
  /** Row-major shape ([out, in] for a weight matrix); written innermost first. */
  shape: number[];
  type: GgmlTypeName;
  /**
   * float32 values, converted to `type` when written; or a function giving the bytes already in
   * `type` (called once, while the file is written: a large model is never encoded whole in memory).
   */
  data: Float32Array | (() => Uint8Array);
}

/** A tensor's bytes in its type. */
function tensorBlob(t: GgufTensorToWrite): Uint8Array {
  const count = t.shape.reduce((a, b) => a * b, 1);
  const want = tensorBytes(GGML_TYPE[t.type], count, t.name);
  let blob: Uint8Array;
  if (typeof t.data === 'function') blob = t.data();
  else {
    if (count !== t.data.length) throw new Error(`GGUF writer: tensor ${t.name} has shape [${t.shape}] but ${t.data.length} values`);
    blob = t.type === 'F32' ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) : t.type === 'Q8_0' ? quantizeQ8_0(t.data) : encode16(t.data, t.type);
  }
  if (blob.length !== want) throw new Error(`GGUF writer: tensor ${t.name} ([${t.shape}], ${t.type}) is ${blob.length} bytes, expected ${want}`);
  return blob;
}

/**
 * The header of a GGUF v3 file (metadata in the given order, tensor infos), padded to the data's
 * start, and where each tensor's data goes (offsets from there, each aligned).
 */
function ggufHeader(metadata: [string, GgufTyped][], tensors: GgufTensorToWrite[], alignment: number): { header: Buffer; offsets: number[]; dataBytes: number } {
  const parts: Buffer[] = [];
  let length = 0;
  const push = (b: Buffer) => {
    parts.push(b);
    length += b.length;
  };
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    push(b);
  };
  const u64 = (v: number | bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    push(b);
  };
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    u64(b.length);
    push(b);
  };
  const scalar = (type: string, v: GgufScalar) => {
    const b = Buffer.alloc(8);
    switch (type) {
      case 'u8':
        return push(Buffer.from([Number(v) & 0xff]));
      case 'i8':
        b.writeInt8(Number(v));
        return push(b.subarray(0, 1));
      case 'bool':
        return push(Buffer.from([v ? 1 : 0]));
      case 'u16':
        b.writeUInt16LE(Number(v));
        return push(b.subarray(0, 2));
      case 'i16':
        b.writeInt16LE(Number(v));
        return push(b.subarray(0, 2));
      case 'u32':
        return u32(Number(v));
      case 'i32':
        b.writeInt32LE(Number(v));
        return push(b.subarray(0, 4));
      case 'f32':
        b.writeFloatLE(Number(v));
        return push(b.subarray(0, 4));
      case 'f64':
        b.writeDoubleLE(Number(v));
        return push(b);
      case 'u64':
        return u64(typeof v === 'bigint' ? v : Number(v));
      case 'i64':
        b.writeBigInt64LE(BigInt(v as number));
        return push(b);
      case 'string':
        return str(String(v));
      default:
        throw new Error(`GGUF writer: unknown value type ${type}`);
    }
  };

  const meta = [...metadata];
  if (alignment !== 32 && !meta.some(([k]) => k === 'general.alignment')) meta.push(['general.alignment', { type: 'u32', value: alignment }]);
  u32(0x46554747);
  u32(3);
  u64(tensors.length);
  u64(meta.length);
  for (const [key, v] of meta) {
    str(key);
    u32(TYPE_CODE[v.type]!);
    if (v.type === 'array') {
      u32(TYPE_CODE[v.of]!);
      u64(v.value.length);
      for (const item of v.value) scalar(v.of, item);
    } else scalar(v.type, v.value);
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const bytes = tensorBytes(GGML_TYPE[t.type], count, t.name);
    str(t.name);
    u32(t.shape.length);
    for (const d of [...t.shape].reverse()) u64(d);
    u32(GGML_TYPE[t.type]);
    u64(offset);
    offsets.push(offset);
    offset += Math.ceil(bytes / alignment) * alignment;
  }
  push(Buffer.alloc((alignment - (length % alignment)) % alignment));
  return { header: Buffer.concat(parts, length), offsets, dataBytes: offset };
}

/** Encodes a GGUF v3 file in memory: metadata in the given order, then tensor infos and aligned data. */
export function encodeGguf(metadata: [string, GgufTyped][], tensors: GgufTensorToWrite[], alignment = 32): Uint8Array {
  const { header, offsets, dataBytes } = ggufHeader(metadata, tensors, alignment);
  const out = new Uint8Array(header.length + dataBytes);
  out.set(header, 0);
  tensors.forEach((t, i) => out.set(tensorBlob(t), header.length + offsets[i]!));
  return out;
}

/** Bytes a GGUF file of these tensors takes (header included): what a disk-space check needs. */
export function ggufFileBytes(metadata: [string, GgufTyped][], tensors: GgufTensorToWrite[], alignment = 32): number {
  const { header, dataBytes } = ggufHeader(metadata, tensors, alignment);
  return header.length + dataBytes;
}

/**
 * Writes a GGUF v3 file one tensor at a time (each encoded when its turn comes), beside the target
 * and renamed over it once complete and flushed: a reader never sees half a model.
 */
export async function writeGguf(file: string, metadata: [string, GgufTyped][], tensors: GgufTensorToWrite[], alignment = 32): Promise<void> {
  const { header, offsets, dataBytes } = ggufHeader(metadata, tensors, alignment);
  await writeFileStreamAtomic(file, async (write) => {
    await write(header);
    let at = 0;
    for (const [i, t] of tensors.entries()) {
      if (offsets[i]! > at) await write(new Uint8Array(offsets[i]! - at));
      const blob = tensorBlob(t);
      await write(blob);
      at = offsets[i]! + blob.length;
    }
    if (dataBytes > at) await write(new Uint8Array(dataBytes - at));
  });
}
