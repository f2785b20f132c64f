import { constants, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { RunStage, WorkerInput, WorkerMessage } from './stage.ts';
import { stageServices } from './stage-services.ts';

/** Runs one stage in this worker thread and reports to the job runner over the message port. */
const port = parentPort!;
const input = workerData as WorkerInput;
const controller = new AbortController();
const send = (message: WorkerMessage) => port.postMessage(message);

// Training yields the CPU to answering. On Linux the nice value belongs to a thread, so this lowers
// only this worker thread and the native compute threads it starts, not the bot's main thread.
try {
  setPriority(constants.priority.PRIORITY_LOW);
} catch {
  // Not permitted or not supported here: the job runs at normal priority.
}

port.on('message', (message: { type: string }) => {
  if (message.type === 'stop') controller.abort(new Error('stopped by an admin'));
});

try {
  const { runStage } = (await import(input.stageModule)) as { runStage: RunStage };
  const result = await runStage({
    params: input.params,
    home: input.home,
    ...stageServices(input.home, input.databaseUrl),
    runDir: input.runDir,
    resume: input.resume,
    signal: controller.signal,
    progress: (progress) => send({ type: 'progress', progress }),
    log: (message) => send({ type: 'log', message }),
  });
  send(controller.signal.aborted ? { type: 'failed', error: 'stopped by an admin', stopped: true } : { type: 'done', result });
} catch (err) {
  send({ type: 'failed', error: err instanceof Error ? err.message : String(err), stopped: controller.signal.aborted });
}
port.close();
