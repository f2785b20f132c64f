/**
 * `teamllm serve`'s first-start training, off the main thread: runs runQuickstart in this worker
 * and reports every stage, progress step and log line to the server over the message port, so
 * the server keeps answering (retrieval-only) and shows the progress while the model trains.
 */
import { constants, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from './logger.ts';
import { runQuickstart, type QuickstartReporter } from './quickstart.ts';
import type { QuickstartWorkerInput, QuickstartWorkerMessage } from './background-quickstart.ts';

const port = parentPort!;
const input = workerData as QuickstartWorkerInput;
const controller = new AbortController();
const send = (message: QuickstartWorkerMessage) => port.postMessage(message);

// The server's main thread answers first: on Linux the nice value is per thread, so this lowers
// only this worker and the native compute threads it starts (below normal, not idle, so a busy
// machine does not starve the first start).
try {
  setPriority(constants.priority.PRIORITY_BELOW_NORMAL);
} catch {
  // Not permitted here: the quickstart runs at normal priority.
}

port.on('message', (message: { type: string }) => {
  if (message.type === 'stop') controller.abort(new Error('stopped'));
});

const reporter: QuickstartReporter = {
  stage: (name, cached) => send({ type: 'stage', name, cached }),
  progress: (progress) => send({ type: 'progress', progress }),
  done: (name, line) => send({ type: 'done', name, line }),
  log: (line) => send({ type: 'log', line }),
};

try {
  const outcome = await runQuickstart({
    config: input.config,
    logger: createLogger(input.logLevel),
    reporter,
    signal: controller.signal,
    ...(input.recipe ? { recipe: input.recipe } : {}),
    ...(input.inputs ? { inputs: input.inputs } : {}),
  });
  send({ type: 'finished', outcome });
} catch (err) {
  send({ type: 'failed', error: err instanceof Error ? err.message : String(err), stopped: controller.signal.aborted });
}
port.close();
