/** Training jobs as the core sees them: queued by admins in chat, run off the main thread. */

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'stopped' | 'interrupted';

export interface JobProgress {
  /** What the job is doing now, e.g. "pretrain", "evaluate". */
  stage: string;
  step: number;
  totalSteps: number;
  loss?: number;
  valLoss?: number;
  tokensPerSec?: number;
  etaSec?: number;
  message?: string;
}

export interface JobRecord {
  id: number;
  kind: string;
  params: Record<string, string>;
  status: JobStatus;
  requestedBy: string;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  progress?: JobProgress;
  /** What the stage reported when it finished (metrics, model version, files). */
  result?: Record<string, unknown>;
  error?: string;
  /** Folder with the job's checkpoints, logs and charts; a resumed job reuses it. */
  runDir?: string;
  /** The job this one continues. */
  resumes?: number;
}

export interface JobStore {
  createJob(job: { kind: string; params: Record<string, string>; requestedBy: string; runDir?: string; resumes?: number }): Promise<JobRecord>;
  updateJob(id: number, patch: Partial<Omit<JobRecord, 'id' | 'kind' | 'createdAt'>>): Promise<JobRecord>;
  getJob(id: number): Promise<JobRecord | undefined>;
  listJobs(limit: number): Promise<JobRecord[]>;
  /** At start-up: jobs that were running when the process died become `interrupted`. */
  interruptRunningJobs(): Promise<number>;
}

/**
 * A job store shared by several processes (PostgreSQL): a job is run by the process holding its
 * lease, which renews it while the job runs; a job whose lease ran out (its process died) is
 * taken over by another process, which resumes it from its checkpoint.
 */
export interface JobLeaseStore {
  /** Takes the oldest queued job of these kinds for `owner`, or none; exactly one process gets each. */
  claimNextJob(owner: string, leaseMs: number, kinds: string[]): Promise<JobRecord | undefined>;
  /** Extends the lease; false when `owner` no longer holds it. */
  renewJobLease(id: number, owner: string, leaseMs: number): Promise<boolean>;
  /** Running jobs whose lease ran out become `interrupted`, each with a queued job that resumes it. */
  takeOverExpiredJobs(): Promise<{ interrupted: JobRecord; resumed: JobRecord }[]>;
}

export function isJobLeaseStore(store: JobStore): store is JobStore & JobLeaseStore {
  return typeof (store as Partial<JobLeaseStore>).claimNextJob === 'function';
}
