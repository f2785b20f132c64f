/**
 * Feedback for the proof that the loop works: answers of the kinds a small RAG bot really gives
 * (a quote of the passage, a bare short answer, a hedge, a quote of the wrong document), saved
 * as answer records and rated by SimulatedUsers through the store — so the reward model is
 * trained from exactly what real users' thumbs would give it.
 *
 * Facts are {question, passage, answer}; `handbookFacts` builds them from the sample handbook's
 * questions (the passage is the document line holding the gold answer), `syntheticFacts` builds a
 * small, fixed world for fast tests: five- and six-word policy sentences, so that passage, question
 * and answer fit a 128-character block together and a character-level model can read them.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { AnswerRecord, BotStore, Source } from '../../core/index.ts';
import { Random, mixSeed } from '../../model/random.ts';
import type { SimulatedUsers } from '../simulated-users.ts';

export interface Fact {
  question: string;
  /** The retrieved passage that holds the answer. */
  passage: Source;
  /** The short answer (a few words, e.g. "25 days"). */
  answer: string;
  /** The sentence of the passage the answer is in (what a quoting answer repeats). */
  sentence: string;
}

export type AnswerKind = 'quote' | 'quote-bare' | 'short' | 'hedge' | 'wrong-quote';
export const ANSWER_KINDS: readonly AnswerKind[] = ['quote', 'quote-bare', 'short', 'hedge', 'wrong-quote'];

const HEDGES = ['I am not sure, please ask HR.', 'I could not find that.', 'Ask your manager.', 'That depends on your team.'];

/** How a quoting answer starts (the bot cites its source). */
const LEAD = 'Handbook: ';

/** One answer of a kind: the text, and the passages the bot had retrieved for it. */
export function answerOf(kind: AnswerKind, fact: Fact, other: Fact, rng: Random): string {
  switch (kind) {
    case 'quote':
      return `${LEAD}${fact.sentence}`;
    case 'quote-bare':
      return fact.sentence;
    case 'short':
      return `${fact.answer}.`;
    case 'hedge':
      return HEDGES[rng.int(HEDGES.length)]!;
    case 'wrong-quote':
      return `${LEAD}${other.sentence}`;
  }
}

/** Every text the simulated answers and their passages can contain (e.g. to build a character vocabulary). */
export function scenarioText(facts: readonly Fact[]): string {
  const parts = facts.flatMap((f) => [f.question, f.answer, f.sentence, f.passage.text, f.passage.title, f.passage.source]);
  return [...parts, ...HEDGES, LEAD, '[]()0123456789.,:\n'].join('\n');
}

export interface SimulateOptions {
  /** Answers per question (as if regenerated): these make the pairs. */
  answersPerQuestion?: number;
  /** Share of answers of each kind (default: a third quotes, the rest split over the others). */
  kinds?: Partial<Record<AnswerKind, number>>;
  /** Extra passages retrieved with the right one (from other facts). */
  distractors?: number;
  modelVersion?: string;
  seed?: number;
}

/**
 * Saves `answersPerQuestion` answers to every fact's question (kinds drawn at random) and has
 * `users` rate each one. Returns the records and the counts of 👍 and 👎.
 */
export async function simulateFeedback(
  store: BotStore,
  facts: readonly Fact[],
  users: SimulatedUsers,
  options: SimulateOptions = {},
): Promise<{ answers: AnswerRecord[]; up: number; down: number; kinds: Record<AnswerKind, number> }> {
  if (facts.length < 2) throw new Error('simulateFeedback needs at least two facts');
  const rng = new Random(mixSeed(options.seed ?? 1, 0xfeed));
  const weights = { quote: 0.2, 'quote-bare': 0.15, short: 0.25, hedge: 0.2, 'wrong-quote': 0.2, ...(options.kinds ?? {}) };
  const total = ANSWER_KINDS.reduce((n, k) => n + weights[k], 0);
  const drawKind = (): AnswerKind => {
    let u = rng.uniform() * total;
    for (const k of ANSWER_KINDS) {
      u -= weights[k];
      if (u < 0) return k;
    }
    return 'hedge';
  };
  const per = options.answersPerQuestion ?? 3;
  const answers: AnswerRecord[] = [];
  const kinds = Object.fromEntries(ANSWER_KINDS.map((k) => [k, 0])) as Record<AnswerKind, number>;
  for (let i = 0; i < facts.length; i++) {
    const fact = facts[i]!;
    const otherIndex = (j: number) => (i + 1 + j + rng.int(facts.length - 1)) % facts.length;
    for (let a = 0; a < per; a++) {
      let o = otherIndex(a);
      if (o === i) o = (i + 1) % facts.length;
      const other = facts[o]!;
      const passages: Source[] = [fact.passage];
      for (let d = 0; d < (options.distractors ?? 1); d++) {
        let k = otherIndex(d + 7);
        if (k === i || k === o) k = (Math.max(i, o) + 1) % facts.length;
        if (k !== i && k !== o) passages.push(facts[k]!.passage);
      }
      // The right passage is not always first.
      if (rng.uniform() < 0.5) passages.reverse();
      const kind = drawKind();
      kinds[kind] += 1;
      answers.push(
        await store.saveAnswer({
          platform: 'web',
          workspace: 'sim',
          channel: 'sim',
          messageId: `sim-${i}-${a}`,
          userId: 'sim-asker',
          question: fact.question,
          passages,
          prompt: '',
          output: answerOf(kind, fact, other, rng),
          modelName: 'simulated',
          modelVersion: options.modelVersion ?? kind,
          latencyMs: 0,
        }),
      );
    }
  }
  const rated = await users.rate(store, answers);
  return { answers, up: rated.up, down: rated.down, kinds };
}

const SUBJECTS = [
  'leave', 'parking', 'laptop', 'badge', 'overtime', 'travel', 'phone', 'desk', 'training', 'bike',
  'visa', 'screen', 'course', 'sabbatical', 'dinner', 'taxi', 'hotel', 'train', 'gym', 'lunch',
];

const TEMPLATES: { sentence: (s: string, n: number) => string; question: (s: string) => string; answer: (n: number) => string }[] = [
  {
    sentence: (s, n) => `${s[0]!.toUpperCase()}${s.slice(1)} requests take ${n} days.`,
    question: (s) => `How long do ${s} requests take?`,
    answer: (n) => `${n} days`,
  },
  {
    sentence: (s, n) => `The ${s} budget is ${n * 50} euros.`,
    question: (s) => `What is the ${s} budget?`,
    answer: (n) => `${n * 50} euros`,
  },
];

/**
 * A fixed little world of `count` facts (at most 40): short sentences about made-up policies, each
 * with its question. Deterministic; used by tests where a character-level model must read them.
 */
export function syntheticFacts(count = 40, seed = 3): Fact[] {
  const rng = new Random(mixSeed(seed, 40));
  const out: Fact[] = [];
  for (let i = 0; i < Math.min(count, SUBJECTS.length * TEMPLATES.length); i++) {
    const s = SUBJECTS[i % SUBJECTS.length]!;
    const t = TEMPLATES[Math.floor(i / SUBJECTS.length)]!;
    const n = 2 + rng.int(9);
    const sentence = t.sentence(s, n);
    out.push({ question: t.question(s), passage: { source: `p${i}`, title: '', text: sentence, score: 1 }, answer: t.answer(n), sentence });
  }
  return out;
}

/**
 * Facts from the sample handbook (examples/handbook): each question of questions.jsonl whose gold
 * answer appears verbatim in one line of its source document, with that line as the sentence and
 * the line with its neighbours as the passage.
 */
export async function handbookFacts(handbookDir: string, options: { lang?: 'en' | 'zh' | 'all'; maxSentenceChars?: number } = {}): Promise<Fact[]> {
  const lines = (await fs.readFile(path.join(handbookDir, 'questions.jsonl'), 'utf8')).split('\n').filter((l) => l.trim());
  const out: Fact[] = [];
  const docs = new Map<string, string[]>();
  for (const line of lines) {
    const q = JSON.parse(line) as { question: string; answer: string; source: string; lang: string };
    if (options.lang && options.lang !== 'all' && q.lang !== options.lang) continue;
    let docLines = docs.get(q.source);
    if (!docLines) {
      const text = await fs.readFile(path.join(handbookDir, q.source), 'utf8');
      docLines = text
        .split('\n')
        .map((l) => l.replace(/^[-*#>|\s]+/, '').replace(/\*\*/g, '').trim())
        .filter((l) => l.length > 0);
      docs.set(q.source, docLines);
    }
    const at = docLines.findIndex((l) => l.includes(q.answer) && l.length <= (options.maxSentenceChars ?? 200));
    if (at < 0) continue;
    const sentence = docLines[at]!;
    const passage = docLines.slice(Math.max(0, at - 1), at + 2).join('\n');
    out.push({ question: q.question, passage: { source: q.source, title: path.basename(q.source, '.md'), text: passage, score: 1 }, answer: q.answer, sentence });
  }
  return out;
}
