/**
 * Greedy generation of an imported chat model as a stream of token ids, and the interface the
 * answerer talks to, which both an in-process LlamaModel (tests, tiny models) and a model held by a
 * worker thread (serving: src/model/import/worker-chat-model.ts) implement.
 *
 * One loop for both, so the worker produces exactly the ids the in-process model does: the prompt
 * in batched chunks of `prefillChunk` positions through the KV cache (an abort is seen between
 * chunks), then one token at a time; `pause()` runs between chunks and tokens (the event loop's
 * turn in-process, the worker's message queue in the worker).
 */
import { argmax, type LlamaModel } from './llama.ts';

/** Positions run per prefill pass: an abort waits for at most one chunk. */
export const PREFILL_CHUNK = 128;

export interface TokenStreamOptions {
  /** Most ids generated (the caller keeps it within the context). */
  maxTokens: number;
  /** Ids that end the answer; the stop id is not returned. */
  stop: Iterable<number>;
  signal?: AbortSignal;
}

/** An imported chat model as the answerer uses it: the context's length and greedy token ids after a prompt. */
export interface TokenGenerator {
  readonly config: { readonly maxPositions: number };
  stream(ids: number[], options: TokenStreamOptions): AsyncIterable<number>;
}

export type ForwardModel = Pick<LlamaModel, 'forward' | 'newCache' | 'config'>;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Greedy ids after `ids`: stops at a stop id, after `maxTokens` ids, or when `signal` aborts
 * (checked after each pause: between prefill chunks and between tokens).
 */
export async function* greedyIds(
  model: ForwardModel,
  ids: number[],
  options: TokenStreamOptions & { prefillChunk?: number; pause?: () => Promise<void> },
): AsyncGenerator<number> {
  const limit = options.maxTokens;
  const signal = options.signal;
  if (limit <= 0 || ids.length === 0 || signal?.aborted) return;
  const stop = new Set(options.stop);
  const pause = options.pause ?? nextTurn;
  const chunk = Math.max(1, options.prefillChunk ?? PREFILL_CHUNK);
  const cache = model.newCache(ids.length + limit);
  let logits: Float32Array | undefined;
  for (let at = 0; at < ids.length; at += chunk) {
    if (at > 0) {
      await pause();
      if (signal?.aborted) return;
    }
    logits = model.forward(ids.slice(at, at + chunk), cache, { lastOnly: true });
  }
  for (let produced = 0; produced < limit; ) {
    const next = argmax(logits!);
    if (stop.has(next)) return;
    produced += 1;
    yield next;
    if (produced >= limit) return;
    await pause();
    if (signal?.aborted) return;
    logits = model.forward([next], cache, { lastOnly: true });
  }
}

/**
 * An in-process model as a TokenGenerator (the forward runs on the caller's thread; the prompt in
 * one pass unless `prefillChunk` says otherwise).
 */
export function inProcessGenerator(model: ForwardModel, options: { prefillChunk?: number } = {}): TokenGenerator {
  return {
    config: model.config,
    stream: (ids, streamOptions) => greedyIds(model, ids, { ...streamOptions, prefillChunk: options.prefillChunk ?? Number.POSITIVE_INFINITY }),
  };
}

export function isTokenGenerator(model: ForwardModel | TokenGenerator): model is TokenGenerator {
  return typeof (model as Partial<TokenGenerator>).stream === 'function';
}

/**
 * A chat model held outside this thread's own forward (a worker thread, llama.cpp): served one
 * request at a time; retire() ends it once the requests already queued have finished, close() now.
 */
export interface HeldChatModel extends TokenGenerator {
  /** Resolves once it has ended. */
  readonly exited: Promise<unknown>;
  retire(graceMs?: number): void;
  close(): Promise<void>;
}

/**
 * Requests served one at a time, in arrival order: `take` waits for the turn (a request aborted
 * while it waits leaves the queue: `undefined`), and returns the function that passes it on.
 */
export class TurnQueue {
  private tail: Promise<void> = Promise.resolve();

  async take(signal?: AbortSignal): Promise<(() => void) | undefined> {
    const turn = this.tail;
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    this.tail = turn.then(() => mine);
    if (signal && !signal.aborted) {
      let onAbort!: () => void;
      const aborted = new Promise<void>((resolve) => signal.addEventListener('abort', (onAbort = () => resolve()), { once: true }));
      await Promise.race([turn, aborted]);
      signal.removeEventListener('abort', onAbort);
    } else await turn;
    if (signal?.aborted) {
      release();
      return undefined;
    }
    return release;
  }

  /** Resolves once every request queued so far has finished. */
  idle(): Promise<void> {
    return this.tail;
  }

  /** Calls `close` once the requests already queued have finished, or `graceMs` later at the latest. */
  closeWhenIdle(close: () => Promise<void>, graceMs: number): void {
    const timer = setTimeout(() => void close(), graceMs);
    timer.unref();
    void this.idle().then(() => {
      clearTimeout(timer);
      return close();
    });
  }
}
