import { join } from 'node:path';
import { z } from 'zod';
import { LocalEmbeddings } from '../../rag/local-embeddings.ts';
import { askedPairs, knowledgeBaseFiles } from '../../rag/open-knowledge-base.ts';
import { rankMetrics } from '../../rag/retrieval-eval.ts';
import { selectedEncoder } from '../../rag/imported-embeddings.ts';
import { cosine } from '../../rag/bag-encoder.ts';
import { DEFAULT_TRAINING, trainEncoder } from '../../rag/encoder-training.ts';
import type { AskedPair } from '../../rag/contrastive-pairs.ts';
import { LocalKnowledgeBase } from '../../rag/local-knowledge-base.ts';
import { isHeldOutQuestion, likedPassages, questionDraw, questionKey, votedAnswers } from '../feedback-datasets.ts';
import type { RunStage, StageResult } from '../jobs/stage.ts';
import { int, num, parseStageParams } from './stage-params.ts';

/** Held-out liked questions below which the vote check says nothing (the documents' check still runs). */
const MIN_HELD_OUT = 3;
/** Steps per member when continuing from the encoder in use (a fresh one trains DEFAULT_TRAINING.steps). */
const WARM_STEPS = 150;

/**
 * `/train embeddings [heldOut=0.2] [steps=150] [askedShare=0.25] [anonymousVotes=false]`: the retrieval encoder
 * (rag/encoder-training.ts) retrained on the documents and on the questions people liked the
 * answers to — each question against the passage its answer cited. Employees ask in their own
 * words ("my grandma passed away") for what the handbook writes in its own (bereavement leave);
 * the documents cannot teach that link, their votes can.
 *
 * It continues from the encoder in use (what it learnt stays where the votes do not pull). The
 * gate, before the new encoder replaces that one: on liked questions held out by question (at
 * least 3), the passage people liked must rank better by the encoder's similarity than with the
 * current encoder, and the documents' own links (each section's heading to its text) must not get
 * worse; with too few liked questions to hold any out, the encoder in use stays.
 * Only then is it written to <home>/embeddings; the serving process picks it up when the job
 * succeeds (app/runtime.ts) and re-embeds the knowledge bases. A home that serves an imported
 * encoder keeps it: this trains only the project's own.
 */
export const runStage: RunStage = async (ctx) => {
  const { params, home, signal, progress, log } = ctx;
  const p = parseStageParams('embeddings', params, {
    heldOut: num().refine((v) => v >= 0 && v < 1, 'must be at least 0 and below 1').optional(),
    steps: int().refine((v) => v > 0, 'must be positive').optional(),
    askedShare: num().refine((v) => v >= 0 && v <= 0.75, 'must be between 0 and 0.75').optional(),
    seed: int().optional(),
    /** `anonymousVotes=false`: learn only from votes of identities someone vouches for (docs/feedback-loop.md). */
    anonymousVotes: z.enum(['true', 'false']).optional(),
  });
  const embeddingsDir = join(home, 'embeddings');
  const imported = selectedEncoder(embeddingsDir);
  if (imported) throw new Error(`embeddings: the knowledge base uses the imported encoder ${imported}; this trains only teamllm's own (teamllm kb reindex --encoder trained switches back first)`);
  const heldOut = p.heldOut ?? 0.2;
  const seed = p.seed ?? 0;

  const passages = homePassages(home);
  if (passages.length < 2) throw new Error('embeddings: the knowledge base has fewer than 2 passages; add documents first (/kb add, teamllm kb add)');
  const store = ctx.store.open();
  const liked = store ? likedPassages(await votedAnswers(store, p.anonymousVotes === 'false' ? { anonymousVotes: false } : {}).finally(() => store.close())) : [];
  const pairs = askedPairs(passages, liked);
  const { train, check } = splitByQuestion(pairs, heldOut, seed);
  log(`${passages.length} passages; ${liked.length} liked answers citing a passage, ${pairs.length} found in the knowledge base: training on ${train.length}, holding out ${check.length}`);

  const current = LocalEmbeddings.load(embeddingsDir);
  // From the encoder in use: the votes move the askers' words, the rest stays where it was.
  const { encoder, report } = await trainEncoder(passages, {
    asked: train,
    ...(current ? { start: current.encoder } : {}),
    ...(p.askedShare !== undefined ? { askedShare: p.askedShare } : {}),
    steps: p.steps ?? (current ? WARM_STEPS : DEFAULT_TRAINING.steps),
    seed: seed + 1,
    signal,
    onProgress: ({ step, steps, loss }) => progress({ stage: 'encoder', step, totalSteps: steps, loss }),
  });
  const texts = passages.map((x) => `${x.title}\n${x.text}`);
  const headings = passages.map((x, i) => ({ query: x.title, passage: i })).filter((x) => x.query.trim());
  const newMrr = reciprocalRanks(encoder, texts);
  const oldMrr = current ? reciprocalRanks(current.encoder, texts) : undefined;
  const pct = (v: number) => v.toFixed(3);
  const reasons: string[] = [];
  let passed = true;
  const docsAfter = newMrr(headings);
  const docsBefore = oldMrr?.(headings);
  // The documents' own links may move a little as the votes pull words around; a real loss is not kept.
  if (docsBefore !== undefined && docsAfter < docsBefore - 0.02) passed = false;
  reasons.push(`the documents' headings find their sections (MRR): ${docsBefore === undefined ? 'no encoder before' : pct(docsBefore)} → ${pct(docsAfter)}${docsBefore !== undefined && docsAfter < docsBefore - 0.02 ? ': worse' : ''}`);
  let votesAfter: number | undefined;
  let votesBefore: number | undefined;
  if (check.length >= MIN_HELD_OUT) {
    votesAfter = newMrr(check);
    votesBefore = oldMrr?.(check);
    // What the votes taught must show on questions it did not see; not worse is not enough to replace it.
    const better = votesBefore === undefined || votesAfter > votesBefore;
    if (!better) passed = false;
    reasons.push(`held-out liked questions find the passage people liked (MRR): ${votesBefore === undefined ? 'no encoder before' : pct(votesBefore)} → ${pct(votesAfter)} (${check.length})${better ? '' : ': not better'}`);
  } else if (oldMrr) {
    // Nothing to check the votes on: an encoder that only might be better does not replace one in use.
    passed = false;
    reasons.push(`${check.length} held-out liked question${check.length === 1 ? '' : 's'}: too few to check what the votes taught (${MIN_HELD_OUT} needed, from ${2 * MIN_HELD_OUT} liked questions)`);
  } else {
    reasons.push(`${check.length} held-out liked question${check.length === 1 ? '' : 's'}; no encoder before, so the documents' check decides`);
  }
  const metrics: Record<string, number> = {
    passages: passages.length,
    likedQuestions: pairs.length,
    trainedOn: train.length,
    heldOut: check.length,
    headingMrr: docsAfter,
    ...(docsBefore !== undefined ? { baseHeadingMrr: docsBefore } : {}),
    ...(votesAfter !== undefined ? { likedMrr: votesAfter } : {}),
    ...(votesBefore !== undefined ? { baseLikedMrr: votesBefore } : {}),
    firstLoss: report.firstLoss,
    lastLoss: report.lastLoss,
  };
  const gate = { passed, reasons };
  if (!passed) {
    return { summary: `The retrained encoder was not kept (${reasons.filter((r) => /worse$|not better$|too few/.test(r)).join('; ')}); the knowledge base keeps the one it has.`, metrics, gate } satisfies StageResult;
  }
  const trained = LocalEmbeddings.fromTraining(encoder, report, { sources: new Set(passages.map((x) => x.source)).size, passages: passages.length });
  trained.save(embeddingsDir);
  log(`saved encoder ${trained.info.id} to ${embeddingsDir}`);
  return {
    summary: `Encoder ${trained.info.id} trained on ${passages.length} passages and ${train.length} questions people liked the answers to${votesAfter !== undefined ? `; held-out liked questions MRR ${votesBefore === undefined ? '—' : pct(votesBefore)} → ${pct(votesAfter)}` : ''}. The knowledge base is re-embedded with it now.`,
    metrics,
    gate,
  };
};

/**
 * Held out by question (the same question never on both sides): `fraction` of them, but at least
 * MIN_HELD_OUT once there are twice that many — a check on one or two questions says nothing.
 */
function splitByQuestion(pairs: AskedPair[], fraction: number, seed: number): { train: AskedPair[]; check: AskedPair[] } {
  const keys = [...new Set(pairs.map((a) => questionKey(a.query)))];
  let held = new Set(keys.filter((k) => isHeldOutQuestion(k, fraction, seed)));
  if (fraction > 0 && held.size < MIN_HELD_OUT && keys.length >= 2 * MIN_HELD_OUT) {
    // The questions whose draw falls lowest: those isHeldOutQuestion would hold out first.
    held = new Set([...keys].sort((a, b) => questionDraw(a, seed) - questionDraw(b, seed)).slice(0, MIN_HELD_OUT));
  }
  return { train: pairs.filter((a) => !held.has(questionKey(a.query))), check: pairs.filter((a) => held.has(questionKey(a.query))) };
}

/** Every knowledge base of the home, read-only: their passages in one list (as `trainEmbeddings` reads them). */
function homePassages(home: string) {
  return knowledgeBaseFiles(home).flatMap((file) => {
    const kb = new LocalKnowledgeBase(file);
    try {
      return kb.passages();
    } finally {
      kb.close();
    }
  });
}

/**
 * An encoder's MRR of each query's passage among all passages, by cosine alone; the passages are
 * embedded once per encoder, however many query sets it is measured on.
 */
function reciprocalRanks(encoder: { embed(text: string): number[] }, texts: string[]): (queries: AskedPair[]) => number {
  const vectors = texts.map((t) => encoder.embed(t));
  return (queries) =>
    rankMetrics(
      queries.map((q) => {
        const v = encoder.embed(q.query);
        const scores = vectors.map((d) => cosine(v, d));
        const own = scores[q.passage]!;
        return scores.filter((s, i) => i !== q.passage && s > own).length;
      }),
    ).mrr;
}
