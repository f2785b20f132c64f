/**
 * The long connection's frame format (pbbp2.Frame, protobuf), encoded by hand so the test plays
 * Feishu's side without reaching into the SDK:
 * 1 SeqID uint64, 2 LogID uint64, 3 service int32, 4 method int32 (0 control, 1 data),
 * 5 headers repeated {1 key, 2 value}, 6 payloadEncoding, 7 payloadType, 8 payload bytes, 9 LogIDNew.
 */

export interface Frame {
  seqId: number;
  logId: number;
  service: number;
  method: number;
  headers: Record<string, string>;
  payload?: Uint8Array;
}

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

function field(num: number, wire: number): number[] {
  return varint((num << 3) | wire);
}

function bytesField(num: number, data: Uint8Array): number[] {
  return [...field(num, 2), ...varint(data.length), ...data];
}

const utf8 = (s: string) => new TextEncoder().encode(s);

export function encodeFrame(frame: Frame): Uint8Array {
  const out: number[] = [
    ...field(1, 0),
    ...varint(frame.seqId),
    ...field(2, 0),
    ...varint(frame.logId),
    ...field(3, 0),
    ...varint(frame.service),
    ...field(4, 0),
    ...varint(frame.method),
  ];
  for (const [key, value] of Object.entries(frame.headers)) {
    const header = [...bytesField(1, utf8(key)), ...bytesField(2, utf8(value))];
    out.push(...bytesField(5, Uint8Array.from(header)));
  }
  if (frame.payload) out.push(...bytesField(8, frame.payload));
  return Uint8Array.from(out);
}

function readVarint(buf: Uint8Array, pos: number): [number, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const byte = buf[pos++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [Number(result), pos];
    shift += 7n;
  }
}

function fields(buf: Uint8Array): [number, number | Uint8Array][] {
  const out: [number, number | Uint8Array][] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [key, afterKey] = readVarint(buf, pos);
    const num = key >> 3;
    const wire = key & 7;
    if (wire === 0) {
      const [value, next] = readVarint(buf, afterKey);
      out.push([num, value]);
      pos = next;
    } else if (wire === 2) {
      const [len, start] = readVarint(buf, afterKey);
      out.push([num, buf.subarray(start, start + len)]);
      pos = start + len;
    } else {
      throw new Error(`unexpected wire type ${wire}`);
    }
  }
  return out;
}

export function decodeFrame(buf: Uint8Array): Frame {
  const frame: Frame = { seqId: 0, logId: 0, service: 0, method: 0, headers: {} };
  const text = (b: number | Uint8Array) => new TextDecoder().decode(b as Uint8Array);
  for (const [num, value] of fields(buf)) {
    if (num === 1) frame.seqId = value as number;
    else if (num === 2) frame.logId = value as number;
    else if (num === 3) frame.service = value as number;
    else if (num === 4) frame.method = value as number;
    else if (num === 5) {
      const header = Object.fromEntries(fields(value as Uint8Array).map(([n, v]) => [n, text(v)]));
      frame.headers[header[1]!] = header[2]!;
    } else if (num === 8) frame.payload = value as Uint8Array;
  }
  return frame;
}
