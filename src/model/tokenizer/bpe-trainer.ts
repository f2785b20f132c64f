/**
 * Learns byte-level BPE merges from a corpus: count the distinct pre-tokenized chunks, then merge
 * the most frequent adjacent pair again and again. Pair counts are updated incrementally, only in
 * the chunks that contain the merged pair, and the most frequent pair comes from a lazy max-heap,
 * so a few MB of text train in seconds.
 */
import { BpeTokenizer, pairKey } from './bpe.ts';
import { DEFAULT_PATTERN, compilePattern, pretokenize } from './pretokenize.ts';
import { SPECIAL_TOKEN_NAMES, type SpecialTokenName } from './types.ts';

export interface BpeTrainProgress {
  phase: 'count' | 'merge';
  done: number;
  total: number;
}

export interface TrainBpeOptions {
  /** Target vocabulary size, special tokens included (at least 256 + the specials). */
  vocabSize: number;
  /** Stop early when the best pair occurs fewer times than this. */
  minFrequency?: number;
  /** Add the chat template's special tokens (default true). */
  specialTokens?: boolean;
  pattern?: string;
  onProgress?: (p: BpeTrainProgress) => void;
}

const PAIR_SHIFT = 2 ** 21;
const utf8 = new TextEncoder();

/** Max-heap of (count, pair) with ties broken by the smaller pair key, for determinism. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  private better(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }
  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j]!, this.counts[i]!];
    [this.keys[i], this.keys[j]] = [this.keys[j]!, this.keys[i]!];
  }
  get size(): number {
    return this.counts.length;
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lc = this.counts.pop()!;
    const lk = this.keys.pop()!;
    if (this.counts.length > 0) {
      this.counts[0] = lc;
      this.keys[0] = lk;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < this.counts.length && this.better(l, best)) best = l;
        if (r < this.counts.length && this.better(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/** Counts the distinct chunks of one or more texts. */
export function countChunks(texts: Iterable<string>, pattern = DEFAULT_PATTERN, counts = new Map<string, number>()): Map<string, number> {
  const re = compilePattern(pattern);
  for (const text of texts) for (const chunk of pretokenize(text, re)) counts.set(chunk, (counts.get(chunk) ?? 0) + 1);
  return counts;
}

/** Learns merges from chunk counts and returns the tokenizer. */
export function trainBpeFromCounts(chunkCounts: Map<string, number>, options: TrainBpeOptions): BpeTokenizer {
  const specials = options.specialTokens === false ? [] : [...SPECIAL_TOKEN_NAMES];
  const numMerges = options.vocabSize - 256 - specials.length;
  if (numMerges < 0) throw new Error(`vocabSize must be at least ${256 + specials.length}`);
  const minFrequency = options.minFrequency ?? 2;

  const words: Int32Array[] = [];
  const freq: number[] = [];
  for (const [chunk, c] of chunkCounts) {
    const b = utf8.encode(chunk);
    if (b.length < 2) continue;
    words.push(Int32Array.from(b));
    freq.push(c);
  }
  const pairCounts = new Map<number, number>();
  const where = new Map<number, number[]>();
  for (let w = 0; w < words.length; w++) {
    const word = words[w]!;
    const f = freq[w]!;
    for (let i = 0; i + 1 < word.length; i++) {
      const k = word[i]! * PAIR_SHIFT + word[i + 1]!;
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + f);
      const list = where.get(k);
      if (!list) where.set(k, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }
  const heap = new PairHeap();
  for (const [k, c] of pairCounts) heap.push(c, k);

  const merges: [number, number][] = [];
  const changed = new Set<number>();
  const add = (k: number, delta: number) => {
    pairCounts.set(k, (pairCounts.get(k) ?? 0) + delta);
    changed.add(k);
  };
  while (merges.length < numMerges && heap.size > 0) {
    const [count, key] = heap.pop();
    if (pairCounts.get(key) !== count) continue; // stale
    if (count < minFrequency) break;
    const a = Math.floor(key / PAIR_SHIFT);
    const b = key - a * PAIR_SHIFT;
    const newId = 256 + merges.length;
    merges.push([a, b]);
    changed.clear();
    const occurrences = where.get(key) ?? [];
    where.delete(key);
    for (const w of occurrences) {
      const word = words[w]!;
      const f = freq[w]!;
      let found = false;
      for (let i = 0; i + 1 < word.length; i++) if (word[i] === a && word[i + 1] === b) { found = true; break; }
      if (!found) continue;
      for (let i = 0; i + 1 < word.length; i++) add(word[i]! * PAIR_SHIFT + word[i + 1]!, -f);
      const merged: number[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          merged.push(newId);
          i++;
        } else merged.push(word[i]!);
      }
      const nw = Int32Array.from(merged);
      words[w] = nw;
      for (let i = 0; i + 1 < nw.length; i++) {
        const k = nw[i]! * PAIR_SHIFT + nw[i + 1]!;
        add(k, f);
        if (nw[i] === newId || nw[i + 1] === newId) {
          const list = where.get(k);
          if (!list) where.set(k, [w]);
          else if (list[list.length - 1] !== w) list.push(w);
        }
      }
    }
    for (const k of changed) {
      const c = pairCounts.get(k)!;
      if (c <= 0) pairCounts.delete(k);
      else if (k !== key) heap.push(c, k);
    }
    pairCounts.delete(key);
    if (merges.length % 64 === 0) options.onProgress?.({ phase: 'merge', done: merges.length, total: numMerges });
  }
  options.onProgress?.({ phase: 'merge', done: merges.length, total: numMerges });
  const special: Partial<Record<SpecialTokenName, number>> = {};
  specials.forEach((name, i) => (special[name] = 256 + merges.length + i));
  return new BpeTokenizer(merges, special, options.pattern ?? DEFAULT_PATTERN);
}

/** Trains a byte-level BPE tokenizer on texts. */
export function trainBpe(texts: Iterable<string>, options: TrainBpeOptions): BpeTokenizer {
  const counts = countChunks(texts, options.pattern ?? DEFAULT_PATTERN);
  return trainBpeFromCounts(counts, options);
}

export { pairKey };
