/**
 * `teamllm eval retrieval --questions FILE --kb DIR`: indexes DIR into a throwaway knowledge base,
 * trains the encoder on it (as `teamllm train embeddings` would on the user's documents), and
 * scores BM25, dense and hybrid retrieval side by side per language: recall@1, recall@5 and MRR
 * (a hit is a passage from the question's `source` file; MRR over the top 10).
 *
 * It also measures the "don't know" threshold (answerability.ts) on that corpus: each question
 * once with its source indexed and once with it hidden.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { type AnswerabilityRule, type AnswerabilitySignal, type AnswerabilitySignals, coverage, signalValue } from './answerability.ts';
import { InMemoryVectorStore } from './in-memory-vector-store.ts';
import { LocalEmbeddings } from './local-embeddings.ts';
import type { DenseEmbeddings } from './dense-embeddings.ts';
import { LocalKnowledgeBase, type SearchOptions } from './local-knowledge-base.ts';
import type { EncoderTrainingOptions } from './encoder-training.ts';
import { hasCjk } from '../model/text/cjk.ts';

/**
 * Two row formats are read: the sample handbook's `{id, lang, question, answer, source, split}`
 * (`answer` is a verbatim span of the source) and the dev sets' `{id, question, answer,
 * must_contain, source, evidence, type, split}` (`evidence` is a verbatim span, `lang` is
 * optional and guessed from the question's script). Rows without a source (`answer`
 * "UNANSWERABLE") have nothing to retrieve: they are left out of recall and serve as negatives of
 * the "don't know" measurement.
 */
const QuestionSchema = z
  .object({
    id: z.string(),
    lang: z.string().optional(),
    question: z.string().min(1),
    source: z.string().default(''),
    answer: z.string().optional(),
    evidence: z.string().optional(),
    must_contain: z.array(z.string()).optional(),
    split: z.string().optional(),
  })
  .transform(({ must_contain, ...q }) => ({
    ...q,
    lang: q.lang ?? (hasCjk(q.question) ? 'zh' : 'en'),
    ...(must_contain ? { mustContain: must_contain } : {}),
  }));

export type EvalQuestion = z.infer<typeof QuestionSchema>;

export function readQuestions(file: string): EvalQuestion[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line, i) => ({ line: line.trim(), n: i + 1 }))
    .filter(({ line }) => line !== '')
    .map(({ line, n }) => {
      try {
        return QuestionSchema.parse(JSON.parse(line));
      } catch (err) {
        throw new Error(`${file}:${n}: not a question record ({id, lang?, question, source, answer?, evidence?, must_contain?, split?}): ${err instanceof Error ? err.message.split('\n')[0] : err}`);
      }
    });
}

/** A question the documents answer: it has a source to find. */
export function isAnswerableQuestion(q: EvalQuestion): boolean {
  return q.source !== '' && q.answer !== 'UNANSWERABLE';
}

const collapse = (text: string) => text.replace(/\s+/g, ' ').trim();

/**
 * Whether a passage holds what the answer needs, not merely comes from the right document: it
 * contains the evidence span, or else every must_contain string (an evidence span may straddle
 * two passages), or, for rows with neither, the answer itself. A row with none of these counts
 * any passage of its source.
 */
export function passageAnswers(q: EvalQuestion, passage: { source: string; text: string }): boolean {
  if (passage.source !== q.source) return false;
  const text = collapse(passage.text);
  if (q.evidence && text.includes(collapse(q.evidence))) return true;
  if (q.mustContain && q.mustContain.length > 0) return q.mustContain.every((m) => text.includes(collapse(m)));
  if (q.evidence) return false;
  return q.answer ? text.includes(collapse(q.answer)) : true;
}

export type Retriever = 'bm25' | 'dense' | 'hybrid' | 'hybrid-rrf';

export interface MetricsRow {
  lang: string;
  /** hybrid: convex score fusion (what search uses); hybrid-rrf: reciprocal rank fusion, for comparison. */
  mode: Retriever;
  questions: number;
  /** A hit is any passage of the question's source document. */
  recallAt1: number;
  recallAt5: number;
  mrr: number;
  /** A hit is a passage of that document holding the answer (passageAnswers). */
  passage: { recallAt1: number; recallAt5: number; mrr: number };
}

/** Share of answerable questions the gate lets through, and of unanswerable ones it declines. */
export interface GateRates {
  answered: number;
  declined: number;
}

export interface AnswerabilityMeasurement {
  signal: AnswerabilitySignal;
  /** Area under the ROC curve over all questions: 1 separates perfectly, 0.5 is chance. */
  auc: number;
  /** The cut chosen on the train split (all questions when there is no split). */
  threshold: number;
  train: GateRates;
  /** On the held-out test split (undefined without one). */
  test?: GateRates;
}

/**
 * The gate must let at least this share of answerable (train) questions through; among the cuts
 * that do, the one that declines the most unanswerable ones wins. Declining a question the
 * documents do answer costs more than quoting a weak passage with its source shown.
 */
export const MIN_ANSWER_RATE = 0.9;

export interface RetrievalEvaluation {
  corpus: { sources: number; passages: number; failed: { source: string; reason: string }[] };
  questions: number;
  encoder: { trainedSeconds?: number; firstLoss?: number; lastLoss?: number; id: string } | undefined;
  /** Questions left out of recall because the documents do not answer them. */
  unanswerable: number;
  rows: MetricsRow[];
  /** Per language: does hybrid beat BM25 alone? */
  verdicts: { lang: string; helps: boolean; message: string }[];
  answerability: { measurements: AnswerabilityMeasurement[]; recommended: AnswerabilityRule } | undefined;
}

export interface EvaluateRetrievalOptions {
  questionsFile: string;
  kbDir: string;
  /** Use this encoder (an imported one, or one trained before) instead of training one on the folder. */
  embeddings?: DenseEmbeddings;
  training?: EncoderTrainingOptions;
  /** Only the questions of this split (e.g. `test`, the held-out part; the dev sets call the other `dev`). */
  split?: string;
  /** Skip the answerability measurement (it doubles the number of searches). */
  answerability?: boolean;
  onProgress?: (message: string) => void;
}

const RETRIEVERS: { name: Retriever; search: SearchOptions }[] = [
  { name: 'bm25', search: { mode: 'bm25' } },
  { name: 'dense', search: { mode: 'dense' } },
  { name: 'hybrid', search: { mode: 'hybrid', fusion: 'convex' } },
  { name: 'hybrid-rrf', search: { mode: 'hybrid', fusion: 'rrf' } },
];

export async function evaluateRetrieval(options: EvaluateRetrievalOptions): Promise<RetrievalEvaluation> {
  const everyRow = readQuestions(options.questionsFile);
  const all = everyRow.filter((q) => options.split === undefined || q.split === options.split);
  if (all.length === 0) throw new Error(`no questions${options.split !== undefined ? ` of split "${options.split}"` : ''} in ${options.questionsFile}`);
  const questions = all.filter(isAnswerableQuestion);
  const kb = new LocalKnowledgeBase(':memory:', { name: 'eval' });
  try {
    const report = await kb.addPaths([options.kbDir]);
    // The question file may live in the folder (examples/handbook does): not a document, not a failure.
    report.failed = report.failed.filter((f) => resolve(options.kbDir, f.source) !== resolve(options.questionsFile));
    if (kb.chunkCount === 0) throw new Error(`no passages could be indexed from ${options.kbDir}`);
    options.onProgress?.(`indexed ${report.added.length} documents, ${kb.chunkCount} passages`);
    let embeddings = options.embeddings;
    let trained: { seconds: number; firstLoss: number; lastLoss: number } | undefined;
    if (!embeddings) {
      const { trainEncoder } = await import('./encoder-training.ts');
      options.onProgress?.('training the encoder on this folder...');
      const { encoder, report: training } = await trainEncoder(kb.passages(), options.training);
      embeddings = LocalEmbeddings.fromTraining(encoder, training, { sources: report.added.length, passages: kb.chunkCount });
      trained = { seconds: training.seconds, firstLoss: training.firstLoss, lastLoss: training.lastLoss };
    }
    await kb.useDense({ embeddings, store: new InMemoryVectorStore(embeddings) });

    const rows: MetricsRow[] = [];
    const langs = [...new Set(questions.map((q) => q.lang))].sort();
    for (const lang of [...langs, ...(langs.length > 1 ? ['all'] : [])]) {
      const mine = questions.filter((q) => lang === 'all' || q.lang === lang);
      for (const r of RETRIEVERS) rows.push({ lang, mode: r.name, questions: mine.length, ...(await score(kb, mine, r.search)) });
    }
    const verdicts = langs.map((lang) => verdict(lang, rows));
    const answerability = options.answerability === false ? undefined : await measureAnswerability(kb, everyRow); // every split: the cut is chosen on the others and checked on test
    return {
      corpus: { sources: report.added.length, passages: kb.chunkCount, failed: report.failed },
      questions: questions.length,
      unanswerable: all.length - questions.length,
      encoder: { id: embeddings.info.id, ...(trained ? { trainedSeconds: trained.seconds, firstLoss: trained.firstLoss, lastLoss: trained.lastLoss } : {}) },
      rows,
      verdicts,
      answerability,
    };
  } finally {
    kb.close();
  }
}

/** Recall@1, recall@5 and MRR over the top 10, for document hits and for answer-holding passage hits. */
export async function score(
  kb: Pick<LocalKnowledgeBase, 'retrieve'>,
  questions: EvalQuestion[],
  search: SearchOptions,
): Promise<Omit<MetricsRow, 'lang' | 'mode' | 'questions'>> {
  const docRanks: number[] = [];
  const passageRanks: number[] = [];
  for (const q of questions) {
    const found = await kb.retrieve(q.question, 10, search);
    docRanks.push(found.findIndex((p) => p.source === q.source));
    passageRanks.push(found.findIndex((p) => passageAnswers(q, p)));
  }
  return { ...rankMetrics(docRanks), passage: rankMetrics(passageRanks) };
}

/** Recall@1, recall@5 and MRR of 0-based ranks (−1: not found). */
export function rankMetrics(ranks: number[]): { recallAt1: number; recallAt5: number; mrr: number } {
  const n = Math.max(1, ranks.length);
  return {
    recallAt1: ranks.filter((r) => r === 0).length / n,
    recallAt5: ranks.filter((r) => r >= 0 && r < 5).length / n,
    mrr: ranks.reduce((sum, r) => sum + (r >= 0 ? 1 / (r + 1) : 0), 0) / n,
  };
}

function verdict(lang: string, rows: MetricsRow[]): { lang: string; helps: boolean; message: string } {
  const bm25 = rows.find((r) => r.lang === lang && r.mode === 'bm25')!;
  const hybrid = rows.find((r) => r.lang === lang && r.mode === 'hybrid')!;
  // Passage hits: what an answer needs is the passage holding the fact, not just its document.
  const helps = hybrid.passage.mrr > bm25.passage.mrr && hybrid.passage.recallAt5 >= bm25.passage.recallAt5;
  const figures = `passage hits: hybrid MRR ${hybrid.passage.mrr.toFixed(3)} / recall@5 ${hybrid.passage.recallAt5.toFixed(2)} vs BM25 ${bm25.passage.mrr.toFixed(3)} / ${bm25.passage.recallAt5.toFixed(2)}`;
  return {
    lang,
    helps,
    message: helps
      ? `${lang}: the trained encoder helps (${figures})`
      : `${lang}: the trained encoder does NOT help on this corpus (${figures}); BM25 alone is as good — consider more documents or retraining`,
  };
}

const SIGNALS: AnswerabilitySignal[] = ['coverage', 'cosine', 'mean'];

/**
 * Positives: the best passage when the question's source is indexed and ranked first (an answer
 * exists and was found). Negatives: the best passage when that source is hidden (whatever comes
 * first cannot hold the answer). The threshold maximises balanced accuracy on the train split.
 */
export async function measureAnswerability(
  kb: LocalKnowledgeBase,
  questions: EvalQuestion[],
): Promise<{ measurements: AnswerabilityMeasurement[]; recommended: AnswerabilityRule }> {
  const samples: { split: string; answerable: boolean; signals: AnswerabilitySignals }[] = [];
  for (const q of questions) {
    const [found] = await kb.retrieve(q.question, 1);
    // A question the documents do not answer: whatever comes first cannot hold the answer.
    if (!isAnswerableQuestion(q)) {
      if (found) samples.push({ split: q.split ?? 'train', answerable: false, signals: signalsOf(q.question, found) });
      continue;
    }
    if (found && found.source === q.source) samples.push({ split: q.split ?? 'train', answerable: true, signals: signalsOf(q.question, found) });
    const [other] = await kb.retrieve(q.question, 1, { excludeSources: [q.source] });
    if (other) samples.push({ split: q.split ?? 'train', answerable: false, signals: signalsOf(q.question, other) });
  }
  const train = samples.filter((s) => s.split !== 'test');
  const test = samples.filter((s) => s.split === 'test');
  const signals = kb.embeddings ? SIGNALS : (['coverage'] as AnswerabilitySignal[]);
  const measurements = signals.map((signal): AnswerabilityMeasurement => {
    const scored = (set: typeof samples) => set.map((s) => ({ value: signalValue(s.signals, signal), positive: s.answerable }));
    const threshold = chooseThreshold(scored(train));
    return {
      signal,
      auc: auc(scored(samples)),
      threshold,
      train: gateRates(scored(train), threshold),
      ...(test.length > 0 ? { test: gateRates(scored(test), threshold) } : {}),
    };
  });
  const best = [...measurements].sort((a, b) => b.train.declined - a.train.declined || b.auc - a.auc)[0]!;
  return { measurements, recommended: { signal: best.signal, threshold: best.threshold } };
}

function signalsOf(question: string, p: { title: string; text: string; cosine?: number }): AnswerabilitySignals {
  return { coverage: coverage(question, p), ...(p.cosine !== undefined ? { cosine: p.cosine } : {}) };
}

interface Scored {
  value: number;
  positive: boolean;
}

function gateRates(samples: Scored[], threshold: number): GateRates {
  const pos = samples.filter((s) => s.positive);
  const neg = samples.filter((s) => !s.positive);
  return {
    answered: pos.length ? pos.filter((s) => s.value >= threshold).length / pos.length : 1,
    declined: neg.length ? neg.filter((s) => s.value < threshold).length / neg.length : 0,
  };
}

/** The highest cut (midway between observed values) that still answers MIN_ANSWER_RATE of the answerable questions. */
function chooseThreshold(samples: Scored[]): number {
  const values = [...new Set(samples.map((s) => s.value))].sort((a, b) => a - b);
  let best = values[0] ?? 0;
  for (let i = 1; i < values.length; i++) {
    const threshold = (values[i - 1]! + values[i]!) / 2;
    if (gateRates(samples, threshold).answered >= MIN_ANSWER_RATE) best = threshold;
  }
  return Math.floor(best * 1000) / 1000;
}

/** Probability that a random positive scores above a random negative (ties count half). */
function auc(samples: Scored[]): number {
  const pos = samples.filter((s) => s.positive).map((s) => s.value);
  const neg = samples.filter((s) => !s.positive).map((s) => s.value);
  if (pos.length === 0 || neg.length === 0) return 0.5;
  let wins = 0;
  for (const p of pos) for (const n of neg) wins += p > n ? 1 : p === n ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}

/** The evaluation as the CLI prints it: one table, the verdicts, the measured threshold. */
export function formatEvaluation(ev: RetrievalEvaluation): string {
  const lines: string[] = [];
  lines.push(`corpus: ${ev.corpus.sources} documents, ${ev.corpus.passages} passages; ${ev.questions} questions${ev.unanswerable > 0 ? ` (+${ev.unanswerable} unanswerable, used only for the "don't know" cut)` : ''}`);
  for (const f of ev.corpus.failed) lines.push(`  skipped ${f.source}: ${f.reason}`);
  if (ev.encoder?.trainedSeconds !== undefined) {
    lines.push(`encoder: trained here in ${ev.encoder.trainedSeconds.toFixed(1)} s (loss ${ev.encoder.firstLoss?.toFixed(3)} -> ${ev.encoder.lastLoss?.toFixed(3)})`);
  } else if (ev.encoder) lines.push(`encoder: ${ev.encoder.id}`);
  lines.push('');
  lines.push('                            document hit (any passage)   passage hit (holds the answer)');
  lines.push('lang  retriever   questions  recall@1  recall@5  MRR    recall@1  recall@5  MRR');
  const f = (v: number, width: number) => v.toFixed(3).padStart(width);
  for (const r of ev.rows) {
    lines.push(
      `${r.lang.padEnd(5)} ${r.mode.padEnd(11)} ${String(r.questions).padStart(9)}  ${f(r.recallAt1, 8)}  ${f(r.recallAt5, 8)}  ${f(r.mrr, 5)}  ${f(r.passage.recallAt1, 8)}  ${f(r.passage.recallAt5, 8)}  ${f(r.passage.mrr, 5)}`,
    );
  }
  lines.push('');
  for (const v of ev.verdicts) lines.push(v.message);
  if (ev.answerability) {
    lines.push('');
    lines.push(`"don't know" threshold (each question with its source indexed vs hidden; cut answers >= ${MIN_ANSWER_RATE * 100}% of answerable train questions):`);
    const rates = (r: GateRates) => `answers ${(r.answered * 100).toFixed(0)}%, declines ${(r.declined * 100).toFixed(0)}%`;
    for (const m of ev.answerability.measurements) {
      lines.push(
        `  ${m.signal.padEnd(8)} AUC ${m.auc.toFixed(3)}  threshold ${m.threshold.toFixed(3)}  train: ${rates(m.train)}${m.test ? `  test: ${rates(m.test)}` : ''}`,
      );
    }
    lines.push(`  recommended: ${ev.answerability.recommended.signal} >= ${ev.answerability.recommended.threshold}`);
  }
  return lines.join('\n');
}
