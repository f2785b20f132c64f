import { createHash } from 'node:crypto';
import type { BotStore, RatedAnswer, RatedAnswersOptions, Source } from '../core/index.ts';

export type ExportKind = 'sft' | 'preference' | 'kto';
export const EXPORT_KINDS: ExportKind[] = ['sft', 'preference', 'kto'];

/** Passages as they go into datasets: what the model saw, without retrieval scores. */
function context(passages: Source[]) {
  return passages.map((p) => ({ source: p.source, title: p.title, text: p.text }));
}

/** Same question asked twice counts as one prompt, whatever the spacing or case. */
export function questionKey(question: string): string {
  return question.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').replace(/[?？!！.。]+$/u, '').trim();
}

function net(r: RatedAnswer): number {
  return r.up - r.down;
}

/**
 * Datasets from the answer records and their votes, one JSON object per line:
 * - `sft`: answers liked more than disliked, as chat messages (`messages`) plus the passages;
 * - `kto`: every answer with a net vote, labelled true (👍) or false (👎), as TRL's KTO reads it;
 * - `preference`: for a question with both a liked and a disliked answer, `{prompt, chosen, rejected}`.
 * Each line names the model that wrote the answer, so a trainer can filter (e.g. retrieval-only quotes).
 */
export async function* exportDataset(store: BotStore, kind: ExportKind, votes: RatedAnswersOptions = {}): AsyncIterable<Record<string, unknown>> {
  const rated = await votedAnswers(store, votes);
  if (kind === 'sft') {
    for (const r of rated.filter((x) => net(x) > 0)) {
      yield {
        messages: [
          { role: 'user', content: r.answer.question },
          { role: 'assistant', content: r.answer.output },
        ],
        context: context(r.answer.passages),
        answerId: r.answer.id,
        model: `${r.answer.modelName}@${r.answer.modelVersion}`,
        votes: { up: r.up, down: r.down },
      };
    }
    return;
  }
  if (kind === 'kto') {
    for (const r of rated) {
      yield {
        prompt: r.answer.question,
        completion: r.answer.output,
        label: net(r) > 0,
        context: context(r.answer.passages),
        answerId: r.answer.id,
        model: `${r.answer.modelName}@${r.answer.modelVersion}`,
      };
    }
    return;
  }
  for (const { chosen, rejected } of preferencePairs(rated)) {
    yield {
      prompt: chosen.answer.question,
      chosen: chosen.answer.output,
      rejected: rejected.answer.output,
      context: context(chosen.answer.passages),
      chosenId: chosen.answer.id,
      rejectedId: rejected.answer.id,
    };
  }
}

/** Answers with a net vote (more 👍 than 👎 or the reverse), oldest first; ties carry no label. */
export async function votedAnswers(store: BotStore, votes: RatedAnswersOptions = {}): Promise<RatedAnswer[]> {
  const rated: RatedAnswer[] = [];
  for await (const r of store.ratedAnswers(votes)) {
    if (net(r) !== 0) rated.push(r);
  }
  return rated;
}

/**
 * For the retrieval encoder (rag/open-knowledge-base.ts `trainEmbeddings`): each question whose
 * answer people liked, with the passage that answer cited (its first [n]). The employees' own
 * words for a document's are what no amount of the documents can teach; an answer that cited
 * nothing (a "don't know") or more 👎 than 👍 teaches nothing here.
 */
export function likedPassages(rated: readonly RatedAnswer[]): { question: string; source: string; text: string }[] {
  const out: { question: string; source: string; text: string }[] = [];
  for (const r of rated) {
    if (net(r) <= 0) continue;
    const cited = Number(/\[(\d+)\]/.exec(r.answer.output)?.[1]);
    const passage = Number.isInteger(cited) ? r.answer.passages[cited - 1] : undefined;
    if (passage?.text) out.push({ question: r.answer.question, source: passage.source, text: passage.text });
  }
  return out;
}

/**
 * Every (liked, disliked) pair of answers to the same question (`questionKey`), e.g. an answer
 * and its regeneration, or two model versions answering alike questions. Most-liked first.
 */
export function preferencePairs(rated: readonly RatedAnswer[]): { key: string; chosen: RatedAnswer; rejected: RatedAnswer }[] {
  const byQuestion = new Map<string, RatedAnswer[]>();
  for (const r of rated) {
    const key = questionKey(r.answer.question);
    byQuestion.set(key, [...(byQuestion.get(key) ?? []), r]);
  }
  const out: { key: string; chosen: RatedAnswer; rejected: RatedAnswer }[] = [];
  for (const [key, group] of byQuestion) {
    const liked = group.filter((r) => net(r) > 0).sort((a, b) => net(b) - net(a));
    const disliked = group.filter((r) => net(r) < 0).sort((a, b) => net(a) - net(b));
    for (const chosen of liked) for (const rejected of disliked) out.push({ key, chosen, rejected });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reward-model data: single votes and pairs, split into train and held-out by question.

/** What the reward model reads for one answer (RatedExample) and where it came from. */
export interface RewardExample {
  question: string;
  passages: { source?: string; title?: string; text: string }[];
  answer: string;
  answerId: string;
  /** questionKey(question): the unit of the held-out split. */
  questionKey: string;
  /** modelName@modelVersion of the answer. */
  model: string;
}

/** One answer with its net vote: label true = 👍. */
export interface RewardVote extends RewardExample {
  label: boolean;
  up: number;
  down: number;
}

/** Two answers to one question, the first liked, the second disliked. */
export interface RewardPair {
  questionKey: string;
  chosen: RewardExample;
  rejected: RewardExample;
}

export interface RewardSplit {
  votes: RewardVote[];
  pairs: RewardPair[];
}

export interface RewardData {
  train: RewardSplit;
  heldOut: RewardSplit;
  stats: {
    /** Answers with a net vote. */
    votes: number;
    up: number;
    down: number;
    pairs: number;
    questions: number;
    heldOutQuestions: number;
  };
}

/**
 * Whether a question belongs to the held-out split: a hash of its questionKey (and the seed)
 * mapped to [0, 1) and compared with `fraction`. Deterministic, and the same for every answer to
 * that question, so nothing learned from one answer can leak into the measure of another.
 */
export function isHeldOutQuestion(key: string, fraction: number, seed = 0): boolean {
  return fraction > 0 && questionDraw(key, seed) < fraction;
}

/** Where a question falls in [0, 1) for the held-out split: sha256(seed, questionKey), the same on every run. */
export function questionDraw(key: string, seed = 0): number {
  return createHash('sha256').update(`${seed}\u0000${key}`).digest().readUInt32BE(0) / 2 ** 32;
}

function rewardExample(r: RatedAnswer): RewardExample {
  return {
    question: r.answer.question,
    passages: context(r.answer.passages),
    answer: r.answer.output,
    answerId: r.answer.id,
    questionKey: questionKey(r.answer.question),
    model: `${r.answer.modelName}@${r.answer.modelVersion}`,
  };
}

/**
 * The reward model's data from the feedback store: every answer with a net vote (pointwise) and
 * every liked/disliked pair of answers to one question, split into train and held-out by
 * question (never by row), `heldOutFraction` of the questions held out.
 */
export async function rewardData(store: BotStore, options: { heldOutFraction?: number; seed?: number; anonymousVotes?: boolean } = {}): Promise<RewardData> {
  const fraction = options.heldOutFraction ?? 0.2;
  const seed = options.seed ?? 0;
  const rated = await votedAnswers(store, options.anonymousVotes === false ? { anonymousVotes: false } : {});
  const train: RewardSplit = { votes: [], pairs: [] };
  const heldOut: RewardSplit = { votes: [], pairs: [] };
  const questions = new Set<string>();
  const held = new Set<string>();
  const split = (key: string) => {
    questions.add(key);
    if (!isHeldOutQuestion(key, fraction, seed)) return train;
    held.add(key);
    return heldOut;
  };
  for (const r of rated) {
    const ex = rewardExample(r);
    split(ex.questionKey).votes.push({ ...ex, label: net(r) > 0, up: r.up, down: r.down });
  }
  const pairs = preferencePairs(rated);
  for (const p of pairs) split(p.key).pairs.push({ questionKey: p.key, chosen: rewardExample(p.chosen), rejected: rewardExample(p.rejected) });
  const up = rated.filter((r) => net(r) > 0).length;
  return { train, heldOut, stats: { votes: rated.length, up, down: rated.length - up, pairs: pairs.length, questions: questions.size, heldOutQuestions: held.size } };
}
