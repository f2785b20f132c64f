import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { isJobLeaseStore, type JobProgress, type JobRecord, type JobStore, type Logger } from '../../core/index.ts';
import type { WorkerInput, WorkerMessage } from './stage.ts';

export interface JobRunnerOptions {
  store: JobStore;
  home: string;
  /** Job kind -> file URL of a module exporting `runStage`. */
  stages: Record<string, string>;
  logger: Logger;
  /** How often progress is written to the store (the chat reads it from events, not the store). */
  persistEveryMs?: number;
  /** PostgreSQL's URL when the store is shared (TEAMLLM_DATABASE_URL): stages open it themselves. */
  databaseUrl?: string;
  /**
   * Where job run folders (checkpoints) go; default `<home>/runs`. Several processes sharing one
   * database need a folder all of them reach (TEAMLLM_MODELS_DIR/runs), so one can resume another's job.
   */
  runsDir?: string;
  /** Shared store only: this process's name on the leases it holds (default host:pid:random). */
  owner?: string;
  /** Shared store only: how long a lease lasts without renewal (default 60 s; renewed every third of it). */
  leaseMs?: number;
  /** Shared store only: how often queued jobs and expired leases are looked for (default 5 s, or half the lease when that is shorter). */
  pollMs?: number;
}

export interface JobEvents {
  progress: [job: JobRecord, progress: JobProgress];
  finished: [job: JobRecord];
  started: [job: JobRecord];
}

/**
 * Runs in the main process when a job's stage has returned, before the job is saved and announced:
 * what it returns is merged into the job's result (the promotion decision, for instance).
 */
export type JobFinalizer = (job: JobRecord) => Promise<Record<string, unknown> | undefined>;

const BOOTSTRAP = new URL('./worker-bootstrap.mjs', import.meta.url);

/**
 * One queue of training jobs, persisted in the store, run one at a time in a worker thread so
 * the bot keeps answering while a model trains.
 */
export class JobRunner extends EventEmitter<JobEvents> {
  private running: { job: JobRecord; worker: Worker; done: Promise<void> } | undefined;
  private pumping = false;
  private closed = false;
  private finalizers: JobFinalizer[] = [];
  private poller: NodeJS.Timeout | undefined;
  /** Jobs queued through this runner (a shared store may run them in another process). */
  private readonly enqueued = new Set<number>();
  /** This process's name on job leases (a store shared by several processes). */
  readonly owner: string;

  constructor(private readonly options: JobRunnerOptions) {
    super();
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  private get leaseMs(): number {
    return this.options.leaseMs ?? 60_000;
  }

  get kinds(): string[] {
    return Object.keys(this.options.stages);
  }

  get current(): JobRecord | undefined {
    return this.running?.job;
  }

  /** Adds a step run after every successful job, before 'finished' is emitted. */
  onSucceeded(finalizer: JobFinalizer): void {
    this.finalizers.push(finalizer);
  }

  /** Marks jobs that a dead process left "running" as interrupted, then starts any queued ones. */
  async init(): Promise<number> {
    const store = this.options.store;
    const interrupted = await store.interruptRunningJobs();
    if (interrupted > 0) this.options.logger.warn({ interrupted }, 'training jobs were interrupted by a restart; /train resume continues them');
    if (isJobLeaseStore(store)) {
      // Shared by several processes: any of them runs a queued job (exactly one, by lease), and
      // a job whose process stopped renewing its lease (died) is resumed here from its checkpoint.
      const poll = async () => {
        if (this.closed) return;
        try {
          for (const { interrupted: dead, resumed } of await store.takeOverExpiredJobs()) {
            this.options.logger.warn({ job: dead.id, resumedAs: resumed.id }, 'a training job lost its process (lease expired): resuming it from its checkpoint');
          }
        } catch (err) {
          this.options.logger.warn({ err }, 'could not look for expired job leases');
        }
        await this.pump();
      };
      this.poller = setInterval(() => void poll(), this.options.pollMs ?? Math.min(5000, Math.max(50, Math.floor(this.leaseMs / 2))));
      this.poller.unref();
      await poll();
      return interrupted;
    }
    void this.pump();
    return interrupted;
  }

  async enqueue(kind: string, params: Record<string, string>, requestedBy: string, resumes?: JobRecord): Promise<JobRecord> {
    if (!(kind in this.options.stages)) throw new Error(`unknown training job "${kind}" (available: ${this.kinds.join(', ')})`);
    const job = await this.options.store.createJob({
      kind,
      params,
      requestedBy,
      ...(resumes?.runDir ? { runDir: resumes.runDir } : {}),
      ...(resumes ? { resumes: resumes.id } : {}),
    });
    this.enqueued.add(job.id);
    void this.pump();
    return job;
  }

  /** Asks the running job to stop; it keeps its last checkpoint. Resolves when it has stopped. */
  async stop(): Promise<JobRecord | undefined> {
    const running = this.running;
    if (!running) return undefined;
    running.worker.postMessage({ type: 'stop' });
    await running.done;
    return this.options.store.getJob(running.job.id);
  }

  /** Waits for the queue to drain (tests and the CLI use this). */
  async idle(): Promise<void> {
    for (;;) {
      while (this.running || this.pumping) {
        if (this.running) await this.running.done;
        else await new Promise((r) => setTimeout(r, 10));
      }
      // A shared store: a job queued here may be running in another process; wait for it there.
      if (!isJobLeaseStore(this.options.store) || this.enqueued.size === 0 || this.closed) return;
      for (const id of [...this.enqueued]) {
        const job = await this.options.store.getJob(id);
        if (job && ['queued', 'running'].includes(job.status)) continue;
        this.enqueued.delete(id);
        // Taken over after its process died: follow the job that resumes it.
        const next = job?.status === 'interrupted' ? (await this.options.store.listJobs(200)).find((j) => j.resumes === id) : undefined;
        if (next) this.enqueued.add(next.id);
      }
      if (this.enqueued.size === 0) return;
      await new Promise((r) => setTimeout(r, 200));
      void this.pump();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.poller) clearInterval(this.poller);
    const running = this.running;
    if (running) {
      running.worker.postMessage({ type: 'stop' });
      // A stage that ignores the stop request is terminated; its job stays resumable.
      const timeout = setTimeout(() => void running.worker.terminate(), 30_000);
      await running.done;
      clearTimeout(timeout);
    }
  }

  private async pump(): Promise<void> {
    if (this.pumping || this.running || this.closed) return;
    this.pumping = true;
    try {
      const store = this.options.store;
      if (isJobLeaseStore(store)) {
        // Exactly one process gets each queued job (SKIP LOCKED in PgStore.claimNextJob).
        const next = await store.claimNextJob(this.owner, this.leaseMs, this.kinds);
        if (next && !this.closed) this.start(next);
        else if (next) await store.updateJob(next.id, { status: 'queued' }).catch(() => undefined);
        return;
      }
      const queued = (await store.listJobs(1000)).filter((j) => j.status === 'queued').sort((a, b) => a.id - b.id);
      const next = queued[0];
      if (next) this.start(next);
    } catch (err) {
      this.options.logger.warn({ err }, 'could not look for queued training jobs');
    } finally {
      this.pumping = false;
    }
  }

  private start(queued: JobRecord): void {
    const { store, logger } = this.options;
    const runDir = queued.runDir ?? join(this.options.runsDir ?? join(this.options.home, 'runs'), `${queued.id}-${queued.kind}`);
    const resume = queued.resumes !== undefined && existsSync(runDir);
    mkdirSync(runDir, { recursive: true });
    const input: WorkerInput = {
      stageModule: this.options.stages[queued.kind]!,
      params: queued.params,
      home: this.options.home,
      runDir,
      resume,
      ...(this.options.databaseUrl ? { databaseUrl: this.options.databaseUrl } : {}),
    };
    const worker = new Worker(BOOTSTRAP, { workerData: input, stdout: false, stderr: false });
    let job: JobRecord = { ...queued, status: 'running', startedAt: Date.now(), runDir };
    let outcome: WorkerMessage | undefined;
    let lastPersisted = 0;
    const log = logger.child({ job: job.id, kind: job.kind });
    // A shared store: renew the lease while the job runs; a lost lease (this process was taken
    // for dead, another resumed the job) stops this copy of it.
    let renewal: NodeJS.Timeout | undefined;
    let leaseLost = false;
    if (isJobLeaseStore(store)) {
      renewal = setInterval(() => {
        void store.renewJobLease(job.id, this.owner, this.leaseMs).then(
          (held) => {
            if (held) return;
            log.error({ owner: this.owner }, 'lost the training job lease (another process took the job over): stopping this copy');
            leaseLost = true;
            void worker.terminate();
          },
          (err: unknown) => log.warn({ err }, 'could not renew the training job lease'),
        );
      }, Math.max(50, Math.floor(this.leaseMs / 3)));
      renewal.unref();
    }

    const done = new Promise<void>((resolve) => {
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'progress') {
          job = { ...job, progress: message.progress };
          if (this.running) this.running.job = job;
          this.emit('progress', job, message.progress);
          if (Date.now() - lastPersisted > (this.options.persistEveryMs ?? 2000)) {
            lastPersisted = Date.now();
            void store.updateJob(job.id, { progress: message.progress }).catch((err: unknown) => log.warn({ err }, 'could not save job progress'));
          }
        } else if (message.type === 'log') log.info({ stageLog: message.message }, 'training job');
        else outcome = message;
      });
      worker.on('error', (err) => {
        outcome ??= { type: 'failed', error: err.message, stopped: false };
      });
      worker.on('exit', (code) => {
        if (renewal) clearInterval(renewal);
        void (async () => {
          const result = outcome ?? { type: 'failed' as const, error: `the job's worker exited with code ${code}`, stopped: false };
          const patch: Partial<JobRecord> =
            result.type === 'done'
              ? { status: 'succeeded', result: { ...result.result }, finishedAt: Date.now() }
              : result.type === 'failed'
                ? { status: result.stopped ? 'stopped' : 'failed', error: result.error, finishedAt: Date.now() }
                : {};
          if (job.progress) patch.progress = job.progress;
          if (patch.status === 'succeeded') {
            for (const finalize of this.finalizers) {
              try {
                const extra = await finalize({ ...job, ...patch });
                if (extra) patch.result = { ...patch.result, ...extra };
              } catch (err) {
                log.error({ err }, 'a step after the training job failed');
                patch.result = { ...patch.result, afterError: err instanceof Error ? err.message : String(err) };
              }
            }
          }
          // A shared store and this process is shutting down (a rolling restart, a `teamllm train`
          // beside the bots that exits): the job is not stopped by anyone, so another process
          // resumes it from its checkpoint.
          if (this.closed && isJobLeaseStore(store) && patch.status === 'stopped' && !leaseLost) {
            patch.status = 'interrupted';
            patch.error = 'its process shut down; resumed by another process';
            const resumed = await store.createJob({ kind: job.kind, params: job.params, requestedBy: job.requestedBy, runDir, resumes: job.id });
            log.info({ resumedAs: resumed.id }, 'handing the training job over to another process');
          }
          // A job whose lease was lost belongs to the process that took it over: leave its row alone.
          job = leaseLost ? { ...job, status: 'interrupted' } : await store.updateJob(job.id, patch);
          log.info({ status: job.status, error: job.error }, 'training job finished');
          this.running = undefined;
          this.emit('finished', job);
          resolve();
          void this.pump();
        })();
      });
    });
    this.running = { job, worker, done };
    void store.updateJob(job.id, { status: 'running', startedAt: job.startedAt!, runDir }).then((saved) => this.emit('started', saved));
    log.info({ runDir, resume }, 'training job started');
  }
}
