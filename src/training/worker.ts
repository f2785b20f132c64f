/**
 * Pretraining off the main thread: the same `pretrain`, in a worker thread, with progress events,
 * log lines and cancellation passed across. A server or bot stays responsive while a model trains.
 */
import { Worker } from 'node:worker_threads';
import type { PretrainHooks, PretrainOptions, PretrainResult } from './pretrain.ts';

type Message =
  | { type: 'progress'; ev: Parameters<NonNullable<PretrainHooks['onProgress']>>[0] }
  | { type: 'log'; line: string }
  | { type: 'done'; result: PretrainResult }
  | { type: 'error'; message: string; stack?: string };

export function pretrainInWorker(options: PretrainOptions, hooks: PretrainHooks = {}): Promise<PretrainResult> {
  return new Promise((resolve, reject) => {
    // The .mjs bootstrap registers tsx inside the worker, then loads pretrain-worker.ts.
    const worker = new Worker(new URL('./pretrain-worker.mjs', import.meta.url), {
      workerData: { options },
      env: process.env,
    });
    let settled = false;
    const onAbort = () => worker.postMessage({ type: 'abort' });
    if (hooks.signal?.aborted) onAbort();
    else hooks.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      hooks.signal?.removeEventListener('abort', onAbort);
      fn();
      void worker.terminate();
    };
    worker.on('message', (m: Message) => {
      if (m.type === 'progress') hooks.onProgress?.(m.ev);
      else if (m.type === 'log') hooks.log?.(m.line);
      else if (m.type === 'done') finish(() => resolve(m.result));
      else if (m.type === 'error') {
        const err = new Error(m.message);
        if (m.stack) err.stack = m.stack;
        finish(() => reject(err));
      }
    });
    worker.on('error', (err) => finish(() => reject(err)));
    worker.on('exit', (code) => finish(() => reject(new Error(`pretrain worker exited with code ${code}`))));
  });
}
