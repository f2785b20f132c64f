import type { ConversationTurn, ModelInfo, Source, UserRef } from './types.ts';

export interface AnswerRequest {
  question: string;
  /** Earlier turns of this conversation, oldest first, already cut to the memory budget. */
  history: ConversationTurn[];
  user: UserRef;
  channel: string;
  signal?: AbortSignal;
  /**
   * Answers already given to this question in this conversation ("Another answer" was asked):
   * an answerer that chooses among candidates skips those; one that cannot may answer alike.
   */
  avoid?: string[];
}

/**
 * What an answerer emits, in order: the passages it will use (at most once), tokens as they are
 * produced, then `done` with the exact prompt it used (kept in the answer record for training) and,
 * when the answerer can tell it, the direct answer alone (`direct`: '' when it does not know).
 */
export type AnswerEvent =
  | { type: 'sources'; sources: Source[] }
  | { type: 'token'; text: string }
  | { type: 'done'; prompt: string; direct?: string };

/** Turns a question into a streamed answer. Implemented by rag/model layers; the Bot only sees this. */
export interface Answerer {
  readonly model: ModelInfo;
  answer(request: AnswerRequest): AsyncIterable<AnswerEvent>;
}
