import type { Attachment, ModelInfo, ReplyTarget, Source } from './types.ts';

/** Who is asking a service to act, for rights checks already done by the Bot and for the audit log. */
export interface Actor {
  id: string;
  isAdmin: boolean;
}

export interface KbSourceInfo {
  source: string;
  title: string;
  chunks: number;
  indexedAt: number;
}

export interface KbAddReport {
  added: string[];
  updated: string[];
  unchanged: string[];
  failed: { source: string; reason: string }[];
}

export interface KnowledgeBase {
  /** Ingests files or folders on the server's disk (CLI) — recursive, one bad file never aborts. */
  addPaths(paths: string[]): Promise<KbAddReport>;
  /** Ingests files uploaded in chat. */
  addAttachments(attachments: Attachment[]): Promise<KbAddReport>;
  list(): Promise<KbSourceInfo[]>;
  remove(source: string): Promise<number>;
  search(query: string, k: number): Promise<Source[]>;
}

export interface TrainingService {
  /**
   * Queues a job and answers at once; `progress`, when given, is where the job posts its progress
   * message and keeps updating it (the thread the admin typed /train in).
   */
  start(kind: string, params: Record<string, string>, actor: Actor, progress?: ReplyTarget): Promise<string>;
  resume(actor: Actor, progress?: ReplyTarget): Promise<string>;
  status(): Promise<string>;
  stop(actor: Actor): Promise<string>;
}

export interface ModelService {
  serving(): ModelInfo;
  list(): Promise<string>;
  promote(version: string, actor: Actor): Promise<string>;
  rollback(actor: Actor): Promise<string>;
}
