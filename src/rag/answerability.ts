/**
 * Whether the best passage found can answer the question at all — below the threshold the bot
 * says it does not know instead of quoting or generating from an unrelated passage.
 *
 * Two signals, both cheap: `coverage`, the share of the question's words found in the passage
 * (heading path included), and `cosine`, the trained encoder's similarity. The threshold is
 * measured, not guessed: `measureAnswerability` (retrieval-eval.ts) asks every handbook question
 * twice, once with its source document indexed (answerable) and once with that document hidden
 * (the best passage is then, by construction, not the answer), and picks the highest cut that
 * still answers 90% of the answerable questions of the train split; docs/knowledge-base.md has
 * the figures.
 */
import { searchTerms } from './search-terms.ts';

export type AnswerabilitySignal = 'coverage' | 'cosine' | 'mean';

export interface AnswerabilityRule {
  signal: AnswerabilitySignal;
  threshold: number;
}

/**
 * Measured on the sample handbook (en + zh, 84 questions, each with its source indexed and hidden):
 * - with the default encoder, cosine separates best (AUC 0.89 / 0.91 / 0.93 for training seeds
 *   1-3, word coverage 0.77); the cuts chosen were 0.464 / 0.456 / 0.457, each answering 90% of
 *   the answerable train questions and declining 80-83% of the unanswerable ones (test split:
 *   answers 82-86%, declines 88-92%);
 * - without an encoder (BM25 only), coverage >= 0.316 answers 94% and declines 27%.
 * `teamllm eval retrieval` measures the same on any folder and question file.
 */
export const DEFAULT_ANSWERABILITY: { withEncoder: AnswerabilityRule; keywordsOnly: AnswerabilityRule } = {
  withEncoder: { signal: 'cosine', threshold: 0.46 },
  keywordsOnly: { signal: 'coverage', threshold: 0.32 },
};

export interface AnswerabilitySignals {
  coverage: number;
  cosine?: number;
}

/**
 * Share of the question's words found in the passage. Words, not the bigrams BM25 also uses:
 * bigrams spanning two Chinese words ("的具") are noise that would make every question look unanswered.
 */
export function coverage(question: string, passage: { title: string; text: string }): number {
  const queryTerms = new Set(searchTerms(question, { bigrams: false }));
  if (queryTerms.size === 0) return 0;
  const inPassage = new Set(searchTerms(`${passage.title} ${passage.text}`));
  let found = 0;
  for (const t of queryTerms) if (inPassage.has(t)) found++;
  return found / queryTerms.size;
}

export function signalValue(signals: AnswerabilitySignals, signal: AnswerabilitySignal): number {
  if (signal === 'coverage') return signals.coverage;
  if (signals.cosine === undefined) return signals.coverage;
  return signal === 'cosine' ? signals.cosine : (signals.coverage + signals.cosine) / 2;
}

export function isAnswerable(signals: AnswerabilitySignals | undefined, rule: AnswerabilityRule): boolean {
  return signals !== undefined && signalValue(signals, rule.signal) >= rule.threshold;
}
