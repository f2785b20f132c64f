import type { AnswerEvent, AnswerRequest, Answerer, KnowledgeBase, ModelInfo, Source } from '../core/index.ts';
import { dontKnow } from './answer-chain.ts';
import { denseLabel } from './dense-embeddings.ts';
import { coverage, DEFAULT_ANSWERABILITY, isAnswerable, type AnswerabilityRule } from './answerability.ts';
import type { MetadataFilter } from './metadata.ts';
import type { RetrievedPassage, SearchOptions } from './local-knowledge-base.ts';
import { searchTerms } from './search-terms.ts';
import { hasCjk } from '../model/text/cjk.ts';

const SENTENCE = /[^。！？；.!?\n]+[。！？；.!?]*/g;

/** A knowledge base that can also say how each passage was found (LocalKnowledgeBase can). */
type Searchable = KnowledgeBase & { retrieve?(query: string, k: number, options?: SearchOptions): Promise<RetrievedPassage[]>; embeddings?: unknown };

export interface RetrievalOnlyOptions {
  passages?: number;
  /** Below this the bot says it does not know (default: the rule measured on the handbook, see answerability.ts). */
  answerability?: AnswerabilityRule;
  /** Restricts retrieval per request, e.g. to the knowledge base a channel is bound to. */
  filterFor?: (request: AnswerRequest) => MetadataFilter | undefined;
}

/**
 * The answerer for "no model trained yet": it quotes the best-matching sentences of the best
 * passages found by search (hybrid once an encoder is trained, BM25 before) and says plainly
 * that no model wrote them. Also the fallback when the app has no language model to give the
 * answer chain.
 */
export class RetrievalOnlyAnswerer implements Answerer {
  constructor(
    private readonly kb: Searchable,
    private readonly options: RetrievalOnlyOptions = {},
  ) {}

  get model(): ModelInfo {
    const how = denseLabel(this.kb.embeddings);
    return { name: `retrieval-only (${how})`, version: 'none', kind: 'retrieval-only' };
  }

  async *answer(request: AnswerRequest): AsyncIterable<AnswerEvent> {
    const chinese = hasCjk(request.question);
    const k = this.options.passages ?? 3;
    const filter = this.options.filterFor?.(request);
    const hits: (Source & { cosine?: number })[] = this.kb.retrieve
      ? await this.kb.retrieve(request.question, k, filter ? { filter } : {})
      : await this.kb.search(request.question, k);
    const queryTerms = new Set(searchTerms(request.question));
    const best = hits[0];
    const rule = this.options.answerability ?? (this.kb.embeddings ? DEFAULT_ANSWERABILITY.withEncoder : DEFAULT_ANSWERABILITY.keywordsOnly);
    const relevant =
      best !== undefined && isAnswerable({ coverage: coverage(request.question, best), ...(best.cosine !== undefined ? { cosine: best.cosine } : {}) }, rule);
    const sources = relevant ? hits.map(({ source, title, text, score }) => ({ source, title, text, score })) : [];
    yield { type: 'sources', sources };
    const prompt = `retrieval-only: ${request.question}`;
    if (!relevant) {
      yield { type: 'token', text: dontKnow(request.question, hits) };
      yield { type: 'done', prompt };
      return;
    }
    yield {
      type: 'token',
      text: chinese
        ? '（尚未训练语言模型：以下内容直接摘自知识库。）\n\n'
        : '(No language model is trained yet: this is quoted from the knowledge base.)\n\n',
    };
    const quotes = sources.slice(0, 2).map((hit) => bestSentences(hit.text, queryTerms, 2));
    for (const [i, quote] of quotes.entries()) {
      // A second passage is quoted only when it matches about as well as the first: otherwise it is noise.
      if (!quote.text || (i > 0 && quote.score < 0.6 * quotes[0]!.score)) continue;
      yield { type: 'token', text: `> ${quote.text} [${i + 1}]\n` };
    }
    yield { type: 'done', prompt };
  }
}

/** The sentences of a passage that share the most terms with the question, in document order, and their score. */
function bestSentences(text: string, queryTerms: Set<string>, count: number): { text: string; score: number } {
  const sentences = (text.match(SENTENCE) ?? [])
    // Quotes are shown as plain text everywhere: drop markdown emphasis and list/quote markers.
    .map((s) => s.replace(/^[\s>*#|-]+/, '').replace(/\*\*|__/g, '').trim())
    .filter((s) => s.length > 1);
  const scored = sentences.map((s, i) => ({ s, i, score: searchTerms(s).filter((t) => queryTerms.has(t)).length }));
  const top = [...scored].sort((a, b) => b.score - a.score || a.i - b.i).slice(0, count).filter((x) => x.score > 0);
  return {
    text: [...top]
      .sort((a, b) => a.i - b.i)
      .map((x) => x.s)
      .join(' '),
    score: top.reduce((sum, x) => sum + x.score, 0),
  };
}
