/**
 * Answers judged as a user judges them, end to end: each question goes through an Answerer exactly
 * as the bot serves it (retrieval, the "don't know" gate, the model's choice, the composed text),
 * and we count what a reader sees —
 *
 * - answerable questions: the gold fact in the answer (every `must_contain` string, or the short
 *   `answer`), the direct answer alone exactly the gold answer (EM) or containing it, the direct
 *   answer's length (words; Chinese characters / 2), refused although the documents answer it,
 *   the gold document among the cited sources;
 * - unanswerable questions (`answer` "UNANSWERABLE"): refused.
 */
import type { Answerer, AnswerRequest } from '../../core/index.ts';
import { containsGold, exactMatch, type QaQuestion } from './qa-eval.ts';
import { CJK, CJK_RUN } from '../../model/text/cjk.ts';

export const UNANSWERABLE = 'UNANSWERABLE';

export interface AnswerEvalItem {
  id?: string;
  question: string;
  gold: string[];
  answerable: boolean;
  answer: string;
  direct: string;
  sources: string[];
  refused: boolean;
  containsGold: boolean;
  directExact: boolean;
  directContainsGold: boolean;
  directLength: number;
  goldDocRetrieved: boolean | null;
}

export interface AnswerEvalScores {
  answerable: number;
  unanswerable: number;
  /** Shares of the answerable questions (0..1). */
  containsGold: number;
  directExact: number;
  directContainsGold: number;
  answerableRefused: number;
  /** How many answerable questions were refused. */
  answerableRefusedCount: number;
  goldDocRetrieved: number;
  /** Direct answers (of answered questions): mean and longest, in words (Chinese: characters / 2). */
  directLengthMean: number;
  directLengthMax: number;
  /** Share of unanswerable questions refused. */
  unanswerableRefused: number;
  items: AnswerEvalItem[];
}

/** The strings that must all appear: `must_contain`, else the short `answer`. */
export function goldStrings(q: QaQuestion): string[] {
  return q.must_contain?.length ? q.must_contain : [q.answer];
}

/** Words of a direct answer; a Chinese character counts half (30 words ≈ 60 characters). */
export function answerLength(text: string): number {
  const cjk = [...text].filter((c) => CJK.test(c)).length;
  const latin = text.replace(CJK_RUN, ' ').split(/\s+/).filter((w) => /[\p{L}\p{N}]/u.test(w)).length;
  return latin + cjk / 2;
}

export interface EvaluateAnswersOptions {
  answerer: Answerer;
  questions: QaQuestion[];
  progress?: (done: number, total: number) => void;
}

export async function evaluateAnswers(options: EvaluateAnswersOptions): Promise<AnswerEvalScores> {
  const items: AnswerEvalItem[] = [];
  for (const [i, q] of options.questions.entries()) {
    const request: AnswerRequest = { question: q.question, history: [], user: { platform: 'console', id: 'eval' }, channel: 'eval' };
    let answer = '';
    let direct: string | undefined;
    let sources: string[] = [];
    for await (const event of options.answerer.answer(request)) {
      if (event.type === 'sources') sources = event.sources.map((s) => s.source);
      else if (event.type === 'token') answer += event.text;
      else direct = event.direct;
    }
    const answerable = q.answer !== UNANSWERABLE;
    const refused = sources.length === 0 || direct === '';
    // An answerer that does not name a direct answer is judged on its whole text.
    const shown = direct ?? answer;
    const gold = answerable ? goldStrings(q) : [];
    const has = (text: string) => gold.length > 0 && gold.every((g) => containsGold(text, g) === 1);
    items.push({
      ...(q.id ? { id: q.id } : {}),
      question: q.question,
      gold,
      answerable,
      answer,
      direct: shown,
      sources,
      refused,
      containsGold: !refused && has(answer),
      directExact: !refused && gold.length === 1 && exactMatch(shown, gold[0]!) === 1,
      directContainsGold: !refused && has(shown),
      directLength: refused ? 0 : answerLength(shown),
      goldDocRetrieved: q.source ? sources.some((s) => s === q.source || s.endsWith(`/${q.source}`) || q.source!.endsWith(`/${s}`)) : null,
    });
    options.progress?.(i + 1, options.questions.length);
  }
  const ans = items.filter((x) => x.answerable);
  const un = items.filter((x) => !x.answerable);
  const share = (xs: AnswerEvalItem[], f: (x: AnswerEvalItem) => boolean) => (xs.length ? xs.filter(f).length / xs.length : 0);
  const answered = ans.filter((x) => !x.refused);
  const withSource = ans.filter((x) => x.goldDocRetrieved !== null);
  return {
    answerable: ans.length,
    unanswerable: un.length,
    containsGold: share(ans, (x) => x.containsGold),
    directExact: share(ans, (x) => x.directExact),
    directContainsGold: share(ans, (x) => x.directContainsGold),
    answerableRefused: share(ans, (x) => x.refused),
    answerableRefusedCount: ans.filter((x) => x.refused).length,
    goldDocRetrieved: share(withSource, (x) => x.goldDocRetrieved === true),
    directLengthMean: answered.length ? answered.reduce((n, x) => n + x.directLength, 0) / answered.length : 0,
    directLengthMax: answered.reduce((n, x) => Math.max(n, x.directLength), 0),
    unanswerableRefused: share(un, (x) => x.refused),
    items,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** One row per answerer: the numbers the README and docs quote. */
export function formatAnswerScores(rows: { label: string; scores: AnswerEvalScores }[]): string {
  const header = '| answerer | gold fact in answer | direct EM | direct has gold | direct words (mean/max) | answerable refused | unanswerable refused | gold doc cited |';
  const lines = rows.map(({ label, scores: s }) =>
    `| ${label} | ${pct(s.containsGold)} (${Math.round(s.containsGold * s.answerable)}/${s.answerable}) | ${pct(s.directExact)} | ${pct(s.directContainsGold)} | ${s.directLengthMean.toFixed(1)}/${s.directLengthMax.toFixed(0)} | ${s.answerableRefusedCount}/${s.answerable} | ${s.unanswerable ? `${pct(s.unanswerableRefused)} (${Math.round(s.unanswerableRefused * s.unanswerable)}/${s.unanswerable})` : '—'} | ${pct(s.goldDocRetrieved)} |`,
  );
  return [header, '|---|---|---|---|---|---|---|---|', ...lines].join('\n');
}
