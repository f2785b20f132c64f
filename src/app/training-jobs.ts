/**
 * `teamllm train`: the job queue as the terminal drives it, on a runtime started with
 * `startJobs`. Every start is audited as when an admin starts it from the chat.
 */
import { ChatTrainingService } from '../training/chat-training-service.ts';
import { likedPassages, votedAnswers } from '../training/feedback-datasets.ts';
import { formatJob } from '../training/jobs/job-format.ts';
import type { JobProgress } from '../core/index.ts';
import type { Runtime } from './runtime.ts';

export type { JobProgress } from '../core/index.ts';
export { formatDuration } from '../training/jobs/job-format.ts';

/** The queue's state as `/train status` tells it in the chat. */
export function trainingStatus(runtime: Runtime): Promise<string> {
  return new ChatTrainingService(runtime.jobs, runtime.store, runtime.logger).status();
}

/**
 * Trains the retrieval encoder in this process on the documents and on the questions people liked
 * the answers to (votes, training/feedback-datasets.ts); it re-embeds this home's Chroma collections.
 */
export async function trainEmbeddingsHere(runtime: Runtime, actorId: string, onProgress: (p: JobProgress) => void) {
  const asked = likedPassages(await votedAnswers(runtime.store));
  const trained = await runtime.knowledge.trainEmbeddings({ asked, onProgress: (p) => onProgress({ stage: 'encoder', step: p.step, totalSteps: p.steps, loss: p.loss }) });
  await runtime.store.audit({ actor: actorId, action: 'train', detail: { kind: 'embeddings', encoder: trained.info.id, likedQuestions: trained.asked } });
  return { encoder: trained.info.id, reembedded: trained.reembedded, likedQuestions: trained.asked };
}

/** Queues the latest stopped or interrupted job that nothing resumed yet; undefined when there is none. */
export async function resumeLastJob(runtime: Runtime, actorId: string) {
  const jobs = await runtime.store.listJobs(50);
  const resumed = new Set(jobs.flatMap((j) => (j.resumes ? [j.resumes] : [])));
  const last = jobs.find((j) => (j.status === 'interrupted' || j.status === 'stopped') && !resumed.has(j.id));
  if (!last) return undefined;
  return { job: await runtime.jobs.enqueue(last.kind, last.params, actorId, last), resumes: last };
}

export async function queueTrainingJob(runtime: Runtime, stage: string, params: Record<string, string>, actorId: string) {
  const job = await runtime.jobs.enqueue(stage, params, actorId);
  await runtime.store.audit({ actor: actorId, action: 'train', detail: { job: job.id, kind: stage, params: job.params } });
  return job;
}

/** A finished job as the terminal shows it: the summary, its loss curves' file, whether it succeeded. */
export async function finishedJob(runtime: Runtime, id: number) {
  const done = (await runtime.store.getJob(id))!;
  const files = done.result?.files as Record<string, string> | undefined;
  return {
    text: formatJob(done),
    ...(typeof files?.lossChart === 'string' ? { lossChart: files.lossChart } : {}),
    succeeded: done.status === 'succeeded',
  };
}
