/**
 * The answer users see: the direct answer first (a value, a clause or one sentence, in the
 * passages' words), then the sentence that supports it, quoted with its [n] citation; the sources
 * follow in every platform's own layout.
 *
 *   retrieve -> answerability gate -> candidates proposed by rules (answer-candidates.ts)
 *            -> the model scores each candidate (CandidateScorer) -> the best one, composed
 *
 * The model decides: a learned selector (answer-selector.ts) weighs each candidate's rule features
 * and the model's own score for it (the mean log-probability of the candidate as the answer to the
 * question, given the passages, as SFT trained it). Fine-tuning, DPO/KTO and PPO change that
 * probability and votes retrain the selector, so the 👍/👎 loop moves which candidate is chosen. Every word of the answer is a
 * verbatim piece of a retrieved passage: the answer never says what the passages do not.
 */
import type { AnswerEvent, AnswerRequest, Answerer, ConversationTurn, Logger, ModelInfo, Source } from '../core/index.ts';
import { dontKnow } from './answer-chain.ts';
import { denseLabel } from './dense-embeddings.ts';
import { proposeCandidates, type AnswerCandidate, type TermWeight, type UnitSimilarity } from './answer-candidates.ts';
import type { RetrievedPassage, SearchOptions } from './local-knowledge-base.ts';
import type { MetadataFilter } from './metadata.ts';
import { DEFAULT_SELECTOR, selectorScore, type SelectorWeights } from './answer-selector.ts';
import { cosine } from './bag-encoder.ts';
import { hasCjk } from '../model/text/cjk.ts';
import { answerByCase } from './answer-cases.ts';
import { kindsMissing, thingMissing } from './named-kinds.ts';
import { standaloneQuestion } from './follow-up.ts';
import { questionIntent } from './question-intent.ts';

/** The model's view of the candidates: higher means the model finds it the likelier answer. */
export interface CandidateScorer {
  /** Shown under answers and stored with each answer record. */
  readonly model: ModelInfo;
  score(input: { question: string; history: ConversationTurn[]; passages: Source[]; answers: string[]; signal?: AbortSignal }): Promise<number[]>;
  /** How its scores and the rules' features are weighed (trained with the model; DEFAULT_SELECTOR when not). */
  readonly selector?: SelectorWeights;
  /** The prompt the scores were computed for, as stored in the answer record (votes become training data). */
  prompt(input: { question: string; history: ConversationTurn[]; passages: Source[] }): string;
}

/** What the answerer needs of a knowledge base: hybrid retrieval with each retriever's signals, and term weights. */
export interface CandidateKnowledgeBase {
  retrieve(query: string, k: number, options?: SearchOptions): Promise<RetrievedPassage[]>;
  /** `embedQueryText`, when the encoder has one, embeds the question as a query (e5's "query: "). */
  readonly embeddings?: { embedText(text: string): number[]; embedQueryText?(text: string): number[] } | undefined;
  termWeight?: TermWeight;
}

/** The encoder's cosine between the question and each unit (a bag-of-features encoder: cheap per sentence). */
function encoderSimilarity(embeddings: { embedText(text: string): number[]; embedQueryText?(text: string): number[] }): UnitSimilarity {
  return (question, units) => {
    const q = embeddings.embedQueryText?.(question) ?? embeddings.embedText(question);
    return units.map((u) => cosine(q, embeddings.embedText(u)));
  };
}

export interface CandidateAnswererOptions {
  kb: CandidateKnowledgeBase;
  /** The model that chooses; without one the rule prior alone chooses (model: retrieval-only). */
  scorer?: CandidateScorer;
  /** Passages retrieved (default 4). */
  passages?: number;
  /** Overrides the scorer's selector (evaluations compare weightings). */
  selector?: SelectorWeights;
  /** Candidates the model scores (default 12): the best by prior. */
  candidates?: number;
  /** The "don't know" gate: the chosen sentence's score below this refuses (default MIN_SUPPORT). */
  minSupport?: number;
  filterFor?: (request: AnswerRequest) => MetadataFilter | undefined;
  logger?: Logger;
  /** Score units by the encoder's similarity too (default true when an encoder is trained). */
  unitSimilarity?: boolean;
}

/** Passages searched for the section an asker pointed at (it was among the few named; the KB may have grown since). */
const SECTION_SEARCH = 50;

/** Measured on the dev questions: below it, answers were wrong far more often than right (docs/fine-tuning.md). */
export const MIN_SUPPORT = 0.35;

export interface ChosenAnswer {
  direct: string;
  /** The supporting unit and the passage number it is cited by (1-based). */
  support: string;
  citation: number;
  candidate: AnswerCandidate;
}

/** "25 days [1]" then the quoted supporting sentence, unless the direct answer is that sentence. */
export function composeAnswer(chosen: Pick<ChosenAnswer, 'direct' | 'support' | 'citation'>): string {
  const cite = `[${chosen.citation}]`;
  if (sameAnswer(chosen.direct) === sameAnswer(chosen.support)) return `${chosen.support.replace(/[,;:，；：]+$/u, '')} ${cite}`;
  return `${chosen.direct}\n\n> ${chosen.support} ${cite}`;
}

/** The direct answer in an answer `composeAnswer` wrote (what a vote on a stored answer judged). */
export function directAnswerOf(output: string): string {
  const cut = output.indexOf('\n\n> ');
  return (cut >= 0 ? output.slice(0, cut) : output.replace(/\s*\[\d+\]\s*$/u, '')).trim();
}

export class CandidateAnswerer implements Answerer {
  constructor(private readonly options: CandidateAnswererOptions) {}

  get model(): ModelInfo {
    if (this.options.scorer) return this.options.scorer.model;
    const how = denseLabel(this.options.kb.embeddings);
    return { name: `retrieval-only (${how})`, version: 'none', kind: 'retrieval-only' };
  }

  /**
   * Retrieval and the "don't know" gate, without composing the answer: the passages, the answer
   * the rules (and the scorer, when there is one) chose, and whether it is supported well enough
   * to answer at all. An answerer that writes its own answer (rag/chat-model-answerer.ts) takes
   * this decision as it is, so it can never answer where this one would refuse.
   */
  async decide(request: AnswerRequest): Promise<{ sources: Source[]; chosen: ChosenAnswer | undefined; confident: boolean }> {
    const filter = this.options.filterFor?.(request);
    // "那管理岗呢？" after "试用期多长？": searched and answered as one question (follow-up.ts).
    const asked = { ...request, question: standaloneQuestion(request.question, request.history) };
    const { section } = request;
    // "Answer from this section": the asker pointed at one the bot named; found again among a wider retrieval.
    const hits = await this.options.kb.retrieve(asked.question, section ? SECTION_SEARCH : (this.options.passages ?? 4), filter ? { filter } : {});
    const all: Source[] = hits.map(({ source, title, text, score }) => ({ source, title, text, score }));
    const sources = section ? all.filter((p) => p.source === section.source && p.title === section.title).slice(0, 1) : all;
    const chosen = sources.length ? await this.choose(asked, sources) : undefined;
    // The asker's choice is the support: the gates below judge how well the question's words match.
    if (section) return { sources, chosen, confident: chosen !== undefined };
    // The "don't know" gate: a best supporting sentence that matches the question this weakly is
    // more often the wrong fact than the right one (measured, docs/fine-tuning.md).
    const supported = chosen !== undefined && chosen.candidate.unit.score >= (this.options.minSupport ?? MIN_SUPPORT);
    // …and a passage about another kind of leave or fee than the one asked about answers nothing.
    const cited = chosen && sources[chosen.citation - 1];
    // …nor does one that never names the thing whose existence is asked about ("Is there a prayer room?").
    const citedText = cited && `${cited.title} ${cited.text}`;
    const confident =
      supported &&
      citedText !== undefined &&
      kindsMissing(asked.question, citedText).length === 0 &&
      thingMissing(asked.question, citedText) === undefined &&
      !lacksValueAsked(asked.question, chosen.candidate);
    return { sources, chosen, confident };
  }

  async *answer(request: AnswerRequest): AsyncIterable<AnswerEvent> {
    const { sources, chosen, confident } = await this.decide(request);
    yield { type: 'sources', sources: confident ? sources : [], ...(!confident && sources.length ? { near: sources } : {}) };
    if (!confident || !chosen) {
      yield { type: 'token', text: dontKnow(request.question, sources, (request.avoid?.length ?? 0) > 0) };
      yield { type: 'done', prompt: `(no passage answers it) ${request.question}`, direct: '' };
      return;
    }
    yield { type: 'token', text: composeAnswer(chosen) };
    const prompt = this.recordedPrompt(request, sources);
    yield { type: 'done', prompt, direct: chosen.direct };
  }

  private recordedPrompt(request: AnswerRequest, passages: Source[]): string {
    try {
      return this.options.scorer?.prompt({ question: request.question, history: request.history, passages }) ?? `retrieval-only: ${request.question}`;
    } catch {
      return `(the model could not encode the passages) ${request.question}`;
    }
  }

  /** The candidates the selector weighs (the best by prior), with the model's feature filled in. */
  async rank(request: Pick<AnswerRequest, 'question' | 'history' | 'signal'>, passages: Source[]): Promise<AnswerCandidate[]> {
    const { termWeight, embeddings } = this.options.kb;
    const all = proposeCandidates(request.question, passages, {
      ...(termWeight ? { weight: termWeight } : {}),
      ...(embeddings && this.options.unitSimilarity !== false ? { similarity: encoderSimilarity(embeddings) } : {}),
    });
    const pool = all.slice(0, this.options.candidates ?? 12);
    if (pool.length && this.options.scorer) {
      let model: number[];
      try {
        model = await this.options.scorer.score({
          question: request.question,
          history: request.history,
          passages,
          answers: pool.map((c) => c.text),
          ...(request.signal ? { signal: request.signal } : {}),
        });
      } catch (err) {
        if (request.signal?.aborted) throw err;
        // A model that cannot read these passages (a character its tokenizer lacks, a broken file)
        // degrades the answer to the rules' choice; it never stops the bot from answering.
        this.options.logger?.warn({ err: String(err) }, 'the model could not score the candidate answers: the rules chose alone');
        return pool;
      }
      // Relative to the model's favourite: the selector weighs how far below it a candidate is.
      const top = Math.max(...model.filter(Number.isFinite));
      pool.forEach((c, i) => (c.features.model = Number.isFinite(model[i]!) ? model[i]! - top : -20));
    }
    return pool;
  }

  /** The candidate the selector scores best, not one of `avoid`; undefined when the passages propose none. */
  async choose(request: Pick<AnswerRequest, 'question' | 'history' | 'signal' | 'avoid'>, passages: Source[]): Promise<ChosenAnswer | undefined> {
    const zh = hasCjk(request.question);
    const given = new Set((request.avoid ?? []).map((output) => sameAnswer(directAnswerOf(output))));
    const pool = (await this.rank(request, passages)).filter((c) => !given.has(sameAnswer(directAnswerText(c.text, zh))));
    if (pool.length === 0) return undefined;
    const selector = this.options.selector ?? this.options.scorer?.selector ?? DEFAULT_SELECTOR;
    const scores = pool.map((c) => selectorScore(selector, c.features));
    let best = 0;
    for (let i = 1; i < pool.length; i++) if (scores[i]! > scores[best]!) best = i;
    const candidate = pool[best]!;
    // A rule by case and a question naming none: the cases, not one guessed value (answer-cases.ts).
    const byCase = answerByCase(request.question, candidate, passages[candidate.unit.passage]?.text ?? '', zh);
    const direct = byCase !== undefined && !given.has(sameAnswer(byCase)) ? byCase : directAnswerText(candidate.text, zh);
    return { direct, support: candidate.unit.text, citation: candidate.unit.passage + 1, candidate };
  }
}

/**
 * "Who do I phone?", "How early should I ask?", "What's the monthly cap?": a question that asks for
 * a value (a number, an amount, a time, a date, an address) is not answered by a sentence holding
 * none — such a sentence is about the topic, not the answer (measured: it withheld three wrong
 * answers and two to unanswerable questions on the dev and test splits, and no right one). A count
 * is any number: "3 written quotes" is one, though no unit is known for it.
 */
function lacksValueAsked(question: string, candidate: AnswerCandidate): boolean {
  const intent = questionIntent(question);
  if (intent.kinds.length === 0 || intent.yesNo || candidate.kind === 'value' || candidate.unit.typed) return false;
  return !(intent.kinds.includes('count') && /\d|[一二两三四五六七八九十百千]/u.test(candidate.unit.text));
}

/** Two direct answers are the same answer when they differ only in case, spacing or end punctuation. */
function sameAnswer(direct: string): string {
  return direct.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').replace(/[\s,;:.，；：。]+$/u, '').trim();
}

/** A candidate as a direct answer: a phrase, no trailing colon or comma, a sentence keeps its full stop. */
export function directAnswerText(text: string, zh: boolean): string {
  const t = text.replace(/[,;:，；：\s]+$/u, '').trim();
  // An address, a handle or a code is written as it is: "phish@lumenharbor.com", "iPhone".
  return zh || /^\S*[@/\d]|^[a-z]+[A-Z]/.test(t) ? t : t.charAt(0).toUpperCase() + t.slice(1);
}
