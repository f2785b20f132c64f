/**
 * The worker thread that holds an imported chat model (started by worker-chat-model.ts): loads the
 * version folder as loadChatModelVersion does, says 'ready' (or 'failed'), then serves generate
 * requests one at a time, streaming each id back; 'cancel' stops the request between prefill chunks
 * or tokens. Never throws out: a failed request is an 'error' message and the worker keeps serving.
 */
import { constants, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { loadChatModelVersion } from './chat-manifest.ts';
import { greedyIds, type ForwardModel } from './chat-generation.ts';
import type { ChatWorkerInput, ChatWorkerReply, ChatWorkerRequest } from './worker-chat-model.ts';

const port = parentPort!;
const input = workerData as ChatWorkerInput;
const send = (message: ChatWorkerReply) => port.postMessage(message);

// The bot's main thread answers first (health checks, signatures, votes): on Linux the nice value
// is per thread, so this lowers only this worker and the native compute threads it starts.
try {
  if (input.lowerPriority !== false) setPriority(constants.priority.PRIORITY_BELOW_NORMAL);
} catch {
  // Not permitted here: the model runs at normal priority.
}

/** For tests: blocks this thread for `ms` (a slow forward pass, as a large model's prefill is). */
function blockFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

let model: ForwardModel | undefined;
try {
  const loaded = loadChatModelVersion(input.dir).model;
  const delay = input.forwardDelayMs ?? 0;
  model =
    delay > 0
      ? { config: loaded.config, newCache: (capacity) => loaded.newCache(capacity), forward: (ids, cache, options) => (blockFor(delay), loaded.forward(ids, cache, options)) }
      : loaded;
  send({ type: 'ready', maxPositions: loaded.config.maxPositions });
} catch (err) {
  // Reported, not thrown: the main thread falls back (retrieval-only or an earlier version) and ends this worker.
  send({ type: 'failed', error: err instanceof Error ? err.message : String(err) });
}

const waiting: Extract<ChatWorkerRequest, { type: 'generate' }>[] = [];
const cancelled = new Set<number>();
let busy = false;

async function serve(): Promise<void> {
  if (busy) return;
  busy = true;
  try {
    for (let request = waiting.shift(); request; request = waiting.shift()) {
      const controller = new AbortController();
      const { id } = request;
      if (cancelled.delete(id)) {
        send({ type: 'end', id });
        continue;
      }
      current = { id, controller };
      try {
        const ids = greedyIds(model!, request.ids, {
          maxTokens: request.maxTokens,
          stop: request.stop,
          signal: controller.signal,
          ...(input.prefillChunk ? { prefillChunk: input.prefillChunk } : {}),
        });
        for await (const token of ids) send({ type: 'token', id, token });
        send({ type: 'end', id });
      } catch (err) {
        send({ type: 'error', id, error: err instanceof Error ? err.message : String(err) });
      } finally {
        current = undefined;
        cancelled.delete(id);
      }
    }
  } finally {
    busy = false;
  }
}

let current: { id: number; controller: AbortController } | undefined;

if (model) port.on('message', (message: ChatWorkerRequest) => {
  if (message.type === 'generate') {
    waiting.push(message);
    void serve();
  } else if (message.type === 'cancel') {
    if (current?.id === message.id) current.controller.abort();
    else if (waiting.some((w) => w.id === message.id)) cancelled.add(message.id);
  }
});
