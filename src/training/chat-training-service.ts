import { readFile, realpath } from 'node:fs/promises';
import { basename, join, sep } from 'node:path';
import type { Actor, BotStore, JobRecord, JobStore, Logger, ReplyTarget, TrainingService } from '../core/index.ts';
import { StreamUpdater } from '../core/index.ts';
import { formatJob } from './jobs/job-format.ts';
import type { JobRunner } from './jobs/job-runner.ts';

const PARAM = /^[a-zA-Z][\w.-]{0,40}$/;

/**
 * /train from the chat: queues jobs on the JobRunner, keeps each job's message in the admin's
 * thread updated as it runs, and records who did what in the audit log.
 */
export interface ChatTrainingOptions {
  /** Pause between progress edits of a job message: platforms rate-limit message updates. */
  updateEveryMs?: number;
  /** TEAMLLM_PUBLIC_URL: where chat links to the admin page point (targets that cannot take images). */
  publicUrl?: string;
}

/**
 * The chart of a finished job: the PNG its stage declared as `files.lossChart` (loss.png,
 * reward.png, rlhf.png...), else `loss.png` — and only a file directly inside the job's own run
 * folder (symlinks resolved), so a job record can never point the admin page or an upload elsewhere.
 */
export async function jobLossChart(job: JobRecord): Promise<string | undefined> {
  if (!job.runDir) return undefined;
  const files = (job.result as { files?: Record<string, unknown> } | undefined)?.files;
  const declared = typeof files?.lossChart === 'string' && files.lossChart.endsWith('.png') ? basename(files.lossChart) : 'loss.png';
  try {
    const dir = await realpath(job.runDir);
    const file = await realpath(join(dir, declared));
    return file === join(dir, declared) && file.startsWith(dir + sep) ? file : undefined;
  } catch {
    return undefined;
  }
}

export class ChatTrainingService implements TrainingService {
  private readonly updateEveryMs: number;

  constructor(
    private readonly runner: JobRunner,
    private readonly store: BotStore & JobStore,
    private readonly logger: Logger,
    private readonly options: ChatTrainingOptions = {},
  ) {
    this.updateEveryMs = options.updateEveryMs ?? 3000;
  }

  async start(kind: string, params: Record<string, string>, actor: Actor, progress?: ReplyTarget): Promise<string> {
    if (!this.runner.kinds.includes(kind)) return `There is no "${kind}" training here. Available: ${this.runner.kinds.join(', ')}.`;
    for (const [key, value] of Object.entries(params)) {
      if (!PARAM.test(key) || value.length > 200) return `The parameter "${key}" is not valid (key=value, letters and digits).`;
    }
    const ahead = this.runner.current;
    const job = await this.runner.enqueue(kind, params, actor.id);
    await this.store.audit({ actor: actor.id, action: 'train', detail: { job: job.id, kind, params } });
    if (progress) await this.follow(job, progress);
    return ahead
      ? `Queued job #${job.id} (${kind}) behind job #${ahead.id} (${ahead.kind}).`
      : `Started job #${job.id} (${kind}). I keep its message up to date; /train stop stops it, keeping the last checkpoint.`;
  }

  async resume(actor: Actor, progress?: ReplyTarget): Promise<string> {
    const jobs = await this.store.listJobs(50);
    const resumedAlready = new Set(jobs.flatMap((j) => (j.resumes ? [j.resumes] : [])));
    const last = jobs.find((j) => (j.status === 'interrupted' || j.status === 'stopped') && !resumedAlready.has(j.id));
    if (!last) return 'There is no stopped or interrupted job to resume.';
    const job = await this.runner.enqueue(last.kind, last.params, actor.id, last);
    await this.store.audit({ actor: actor.id, action: 'train-resume', detail: { job: job.id, resumes: last.id } });
    if (progress) await this.follow(job, progress);
    return `Resuming job #${last.id} (${last.kind}) as job #${job.id} from its last checkpoint.`;
  }

  async status(): Promise<string> {
    const jobs = await this.store.listJobs(6);
    if (jobs.length === 0) return `No training jobs yet. Start one with /train ${this.runner.kinds.join('|')}.`;
    const current = this.runner.current;
    const queued = jobs.filter((j) => j.status === 'queued').length;
    return [
      current ? formatJob(current) : 'Nothing is training right now.',
      ...(queued ? [`${queued} job${queued > 1 ? 's' : ''} queued.`] : []),
      '',
      'Recent jobs:',
      ...jobs.filter((j) => j.id !== current?.id).map((j) => `• #${j.id} ${j.kind} — ${j.status}${j.error ? ` (${j.error})` : ''}`),
    ].join('\n');
  }

  async stop(actor: Actor): Promise<string> {
    const current = this.runner.current;
    if (!current) return 'Nothing is training right now.';
    await this.store.audit({ actor: actor.id, action: 'train-stop', detail: { job: current.id } });
    const stopped = await this.runner.stop();
    return `Stopped job #${current.id} (${current.kind}): ${stopped?.status ?? 'stopped'}. Its last checkpoint is kept; /train resume continues it.`;
  }

  /** Posts the job's message and edits it on every progress report until the job ends. */
  private async follow(job: JobRecord, target: ReplyTarget): Promise<void> {
    const posted = await target.post({ phase: 'notice', text: formatJob(job) });
    const updater = new StreamUpdater(posted, this.updateEveryMs, this.logger);
    // Where a sent message cannot be edited (WeCom), every update would be a new message: only the first and the last.
    const onProgress = (j: JobRecord) => {
      if (j.id === job.id && target.updatable !== false) updater.push({ phase: 'notice', text: formatJob(j) });
    };
    let finished = false;
    const onFinished = (j: JobRecord) => {
      if (j.id !== job.id || finished) return;
      finished = true;
      this.runner.off('progress', onProgress);
      this.runner.off('started', onProgress);
      this.runner.off('finished', onFinished);
      void this.finish(j, target, updater).catch((err: unknown) => this.logger.warn({ err, job: j.id }, 'could not post the job result'));
    };
    this.runner.on('started', onProgress);
    this.runner.on('progress', onProgress);
    this.runner.on('finished', onFinished);
    // A short job may have ended before we subscribed.
    const now = await this.store.getJob(job.id);
    if (now && now.status !== 'queued' && now.status !== 'running') onFinished(now);
  }

  /** Where the admin page shows this job's curves, when the server has a public address. */
  private chartLink(job: JobRecord): string {
    return this.options.publicUrl
      ? `Loss curves: ${this.options.publicUrl}/admin/jobs/${job.id}/loss.png (admin page: ${this.options.publicUrl}/admin)`
      : 'Loss curves: on the admin page (/admin on this server; set TEAMLLM_PUBLIC_URL to get a link here).';
  }

  /** The final message (evaluation, gate, promotion), then the loss curves as an image or a link. */
  private async finish(job: JobRecord, target: ReplyTarget, updater: StreamUpdater): Promise<void> {
    const chart = await jobLossChart(job);
    const canUpload = chart !== undefined && typeof target.uploadImage === 'function';
    const text = formatJob(job) + (chart && !canUpload ? `\n${this.chartLink(job)}` : '');
    await updater.finish({ phase: 'notice', text });
    if (!canUpload) return;
    try {
      await target.uploadImage!({
        data: await readFile(chart),
        filename: `job-${job.id}-${job.kind}-loss.png`,
        title: `Job #${job.id} (${job.kind}): loss curves`,
        altText: `Training and validation loss of job #${job.id} (${job.kind})`,
      });
    } catch (err) {
      this.logger.warn({ err, job: job.id }, 'could not upload the loss chart; linking to it instead');
      await target.post({ phase: 'notice', text: this.chartLink(job) });
    }
  }
}
