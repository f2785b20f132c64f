/**
 * Training data for the answer selector (rag/answer-selector.ts): questions whose right answer is
 * known — generated from the knowledge base's own documents (qa-generator.ts), or answers people
 * voted on — asked through the same retrieval and candidate proposal as the bot, each candidate
 * labelled right when it holds the known answer.
 */
import type { RatedAnswer, Source } from '../../core/index.ts';
import { CandidateAnswerer, directAnswerOf, directAnswerText, type CandidateKnowledgeBase, type CandidateScorer } from '../../rag/candidate-answerer.ts';
import { hasCjk } from '../../model/text/cjk.ts';
import { DEFAULT_SELECTOR, selectorAccuracy, trainSelector, type SelectorGroup, type SelectorWeights } from '../../rag/answer-selector.ts';
import { answerTokens } from '../eval/qa-eval.ts';

export interface KnownAnswer {
  question: string;
  answer: string;
}

/** A candidate is right when it holds the known answer — or, for a long answer (a sentence), is most of it. */
export function isRightCandidate(candidate: string, answer: string): boolean {
  const c = answerTokens(candidate).join(' ');
  const a = answerTokens(answer).join(' ');
  if (!c || !a) return false;
  if (c.includes(a)) return true;
  return a.length >= 24 && a.includes(c) && c.length >= 0.6 * a.length;
}

export interface SelectorDataOptions {
  kb: CandidateKnowledgeBase;
  scorer?: CandidateScorer;
  /** Passages per question (as the bot retrieves them; default 4). */
  passages?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export async function selectorGroups(items: KnownAnswer[], options: SelectorDataOptions): Promise<SelectorGroup[]> {
  const answerer = new CandidateAnswerer({ kb: options.kb, ...(options.scorer ? { scorer: options.scorer } : {}) });
  const groups: SelectorGroup[] = [];
  for (const [i, item] of items.entries()) {
    options.signal?.throwIfAborted();
    const hits = await options.kb.retrieve(item.question, options.passages ?? 4);
    const passages: Source[] = hits.map(({ source, title, text, score }) => ({ source, title, text, score }));
    const pool = await answerer.rank({ question: item.question, history: [] }, passages);
    // The direct answer should be the most specific right candidate ("25 days", not the whole row).
    const holds = pool.map((c) => isRightCandidate(c.text, item.answer));
    const shortest = Math.min(...pool.filter((_, j) => holds[j]).map((c) => c.text.length));
    const right = pool.map((c, j) => holds[j]! && c.text.length <= 1.5 * shortest);
    if (pool.length > 1) groups.push({ features: pool.map((c) => c.features), right });
    options.onProgress?.(i + 1, items.length);
  }
  return groups;
}

/**
 * Trains a selector on `train` and keeps it only if it chooses the right candidate more often than
 * the default weighting on `heldOut` (otherwise the default, with the comparison recorded): on a tie
 * the rules stay, since a weight on the model's score was measured to hurt on real questions.
 */
export function fitSelector(train: SelectorGroup[], heldOut: SelectorGroup[]): SelectorWeights {
  const trained = trainSelector(train);
  const accuracy = selectorAccuracy(trained, heldOut);
  const baseline = selectorAccuracy(DEFAULT_SELECTOR, heldOut);
  const record = { questions: train.length, heldOut: heldOut.length, heldOutAccuracy: accuracy, defaultHeldOutAccuracy: baseline };
  return accuracy > baseline ? { ...trained, trained: record } : { ...DEFAULT_SELECTOR, trained: { ...record, heldOutAccuracy: baseline } };
}

export interface TrainAnswerSelectorOptions extends SelectorDataOptions {
  /** Questions with known answers (generated from the documents); the last fifth is held out. */
  questions: KnownAnswer[];
}

/** The whole step the quickstart runs: candidate sets for the questions, a fit, the held-out check. */
export async function trainAnswerSelector(options: TrainAnswerSelectorOptions): Promise<SelectorWeights> {
  const groups = await selectorGroups(options.questions, options);
  const cut = Math.floor(groups.length * 0.8);
  return fitSelector(groups.slice(0, cut), groups.slice(cut));
}

export interface VoteGroups {
  groups: (SelectorGroup & { question: string })[];
  /** Rated answers that teach the selector nothing: refusals (no candidates), ties, or answers not chosen from candidates (another answerer wrote them). */
  skipped: { refused: number; tied: number; notCandidates: number };
}

const bare = (t: string) => t.replace(/[\s,;:.，；：。]+$/u, '').trim().toLowerCase();

/**
 * Selector examples from the answers people rated: each rated answer's question and the passages it
 * was answered from are proposed again, the candidate it gave is found, and a net 👍 makes it the
 * right one, a net 👎 the rejected one (which other candidate was right is unknown).
 */
export async function voteGroups(rated: RatedAnswer[], options: SelectorDataOptions): Promise<VoteGroups> {
  const answerer = new CandidateAnswerer({ kb: options.kb, ...(options.scorer ? { scorer: options.scorer } : {}) });
  const out: VoteGroups = { groups: [], skipped: { refused: 0, tied: 0, notCandidates: 0 } };
  for (const [i, r] of rated.entries()) {
    options.signal?.throwIfAborted();
    const net = r.up - r.down;
    if (net === 0) out.skipped.tied++;
    else if (r.answer.passages.length === 0) out.skipped.refused++;
    else {
      const { question, passages } = r.answer;
      const pool = await answerer.rank({ question, history: [] }, passages);
      const given = bare(directAnswerOf(r.answer.output));
      const zh = hasCjk(question);
      const chosen = pool.findIndex((c) => bare(directAnswerText(c.text, zh)) === given);
      if (chosen < 0 || pool.length < 2) out.skipped.notCandidates++;
      else
        out.groups.push({
          question,
          features: pool.map((c) => c.features),
          right: pool.map((_, j) => net > 0 && j === chosen),
          ...(net < 0 ? { rejected: chosen } : {}),
        });
    }
    options.onProgress?.(i + 1, rated.length);
  }
  return out;
}
