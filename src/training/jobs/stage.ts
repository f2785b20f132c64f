import type { JobProgress, StoreOpener } from '../../core/index.ts';
import type { KnowledgeBaseOpener } from '../../rag/knowledge-base-opener.ts';

/** What a training stage gets when it runs inside a job's worker thread. */
export interface StageContext {
  params: Record<string, string>;
  /** $TEAMLLM_HOME: models, corpus, evaluation questions. */
  home: string;
  /** The answers and votes (the feedback store); a stage never names its file. */
  store: StoreOpener;
  /** The home's knowledge bases and scratch ones in the run folder. */
  knowledgeBases: KnowledgeBaseOpener;
  /** The job's own folder: checkpoints, logs, charts. A resumed job gets the same folder. */
  runDir: string;
  /** True when this job continues an interrupted or stopped one: load the latest checkpoint. */
  resume: boolean;
  /** Aborted by /train stop: save a checkpoint and return (or throw) promptly. */
  signal: AbortSignal;
  progress(progress: JobProgress): void;
  log(message: string): void;
}

export interface StageResult {
  /** One or two lines for the chat. */
  summary: string;
  metrics?: Record<string, number>;
  /** Files worth showing, e.g. `{ lossChart: '<runDir>/loss.png' }`. */
  files?: Record<string, string>;
  /** The model version the stage registered, if any. */
  modelVersion?: string;
  /**
   * The stage's evaluation gate (QA not worse, reward up, KL bounded, better than chance...):
   * only a result that passed may be promoted automatically; the reasons are shown either way.
   */
  gate?: { passed: boolean; reasons: string[] };
}

/** A stage module exports `runStage`; the job runner loads it by file URL inside a worker. */
export type RunStage = (ctx: StageContext) => Promise<StageResult>;

/** Messages a stage worker sends to the job runner. */
export type WorkerMessage =
  | { type: 'progress'; progress: JobProgress }
  | { type: 'log'; message: string }
  | { type: 'done'; result: StageResult }
  | { type: 'failed'; error: string; stopped: boolean };

export interface WorkerInput {
  stageModule: string;
  params: Record<string, string>;
  home: string;
  runDir: string;
  resume: boolean;
  /** TEAMLLM_DATABASE_URL when the store is PostgreSQL: the stage opens its own connections. */
  databaseUrl?: string;
}
