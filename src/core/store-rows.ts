/**
 * Rows of the answers, feedback and jobs tables as both stores read them (the SQLite and the
 * PostgreSQL schema share column names), and the records they become. One mapping, so a column
 * added to one store cannot be read differently by the other.
 */
import type { AnswerRecord, FeedbackRecord, RatedAnswer } from './store.ts';
import type { JobRecord } from './jobs.ts';
import type { Platform, Source, Vote } from './types.ts';

export interface AnswerRow {
  id: string;
  created_at: number;
  platform: Platform;
  workspace: string;
  channel: string;
  thread: string | null;
  message_id: string;
  user_id: string;
  user_name: string | null;
  question: string;
  passages: string;
  prompt: string;
  output: string;
  model_name: string;
  model_version: string;
  latency_ms: number;
  reply_id: string | null;
}

export interface FeedbackRow {
  answer_id: string;
  platform: Platform;
  user_id: string;
  value: Vote;
  comment: string | null;
  created_at: number;
  updated_at: number;
}

export function toAnswer(row: AnswerRow): AnswerRecord {
  return {
    id: row.id,
    createdAt: row.created_at,
    platform: row.platform,
    workspace: row.workspace,
    channel: row.channel,
    ...(row.thread !== null ? { thread: row.thread } : {}),
    messageId: row.message_id,
    userId: row.user_id,
    ...(row.user_name !== null ? { userName: row.user_name } : {}),
    question: row.question,
    passages: JSON.parse(row.passages) as Source[],
    prompt: row.prompt,
    output: row.output,
    modelName: row.model_name,
    modelVersion: row.model_version,
    latencyMs: row.latency_ms,
    ...(row.reply_id !== null ? { replyId: row.reply_id } : {}),
  };
}

export interface JobRow {
  id: number;
  kind: string;
  params: string;
  status: JobRecord['status'];
  requested_by: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  progress: string | null;
  result: string | null;
  error: string | null;
  run_dir: string | null;
  resumes: number | null;
}

export function toJob(row: JobRow): JobRecord {
  return {
    id: row.id,
    kind: row.kind,
    params: JSON.parse(row.params) as Record<string, string>,
    status: row.status,
    requestedBy: row.requested_by,
    createdAt: row.created_at,
    ...(row.started_at !== null ? { startedAt: row.started_at } : {}),
    ...(row.finished_at !== null ? { finishedAt: row.finished_at } : {}),
    ...(row.progress !== null ? { progress: JSON.parse(row.progress) as JobRecord['progress'] } : {}),
    ...(row.result !== null ? { result: JSON.parse(row.result) as Record<string, unknown> } : {}),
    ...(row.error !== null ? { error: row.error } : {}),
    ...(row.run_dir !== null ? { runDir: row.run_dir } : {}),
    ...(row.resumes !== null ? { resumes: row.resumes } : {}),
  };
}

export function toFeedback(row: FeedbackRow): FeedbackRecord {
  return {
    answerId: row.answer_id,
    platform: row.platform,
    userId: row.user_id,
    value: row.value,
    ...(row.comment !== null ? { comment: row.comment } : {}),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** An answer with its votes, as the rated-answers exports give it. */
export function ratedAnswer(row: AnswerRow, votes: readonly { value: Vote; comment: string | null }[]): RatedAnswer {
  return {
    answer: toAnswer(row),
    up: votes.filter((f) => f.value === 1).length,
    down: votes.filter((f) => f.value === -1).length,
    comments: votes.flatMap((f) => (f.comment ? [f.comment] : [])),
  };
}
