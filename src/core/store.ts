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

/** Refused commands, counted per actor, command and hour (a flood of them is one row). */
export interface AuditDenial {
  /** Start of the hour (ms since the epoch, UTC). */
  hour: number;
  actor: string;
  command: string;
  count: number;
  lastAt: number;
}

export interface ClaimOptions {
  /**
   * Claim as a lease: unless confirmed (confirmEvent) it may be claimed again after this many ms,
   * so an attempt that died before answering does not use the id up for good.
   */
  leaseMs?: number;
}

export interface RatedAnswersOptions {
  /**
   * Count votes of anonymous web sessions (user ids `anon:…`); default true. Such a session can
   * vote only on an answer it was given, once, so its vote is the asker's own verdict; false
   * keeps only votes of identities someone vouches for (platform users, single sign-on, services).
   */
  anonymousVotes?: boolean;
}

/** Web sessions nobody vouches for (src/adapters/web): their user ids start with this. */
export const ANONYMOUS_WEB_USER_PREFIX = 'anon:';

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
  claimEvent(platform: Platform, eventId: string, options?: ClaimOptions): Promise<boolean>;
  /** Makes a leased claim permanent: the event has its answer (or command reply). */
  confirmEvent(platform: Platform, eventId: string): Promise<void>;
  /** Drops an unconfirmed claim (nothing was answered), so a retry is handled. */
  releaseEvent(platform: Platform, eventId: string): Promise<void>;

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
  /** Counts a refused command (aggregated per actor, command and hour; not an audit_log row). */
  auditDenial(actor: string, command: string): Promise<void>;
  auditDenials(limit: number): Promise<AuditDenial[]>;

  ratedAnswers(options?: RatedAnswersOptions): AsyncIterable<RatedAnswer>;
  close(): Promise<void>;
}
