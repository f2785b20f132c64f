/**
 * Question answering with retrieval in the loop: for each question, the knowledge base's top
 * passages go into the prompt's context block (the layout SFT trains on), the model answers
 * greedily — freely, or copy-constrained to verbatim spans of that context (`decoding:
 * 'extractive'`, src/model/extractive.ts, as the bot answers with a model whose meta says so) —
 * and the answer is scored against the gold one:
 *
 * - exact match: equal after normalisation (case, punctuation and symbols, English articles,
 *   spacing; NFKC);
 * - token F1: overlap of normalised tokens (words; each Chinese character is a token), SQuAD-style;
 * - contains gold: the normalised gold answer appears in the normalised answer (spaces ignored) —
 *   the fairest number for chatty answers that state the fact inside a sentence.
 *
 * Also reported: how often retrieval found the gold document, and how often the gold answer was
 * in the prompt at all (an upper bound for answering from context).
 */
import { promises as fs } from 'node:fs';
import type { LoadedModel } from '../../model/loaded-model.ts';
import { generateAll } from '../../model/generate.ts';
import { extractiveHook, type DecodingMode, type ExtractiveConstraintOptions } from '../../model/extractive.ts';
import { encodeQaPrompt, type Passage } from '../../model/qa-prompt.ts';
import { CJK_RANGES } from '../../model/text/cjk.ts';

export interface QaQuestion {
  id?: string;
  lang?: string;
  question: string;
  answer: string;
  /** The document the answer is in (for the retrieval hit rate). */
  source?: string;
  split?: string;
  /** Strings that must all appear in a right answer (the dev sets' rows); `answer` is then a reference sentence. */
  must_contain?: string[];
}

/** The part of the knowledge base the evaluation needs (src/core/services.ts KnowledgeBase.search). */
export interface QaRetriever {
  search(query: string, k: number): Promise<{ source: string; title: string; text: string; score?: number }[]>;
}

export interface EvaluateQaOptions {
  model: LoadedModel;
  /** Retrieval in the loop; without it questions are asked with no context. */
  kb?: QaRetriever;
  /** A questions JSONL file ({id, lang, question, answer, source, split}) ... */
  questionsFile?: string;
  /** ... or the questions themselves. */
  questions?: QaQuestion[];
  /** Only questions of this split (e.g. 'test': the held-out part); default all. */
  split?: string;
  /** Passages retrieved per question (default 3). */
  k?: number;
  /** Answer tokens at most (default 32). */
  maxTokens?: number;
  /** Same as SFT's option of that name, if it was set there. */
  maxContextTokens?: number;
  systemPrompt?: string;
  /** 'free' (default) or 'extractive' (answers copied from the prompt's context). */
  decoding?: DecodingMode;
  /** Options of the extractive constraint (experiments: where spans may start). */
  extractive?: ExtractiveConstraintOptions;
  /** Called after each question (progress). */
  onQuestion?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface QaItem {
  id: string;
  question: string;
  gold: string;
  prediction: string;
  exactMatch: number;
  f1: number;
  containsGold: number;
  /** The gold document was among the retrieved passages. */
  retrievalHit: boolean;
  /** The gold answer was in the prompt's context. */
  goldInContext: boolean;
  sources: string[];
}

export interface QaScores {
  n: number;
  exactMatch: number;
  f1: number;
  containsGold: number;
  retrievalHit: number;
  goldInContext: number;
  model: string;
  /** How the answers were decoded. */
  decoding?: DecodingMode;
  items: QaItem[];
}

const ARTICLES = /\b(a|an|the)\b/g;
// Kana too: a Japanese answer is compared character by character like a Chinese one.
const CJK_CHAR = new RegExp(`[${CJK_RANGES}\\u3040-\\u30ff]`, 'u');

/** SQuAD's normalisation, Unicode-aware: NFKC, lower case, no punctuation or symbols, no English articles. */
export function normalizeAnswer(s: string): string {
  return s
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\p{P}\p{S}]/gu, ' ')
    .replace(ARTICLES, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

/** Normalised tokens: words, with each CJK character a token of its own. */
export function answerTokens(s: string): string[] {
  const out: string[] = [];
  for (const word of normalizeAnswer(s).split(' ')) {
    if (!word) continue;
    let buf = '';
    for (const ch of word) {
      if (CJK_CHAR.test(ch)) {
        if (buf) out.push(buf);
        buf = '';
        out.push(ch);
      } else buf += ch;
    }
    if (buf) out.push(buf);
  }
  return out;
}

export function exactMatch(prediction: string, gold: string): number {
  return answerTokens(prediction).join(' ') === answerTokens(gold).join(' ') ? 1 : 0;
}

export function tokenF1(prediction: string, gold: string): number {
  const p = answerTokens(prediction);
  const g = answerTokens(gold);
  if (p.length === 0 || g.length === 0) return p.length === g.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of g) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of p) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      same += 1;
      counts.set(t, c - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length;
  const recall = same / g.length;
  return (2 * precision * recall) / (precision + recall);
}

export function containsGold(prediction: string, gold: string): number {
  const g = answerTokens(gold).join('');
  return g.length > 0 && answerTokens(prediction).join('').includes(g) ? 1 : 0;
}

/** Questions of a JSONL file (blank lines skipped). */
export async function readQaQuestions(file: string): Promise<QaQuestion[]> {
  const out: QaQuestion[] = [];
  (await fs.readFile(file, 'utf8')).split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const r = JSON.parse(line) as Record<string, unknown>;
    if (typeof r.question !== 'string' || typeof r.answer !== 'string') throw new Error(`${file}:${i + 1}: needs "question" and "answer"`);
    out.push(r as unknown as QaQuestion);
  });
  return out;
}

function sameSource(a: string, b: string): boolean {
  const n = (s: string) => s.replace(/\\/g, '/').replace(/^\.?\//, '');
  const x = n(a);
  const y = n(b);
  return x === y || x.endsWith(`/${y}`) || y.endsWith(`/${x}`);
}

/** Scores a model on questions, retrieving context for each from `kb`. */
export async function evaluateQa(options: EvaluateQaOptions): Promise<QaScores> {
  const all = options.questions ?? (options.questionsFile ? await readQaQuestions(options.questionsFile) : undefined);
  if (!all) throw new Error('evaluateQa needs `questions` or `questionsFile`');
  const questions = options.split ? all.filter((q) => q.split === options.split) : all;
  if (questions.length === 0) throw new Error(`No questions${options.split ? ` in split "${options.split}"` : ''}`);
  const { model } = options;
  const k = options.k ?? 3;
  const maxTokens = options.maxTokens ?? 32;
  const items: QaItem[] = [];
  for (const [i, q] of questions.entries()) {
    if (options.signal?.aborted) break;
    const retrieved = options.kb ? await options.kb.search(q.question, k) : [];
    const passages: Passage[] = retrieved.map((p) => ({ source: p.source, title: p.title, text: p.text }));
    const prompt = encodeQaPrompt(
      model.tokenizer,
      { question: q.question, passages, ...(options.systemPrompt ? { systemPrompt: options.systemPrompt } : {}) },
      { blockSize: model.blockSize, reserve: maxTokens, ...(options.maxContextTokens ? { maxContextTokens: options.maxContextTokens } : {}) },
    );
    const promptText = model.tokenizer.decode(prompt);
    const allowedTokens = options.decoding === 'extractive' ? extractiveHook(model.tokenizer, prompt, options.extractive) : undefined;
    const result = await generateAll(model.gpt, model.tokenizer, prompt, {
      maxTokens,
      temperature: 0,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(allowedTokens ? { allowedTokens } : {}),
    });
    items.push(scoreQaItem(q, i, result.text.trim(), retrieved, promptText));
    options.onQuestion?.(items.length, questions.length);
  }
  return qaScores(items, model.info.version, options.decoding ?? 'free');
}

/** One question's scores: its prediction against the gold answer, and what retrieval gave the prompt. */
export function scoreQaItem(q: QaQuestion, index: number, prediction: string, retrieved: { source: string }[], promptText: string): QaItem {
  return {
    id: q.id ?? String(index + 1),
    question: q.question,
    gold: q.answer,
    prediction,
    exactMatch: exactMatch(prediction, q.answer),
    f1: tokenF1(prediction, q.answer),
    containsGold: containsGold(prediction, q.answer),
    retrievalHit: q.source ? retrieved.some((p) => sameSource(p.source, q.source!)) : false,
    goldInContext: containsGold(promptText, q.answer) === 1,
    sources: retrieved.map((p) => p.source),
  };
}

/** The means over the questions asked. */
export function qaScores(items: QaItem[], model: string, decoding: DecodingMode): QaScores {
  const mean = (f: (x: QaItem) => number) => (items.length ? items.reduce((s, x) => s + f(x), 0) / items.length : 0);
  return {
    n: items.length,
    exactMatch: mean((x) => x.exactMatch),
    f1: mean((x) => x.f1),
    containsGold: mean((x) => x.containsGold),
    retrievalHit: mean((x) => (x.retrievalHit ? 1 : 0)),
    goldInContext: mean((x) => (x.goldInContext ? 1 : 0)),
    model,
    decoding,
    items,
  };
}

export interface QaComparison {
  before: QaScores;
  after: QaScores;
  /** after - before, per metric. */
  delta: { exactMatch: number; f1: number; containsGold: number };
  /** The fine-tuned model beats its base (see `metric`). */
  improved: boolean;
  metric: 'f1' | 'exactMatch' | 'containsGold';
  verdict: string;
}

/**
 * Before vs after. The adapter "beats its base" when the chosen metric (default token F1) is
 * higher by more than `minGain` and neither of the other two metrics dropped.
 */
export function compareQa(before: QaScores, after: QaScores, options: { metric?: QaComparison['metric']; minGain?: number } = {}): QaComparison {
  const metric = options.metric ?? 'f1';
  const minGain = options.minGain ?? 0;
  const delta = { exactMatch: after.exactMatch - before.exactMatch, f1: after.f1 - before.f1, containsGold: after.containsGold - before.containsGold };
  const others = (['exactMatch', 'f1', 'containsGold'] as const).filter((m) => m !== metric);
  const improved = delta[metric] > minGain && others.every((m) => delta[m] >= -1e-9);
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const verdict = improved
    ? `The fine-tuned model beats its base on the ${after.n} held-out questions: ${metric} ${pct(before[metric])} → ${pct(after[metric])}.`
    : `The fine-tuned model does NOT beat its base on the ${after.n} held-out questions (${metric} ${pct(before[metric])} → ${pct(after[metric])}${others.some((m) => delta[m] < -1e-9) ? `; ${others.filter((m) => delta[m] < -1e-9).map((m) => `${m} fell`).join(', ')}` : ''}): it is not promoted.`;
  return { before, after, delta, improved, metric, verdict };
}

/** A small table for terminals and chat. */
export function formatQaScores(rows: { label: string; scores: QaScores }[]): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`.padStart(7);
  const head = `${'model'.padEnd(22)} ${'n'.padStart(4)} ${'EM'.padStart(7)} ${'F1'.padStart(7)} ${'contains'.padStart(9)} ${'retr.hit'.padStart(9)} ${'gold∈ctx'.padStart(9)}`;
  const lines = rows.map(
    ({ label, scores: s }) =>
      `${label.slice(0, 22).padEnd(22)} ${String(s.n).padStart(4)} ${pct(s.exactMatch)} ${pct(s.f1)} ${pct(s.containsGold).padStart(9)} ${pct(s.retrievalHit).padStart(9)} ${pct(s.goldInContext).padStart(9)}`,
  );
  return [head, ...lines].join('\n');
}
