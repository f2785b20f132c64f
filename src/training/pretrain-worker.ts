/** Worker-thread entry for pretrainInWorker (see worker.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { pretrain, type PretrainOptions } from './pretrain.ts';

const port = parentPort!;
const controller = new AbortController();
port.on('message', (m: { type?: string }) => {
  if (m?.type === 'abort') controller.abort();
});
const { options } = workerData as { options: PretrainOptions };
pretrain(options, {
  signal: controller.signal,
  onProgress: (ev) => port.postMessage({ type: 'progress', ev }),
  log: (line) => port.postMessage({ type: 'log', line }),
}).then(
  (result) => port.postMessage({ type: 'done', result }),
  (err: Error) => port.postMessage({ type: 'error', message: err.message, stack: err.stack }),
);
