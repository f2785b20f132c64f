import type { ConversationTurn, Platform, Source, Vote } from './types.ts';

export interface NewAnswerRecord {
  platform: Platform;
  workspace: string;
  channel: string;
  thread?: string;
  messageId: string;
  userId: string;
  userName?: string;
  question: string;
  passages: Source[];
  prompt: string;
  output: string;
  modelName: string;
  modelVersion: string;
  latencyMs: number;
}

export interface AnswerRecord extends NewAnswerRecord {
  id: string;
  createdAt: number;
  /** Platform id of the posted reply, so reactions on it can be traced back. */
  replyId?: string;
}

export interface FeedbackInput {
  answerId: string;
  platform: Platform;
  userId: string;
  value: Vote;
  comment?: string;
}

export interface FeedbackRecord extends FeedbackInput {
  createdAt: number;
  updatedAt: number;
}

export interface AuditEntry {
  at: number;
  actor: string;
  action: string;
  detail: Record<string, unknown>;
}

/** One answer with the current votes on it, as the dataset exporters read it. */
export interface RatedAnswer {
  answer: AnswerRecord;
  up: number;
  down: number;
  comments: string[];
}

/**
 * How code outside the serving process (a training job in its worker thread) reaches the store of
 * answers and votes: it opens a connection of its own, as one cannot cross threads. Stages get
 * this from their context and never name the store's file.
 */
export interface StoreOpener {
  /** Where the store is, for messages ("no feedback recorded yet (no …)"). */
  readonly location: string;
  /** The store, or undefined while nothing was ever recorded there. The caller closes it. */
  open(): BotStore | undefined;
}

/**
 * Persistence the Bot needs. Async so that a networked store (PostgreSQL) can implement it;
 * the SQLite one answers synchronously underneath.
 */
export interface BotStore {
  /** Records the event id; false when it was seen before (a redelivery). */
  claimEvent(platform: Platform, eventId: string): Promise<boolean>;

  saveAnswer(record: NewAnswerRecord): Promise<AnswerRecord>;
  getAnswer(id: string): Promise<AnswerRecord | undefined>;
  setAnswerReply(answerId: string, replyId: string): Promise<void>;
  findAnswerByReply(platform: Platform, replyId: string): Promise<AnswerRecord | undefined>;

  /** Upserts the user's vote on an answer (a user may change their mind). */
  recordFeedback(input: FeedbackInput): Promise<FeedbackRecord>;
  /** Removes the user's vote (e.g. a removed reaction). */
  removeFeedback(answerId: string, platform: Platform, userId: string): Promise<boolean>;
  feedbackFor(answerId: string): Promise<FeedbackRecord[]>;
  feedbackCounts(): Promise<{ up: number; down: number }>;

  appendTurn(conversation: string, turn: ConversationTurn): Promise<void>;
  recentTurns(conversation: string, limit: number): Promise<ConversationTurn[]>;
  clearConversation(conversation: string): Promise<void>;

  audit(entry: Omit<AuditEntry, 'at'>): Promise<void>;
  auditLog(limit: number): Promise<AuditEntry[]>;

  ratedAnswers(): AsyncIterable<RatedAnswer>;
  close(): Promise<void>;
}
