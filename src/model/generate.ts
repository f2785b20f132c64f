/**
 * Autoregressive generation: a KV cache (each step runs only the new token through the model),
 * sampling options, stop sequences, max tokens, streaming of tokens as they are produced and
 * cancellation through an AbortSignal.
 *
 * The cache holds at most blockSize positions. When it is full, the oldest half of the window is
 * dropped and the newest half re-encoded (positions are absolute, so they must be recomputed).
 * Within the block size, cached and uncached generation compute the same logits and pick the same
 * tokens (with or without an `allowedTokens` mask).
 */
import * as tf from '@tensorflow/tfjs-core';
import { GPT, type KVCache } from './gpt.ts';
import type { Tokenizer } from './tokenizer/index.ts';
import { Random } from './random.ts';
import { sampleToken, type SamplingOptions } from './sampling.ts';

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most (default 256). */
  maxTokens?: number;
  /** Stop when the generated text contains one of these (the stop text is not returned). */
  stop?: string[];
  /** Stop at these token ids too (the tokenizer's `end` token is always one, unless stopAtEnd is false). */
  stopTokens?: number[];
  stopAtEnd?: boolean;
  signal?: AbortSignal;
  /** Seed for sampling (default: random). */
  seed?: number;
  /** Use the KV cache (default true). Without it, each step re-runs the whole window. */
  useCache?: boolean;
  /** Let special tokens other than stop tokens be generated (default false). */
  allowSpecial?: boolean;
  /**
   * A logits mask applied before sampling, the same way with and without the cache: given the
   * tokens generated so far, the ids that may come next (all others get probability 0), or null
   * for no constraint at this step. An empty set ends the generation ('stop'). Extractive
   * decoding (src/model/extractive.ts) uses it.
   */
  allowedTokens?: (generated: readonly number[]) => Iterable<number> | null;
}

export interface GeneratedToken {
  /** The token id; -1 for the final event that releases held-back text when generation ends. */
  id: number;
  /** Text released by this token: '' while a multi-byte character or a possible stop sequence is pending. */
  text: string;
  /** 0-based index among generated tokens. */
  index: number;
}

export type FinishReason = 'stop' | 'length' | 'aborted';

export interface GenerationResult {
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  /** Milliseconds to the first generated token, and in total. */
  firstTokenMs: number;
  totalMs: number;
  tokensPerSec: number;
}

/** Releases generated text while holding back whatever could still become a stop sequence. */
class StopMatcher {
  private emitted = '';
  private pending = '';
  constructor(private readonly stops: string[]) {}

  /** Adds text; returns [text to release, whether a stop sequence was hit]. */
  push(text: string): [string, boolean] {
    this.pending += text;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0) {
        const out = this.pending.slice(0, at);
        this.emitted += out;
        this.pending = '';
        return [out, true];
      }
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > hold; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    this.emitted += out;
    return [out, false];
  }

  flush(): string {
    const out = this.pending;
    this.emitted += out;
    this.pending = '';
    return out;
  }

  get text(): string {
    return this.emitted;
  }
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Logits of the token after `window` (≤ blockSize tokens), without a cache. */
function logitsUncached(model: GPT, window: number[]): Float32Array {
  const t = tf.tidy(() => {
    const idx = tf.tensor2d(Int32Array.from(window), [1, window.length], 'int32');
    const logits = model.forward(idx); // [1, T, V]
    const V = model.config.vocabSize;
    return tf.reshape(tf.slice(logits, [0, window.length - 1, 0], [1, 1, V]), [V]);
  });
  const out = t.dataSync() as Float32Array;
  t.dispose();
  return Float32Array.from(out);
}

function logitsCached(model: GPT, cache: KVCache, tokens: number[]): Float32Array {
  const idx = tf.tensor2d(Int32Array.from(tokens), [1, tokens.length], 'int32');
  const t = model.forwardCached(idx, cache);
  idx.dispose();
  const out = Float32Array.from(t.dataSync() as Float32Array);
  t.dispose();
  return out;
}

/** Logits with every token but the allowed ones at -Infinity; undefined when none is allowed. */
function maskLogits(logits: Float32Array, allowed: Iterable<number>, banned: ReadonlySet<number>): Float32Array | undefined {
  const out = new Float32Array(logits.length).fill(-Infinity);
  let any = false;
  for (const id of allowed) {
    if (id < 0 || id >= logits.length || banned.has(id)) continue;
    out[id] = logits[id]!;
    any = true;
  }
  return any ? out : undefined;
}

/**
 * Streams generated tokens after `promptTokens`. The generator's return value is the full result.
 * `onToken` is called for each token too (handy when not iterating).
 */
export async function* generate(
  model: GPT,
  tokenizer: Tokenizer,
  promptTokens: number[],
  options: GenerateOptions = {},
  onToken?: (token: GeneratedToken) => void,
): AsyncGenerator<GeneratedToken, GenerationResult, void> {
  const start = performance.now();
  const blockSize = model.config.blockSize;
  const maxTokens = options.maxTokens ?? 256;
  const rng = new Random(options.seed ?? Math.floor(Math.random() * 2 ** 31));
  const useCache = options.useCache ?? true;
  const stopIds = new Set(options.stopTokens ?? []);
  if (options.stopAtEnd !== false && tokenizer.special.end !== undefined) stopIds.add(tokenizer.special.end);
  const banned: number[] = [];
  if (!options.allowSpecial) {
    for (const id of Object.values(tokenizer.special)) if (!stopIds.has(id)) banned.push(id);
  }
  for (let id = tokenizer.vocabSize; id < model.config.vocabSize; id++) banned.push(id); // padding rows
  const bannedSet = new Set(banned);
  if (promptTokens.length === 0) throw new Error('generate needs at least one prompt token');

  const all = [...promptTokens];
  const generated: number[] = [];
  const decoder = tokenizer.streamDecoder();
  const stops = new StopMatcher((options.stop ?? []).filter((s) => s.length > 0));
  let finishReason: FinishReason = 'length';
  let hitStopSequence = false;
  let firstTokenMs = 0;
  const cache: KVCache | undefined = useCache ? model.emptyCache() : undefined;

  try {
    let logits: Float32Array | undefined;
    if (cache) logits = logitsCached(model, cache, all.slice(-blockSize));
    for (let i = 0; i < maxTokens; i++) {
      if (options.signal?.aborted) {
        finishReason = 'aborted';
        break;
      }
      if (!cache) logits = logitsUncached(model, all.slice(-blockSize));
      if (options.allowedTokens) {
        const allowed = options.allowedTokens(generated);
        if (allowed) {
          const masked = maskLogits(logits!, allowed, bannedSet);
          if (!masked) {
            finishReason = 'stop';
            break;
          }
          logits = masked;
        }
      }
      const id = sampleToken(logits!, options, rng, all, banned);
      if (i === 0) firstTokenMs = performance.now() - start;
      if (stopIds.has(id)) {
        finishReason = 'stop';
        break;
      }
      all.push(id);
      generated.push(id);
      const [text, hitStop] = stops.push(decoder.push(id));
      const token: GeneratedToken = { id, text, index: i };
      onToken?.(token);
      yield token;
      if (hitStop) {
        finishReason = 'stop';
        hitStopSequence = true;
        break;
      }
      if (i + 1 >= maxTokens) break;
      if (cache) {
        if (cache.length + 1 > blockSize) {
          // Window full: keep the newest half, re-encoded at their new positions.
          GPT.disposeCache(cache);
          logits = logitsCached(model, cache, all.slice(-Math.max(1, Math.floor(blockSize / 2))));
        } else {
          logits = logitsCached(model, cache, [id]);
        }
      }
      await nextTick();
    }
  } finally {
    if (cache) GPT.disposeCache(cache);
  }
  if (!hitStopSequence) {
    // Release what was held back (an unfinished character or a partial stop sequence).
    const [text] = stops.push(decoder.flush());
    const tail = text + stops.flush();
    if (tail) {
      const token: GeneratedToken = { id: -1, text: tail, index: generated.length };
      onToken?.(token);
      yield token;
    }
  }
  const totalMs = performance.now() - start;
  return {
    tokens: generated,
    text: stops.text,
    finishReason,
    promptTokens: promptTokens.length,
    firstTokenMs,
    totalMs,
    tokensPerSec: generated.length > 0 ? (generated.length * 1000) / totalMs : 0,
  };
}

/** Runs a generation to the end and returns its result. */
export async function generateAll(
  model: GPT,
  tokenizer: Tokenizer,
  promptTokens: number[],
  options: GenerateOptions = {},
  onToken?: (token: GeneratedToken) => void,
): Promise<GenerationResult> {
  const it = generate(model, tokenizer, promptTokens, options, onToken);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}
