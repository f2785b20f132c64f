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
  /**
   * "Answer from this section": the asker pointed at a section the bot had named (after a "don't
   * know" or a wrong answer). An answerer that retrieves answers from that section alone and does
   * not second-guess the choice; one that cannot answers the question as usual.
   */
  section?: SectionRef;
}

/** A section of the knowledge base as users see it named: its document and heading path. */
export interface SectionRef {
  source: string;
  title: string;
}

/**
 * What an answerer emits, in order: the passages it will use (at most once), tokens as they are
 * produced, then `done` with the exact prompt it used (kept in the answer record for training) and,
 * when the answerer can tell it, the direct answer alone (`direct`: '' when it does not know).
 */
export type AnswerEvent =
  /**
   * `near`: when the answerer does not answer (no sources), the passages it found closest — named
   * to the asker, who may point at the one that answers ("answer from this section").
   */
  | { type: 'sources'; sources: Source[]; near?: Source[] }
  | { type: 'token'; text: string }
  | { type: 'done'; prompt: string; direct?: string };

/** Turns a question into a streamed answer. Implemented by rag/model layers; the Bot only sees this. */
export interface Answerer {
  readonly model: ModelInfo;
  answer(request: AnswerRequest): AsyncIterable<AnswerEvent>;
}
