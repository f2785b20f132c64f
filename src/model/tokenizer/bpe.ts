/**
 * Byte-level BPE: text is UTF-8 bytes (256 base tokens, so nothing is ever unknown: Chinese,
 * emoji, any script), merged pairwise by learned rank within pre-tokenized chunks.
 *
 * Encoding caches each distinct chunk's ids, and merges long chunks with a heap over a linked list
 * (O(n log n)), so a 10 MB corpus encodes in seconds.
 */
import {
  type BpeTokenizerFile,
  type EncodeOptions,
  type SpecialTokenName,
  type StreamDecoder,
  type Tokenizer,
  SPECIAL_TOKEN_TEXT,
  splitOnSpecial,
} from './types.ts';
import { DEFAULT_PATTERN, compilePattern, pretokenize } from './pretokenize.ts';

const PAIR_SHIFT = 2 ** 21;
export const pairKey = (a: number, b: number): number => a * PAIR_SHIFT + b;

const utf8 = new TextEncoder();

/** Renders bytes as text when they are valid UTF-8, else as <0xNN> escapes. */
export function bytesToReadable(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return Array.from(bytes, (b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`).join('');
  }
}

export class BpeTokenizer implements Tokenizer {
  readonly kind = 'bpe' as const;
  readonly vocabSize: number;
  readonly special: Partial<Record<SpecialTokenName, number>>;
  readonly merges: [number, number][];
  readonly pattern: string;
  private readonly re: RegExp;
  /** pairKey -> rank (the merged token is 256 + rank). */
  private readonly ranks = new Map<number, number>();
  private readonly bytes: Uint8Array[] = [];
  private readonly specialText = new Map<number, string>();
  private cache = new Map<string, number[]>();
  private static readonly CACHE_LIMIT = 500_000;

  constructor(merges: [number, number][], special: Partial<Record<SpecialTokenName, number>> = {}, pattern = DEFAULT_PATTERN) {
    this.merges = merges;
    this.pattern = pattern;
    this.re = compilePattern(pattern);
    for (let b = 0; b < 256; b++) this.bytes.push(Uint8Array.of(b));
    merges.forEach(([a, b], rank) => {
      const left = this.bytes[a];
      const right = this.bytes[b];
      if (!left || !right) throw new Error(`Merge ${rank} refers to a token that does not exist yet (${a}, ${b})`);
      const joined = new Uint8Array(left.length + right.length);
      joined.set(left);
      joined.set(right, left.length);
      this.bytes.push(joined);
      this.ranks.set(pairKey(a, b), rank);
    });
    this.special = { ...special };
    for (const [name, id] of Object.entries(this.special)) this.specialText.set(id, SPECIAL_TOKEN_TEXT[name as SpecialTokenName]);
    const maxSpecial = Math.max(-1, ...this.specialText.keys());
    this.vocabSize = Math.max(256 + merges.length, maxSpecial + 1);
  }

  static fromJSON(file: BpeTokenizerFile): BpeTokenizer {
    return new BpeTokenizer(file.merges, file.specialTokens, file.pattern);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    const parts = options.allowSpecial ? splitOnSpecial(text, this.special) : [text];
    for (const part of parts) {
      if (typeof part === 'number') out.push(part);
      else this.encodeOrdinary(part, out);
    }
    return out;
  }

  private encodeOrdinary(text: string, out: number[]): void {
    for (const chunk of pretokenize(text, this.re)) {
      let ids = this.cache.get(chunk);
      if (!ids) {
        ids = this.encodeChunk(utf8.encode(chunk));
        if (this.cache.size >= BpeTokenizer.CACHE_LIMIT) this.cache = new Map();
        this.cache.set(chunk, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
    }
  }

  /** Applies the merges to one chunk's bytes, lowest rank first, leftmost first. */
  encodeChunk(bytes: Uint8Array): number[] {
    const n = bytes.length;
    if (n <= 1) return Array.from(bytes);
    if (n <= 48) return this.mergeSmall(Array.from(bytes));
    return this.mergeLarge(bytes);
  }

  private mergeSmall(ids: number[]): number[] {
    for (;;) {
      let bestRank = Infinity;
      let bestAt = -1;
      for (let i = 0; i + 1 < ids.length; i++) {
        const r = this.ranks.get(pairKey(ids[i]!, ids[i + 1]!));
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          bestAt = i;
        }
      }
      if (bestAt < 0) return ids;
      const a = ids[bestAt]!;
      const b = ids[bestAt + 1]!;
      const merged = 256 + bestRank;
      const next: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
          next.push(merged);
          i++;
        } else next.push(ids[i]!);
      }
      ids = next;
    }
  }

  private mergeLarge(bytes: Uint8Array): number[] {
    const n = bytes.length;
    const tok = Int32Array.from(bytes);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    // Min-heap of (rank, left position), packed as rank * 2^32 + pos.
    const heap: number[] = [];
    const push = (v: number) => {
      heap.push(v);
      let i = heap.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p]! <= v) break;
        heap[i] = heap[p]!;
        i = p;
      }
      heap[i] = v;
    };
    const pop = (): number => {
      const top = heap[0]!;
      const last = heap.pop()!;
      if (heap.length > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= heap.length) break;
          const r = l + 1;
          const c = r < heap.length && heap[r]! < heap[l]! ? r : l;
          if (heap[c]! >= last) break;
          heap[i] = heap[c]!;
          i = c;
        }
        heap[i] = last;
      }
      return top;
    };
    const SHIFT = 2 ** 32;
    const consider = (i: number) => {
      const j = next[i]!;
      if (i < 0 || j < 0) return;
      const r = this.ranks.get(pairKey(tok[i]!, tok[j]!));
      if (r !== undefined) push(r * SHIFT + i);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.length) {
      const v = pop();
      const rank = Math.floor(v / SHIFT);
      const i = v - rank * SHIFT;
      const j = next[i]!;
      if (!alive[i] || j < 0) continue;
      const [a, b] = this.merges[rank]!;
      if (tok[i] !== a || tok[j] !== b) continue; // stale entry
      tok[i] = 256 + rank;
      alive[j] = 0;
      next[i] = next[j]!;
      if (next[j]! >= 0) prev[next[j]!] = i;
      if (prev[i]! >= 0) consider(prev[i]!);
      consider(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
    return out;
  }

  tokenBytes(id: number): Uint8Array {
    const b = this.bytes[id];
    if (b) return b;
    const s = this.specialText.get(id);
    return s ? utf8.encode(s) : new Uint8Array(0);
  }

  decode(ids: ArrayLike<number>): string {
    let total = 0;
    for (let i = 0; i < ids.length; i++) total += this.tokenBytes(ids[i]!).length;
    const buf = new Uint8Array(total);
    let pos = 0;
    for (let i = 0; i < ids.length; i++) {
      const b = this.tokenBytes(ids[i]!);
      buf.set(b, pos);
      pos += b.length;
    }
    return new TextDecoder().decode(buf);
  }

  streamDecoder(): StreamDecoder {
    let decoder = new TextDecoder();
    return {
      push: (id) => {
        const special = this.specialText.get(id);
        if (special !== undefined) {
          const rest = decoder.decode();
          decoder = new TextDecoder();
          return rest + special;
        }
        return decoder.decode(this.tokenBytes(id), { stream: true });
      },
      flush: () => {
        const rest = decoder.decode();
        decoder = new TextDecoder();
        return rest;
      },
    };
  }

  tokenText(id: number): string {
    return this.specialText.get(id) ?? bytesToReadable(this.tokenBytes(id));
  }

  isSpecial(id: number): boolean {
    return this.specialText.has(id);
  }

  toJSON(): BpeTokenizerFile {
    return {
      type: 'bpe',
      version: 1,
      pattern: this.pattern,
      merges: this.merges,
      specialTokens: this.special,
      vocab: Array.from({ length: this.vocabSize }, (_, i) => this.tokenText(i)),
    };
  }
}
