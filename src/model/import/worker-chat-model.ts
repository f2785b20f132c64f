/**
 * An imported chat model held by a worker thread (chat-worker.ts), so that its forward passes —
 * seconds of prefill for a long prompt on a 0.5B–7B model — never hold the bot's event loop
 * (health checks, platform signatures, votes and other answers go on meanwhile).
 *
 * The worker loads the version folder (as loadChatModelVersion does) and serves one request at a
 * time; concurrent askers wait their turn in arrival order (a request aborted while it waits leaves
 * the queue). Each request streams its greedy ids back as they are chosen; its abort signal sends
 * 'cancel', which stops the worker between prefill chunks or tokens, and the next request is served.
 * A request that fails is an error thrown to its caller only; a worker that dies fails the request in
 * flight and every later one. close() terminates the thread; retire() does once the requests
 * already queued have finished (a promotion: answers in flight finish on the old model).
 */
import { Worker } from 'node:worker_threads';
import { TurnQueue, type HeldChatModel, type TokenStreamOptions } from './chat-generation.ts';

export interface ChatWorkerInput {
  /** The version folder (`<home>/models/vN`, with chat-model.json). */
  dir: string;
  /** Positions per prefill pass (default PREFILL_CHUNK). */
  prefillChunk?: number;
  /** For tests: each forward pass first blocks the worker's thread this long (a large model's speed). */
  forwardDelayMs?: number;
  /** false: keep the worker at normal priority (default: below the main thread's). */
  lowerPriority?: boolean;
}

export type ChatWorkerRequest = { type: 'generate'; id: number; ids: number[]; maxTokens: number; stop: number[] } | { type: 'cancel'; id: number };

export type ChatWorkerReply =
  | { type: 'ready'; maxPositions: number }
  | { type: 'failed'; error: string }
  | { type: 'token'; id: number; token: number }
  | { type: 'end'; id: number }
  | { type: 'error'; id: number; error: string };

const BOOTSTRAP = new URL('./chat-worker-bootstrap.mjs', import.meta.url);

/** The ids of one request as they arrive: a tiny async queue. */
class Arrivals {
  private readonly items: number[] = [];
  private wake: (() => void) | undefined;
  ended = false;
  error: Error | undefined;

  push(token: number): void {
    this.items.push(token);
    this.notify();
  }

  end(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** The next id, or undefined once the request has ended (throws its error). */
  async next(): Promise<number | undefined> {
    for (;;) {
      if (this.items.length) return this.items.shift()!;
      if (this.ended) {
        if (this.error) throw this.error;
        return undefined;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

export class WorkerChatModel implements HeldChatModel {
  private nextId = 0;
  private readonly queue = new TurnQueue();
  private current: { id: number; arrivals: Arrivals } | undefined;
  private stopped: Error | undefined;
  /** Resolves with the thread's exit code once it has ended. */
  readonly exited: Promise<number>;

  private constructor(
    private readonly worker: Worker,
    readonly config: { readonly maxPositions: number },
    exited: Promise<number>,
  ) {
    this.exited = exited;
    worker.on('message', (message: ChatWorkerReply) => {
      const current = this.current;
      if (!current || !('id' in message) || message.id !== current.id) return;
      if (message.type === 'token') current.arrivals.push(message.token);
      else if (message.type === 'end') current.arrivals.end();
      else if (message.type === 'error') current.arrivals.end(new Error(`the chat model failed: ${message.error}`));
    });
    const die = (err: Error) => {
      this.stopped ??= err;
      this.current?.arrivals.end(this.stopped);
    };
    worker.on('error', (err) => die(new Error(`the chat model's worker thread failed: ${err.message}`)));
    void exited.then((code) => die(new Error(`the chat model's worker thread ended (exit code ${code})`)));
  }

  /** Starts a worker on a version folder; resolves once the weights are loaded, rejects with the loading error. */
  static start(input: ChatWorkerInput): Promise<WorkerChatModel> {
    const worker = new Worker(BOOTSTRAP, { workerData: input });
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    return new Promise<WorkerChatModel>((resolve, reject) => {
      const fail = (err: Error) => {
        worker.off('message', onMessage);
        void worker.terminate();
        reject(err);
      };
      const onMessage = (message: ChatWorkerReply) => {
        if (message.type === 'ready') {
          worker.off('message', onMessage);
          worker.off('error', fail);
          resolve(new WorkerChatModel(worker, { maxPositions: message.maxPositions }, exited));
        } else if (message.type === 'failed') fail(new Error(message.error));
      };
      worker.on('message', onMessage);
      worker.once('error', fail);
      void exited.then((code) => fail(new Error(`the chat model's worker thread ended before loading (exit code ${code})`)));
    });
  }

  async *stream(ids: number[], options: TokenStreamOptions): AsyncGenerator<number> {
    const signal = options.signal;
    // Wait for the requests before this one; an abort meanwhile leaves the queue.
    const release = await this.queue.take(signal);
    if (!release) return;
    try {
      if (options.maxTokens <= 0 || ids.length === 0) return;
      if (this.stopped) throw this.stopped;
      const id = ++this.nextId;
      const arrivals = new Arrivals();
      this.current = { id, arrivals };
      const cancel = () => this.worker.postMessage({ type: 'cancel', id } satisfies ChatWorkerRequest);
      signal?.addEventListener('abort', cancel, { once: true });
      this.worker.postMessage({ type: 'generate', id, ids, maxTokens: options.maxTokens, stop: [...options.stop] } satisfies ChatWorkerRequest);
      try {
        for (let token = await arrivals.next(); token !== undefined; token = await arrivals.next()) {
          if (signal?.aborted) return;
          yield token;
        }
      } finally {
        signal?.removeEventListener('abort', cancel);
        if (!arrivals.ended) {
          // Aborted, or the caller stopped reading: the worker stops, and says so before the next request goes.
          cancel();
          try {
            while ((await arrivals.next()) !== undefined);
          } catch {
            // the worker failed or was closed: nothing more to wait for
          }
        }
        if (this.current?.id === id) this.current = undefined;
      }
    } finally {
      release();
    }
  }

  /** Terminates the worker now: a request in flight fails, later ones throw. */
  async close(): Promise<void> {
    this.stopped ??= new Error("the chat model's worker thread was closed");
    this.current?.arrivals.end(this.stopped);
    await this.worker.terminate();
  }

  /** Terminates the worker once the requests already queued have finished (at most `graceMs` later). */
  retire(graceMs = 120_000): void {
    this.queue.closeWhenIdle(() => this.close(), graceMs);
  }
}
