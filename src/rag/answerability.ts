/**
 * Whether the best passage found can answer the question at all — below the threshold the bot
 * says it does not know instead of quoting or generating from an unrelated passage.
 *
 * Two signals, both cheap: `coverage`, the share of the question's words found in the passage
 * (heading path included), and `cosine`, the trained encoder's similarity. The threshold is
 * measured, not guessed: `measureAnswerability` (retrieval-eval.ts) asks every handbook question
 * twice, once with its source document indexed (answerable) and once with that document hidden
 * (the best passage is then, by construction, not the answer), and picks the cut that best
 * separates the two on the questions' train split; docs/knowledge-base.md has the figures.
 */
import { searchTerms } from './search-terms.ts';

export type AnswerabilitySignal = 'coverage' | 'cosine' | 'mean';

export interface AnswerabilityRule {
  signal: AnswerabilitySignal;
  threshold: number;
}

/**
 * Measured on examples/handbook (84 questions × {source indexed, source hidden}) with the
 * default encoder: see docs/knowledge-base.md, "Don't know". Used when no encoder is trained:
 * coverage alone.
 */
export const DEFAULT_ANSWERABILITY: { withEncoder: AnswerabilityRule; keywordsOnly: AnswerabilityRule } = {
  withEncoder: { signal: 'mean', threshold: 0.5 },
  keywordsOnly: { signal: 'coverage', threshold: 0.5 },
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
