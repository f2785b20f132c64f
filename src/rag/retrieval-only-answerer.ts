import type { AnswerEvent, AnswerRequest, Answerer, KnowledgeBase, ModelInfo, Source } from '../core/index.ts';
import { searchTerms } from './search-terms.ts';

const CJK = /[\u3400-\u9fff]/;
const SENTENCE = /[^。！？；.!?\n]+[。！？；.!?]*/g;

export interface RetrievalOnlyOptions {
  passages?: number;
  /**
   * Share of the question's terms the best passage must contain before it is quoted; below it
   * the bot says it does not know. A coarse rule until retrieval evaluation sets a measured one.
   */
  minCoverage?: number;
}

/**
 * The answerer for "no model trained yet": it quotes the best-matching sentences of the best
 * passages found by BM25 and says plainly that no model wrote them.
 */
export class RetrievalOnlyAnswerer implements Answerer {
  readonly model: ModelInfo = { name: 'retrieval-only (BM25)', version: 'none', kind: 'retrieval-only' };

  constructor(
    private readonly kb: KnowledgeBase,
    private readonly options: RetrievalOnlyOptions = {},
  ) {}

  async *answer(request: AnswerRequest): AsyncIterable<AnswerEvent> {
    const chinese = CJK.test(request.question);
    const hits = await this.kb.search(request.question, this.options.passages ?? 3);
    const queryTerms = new Set(searchTerms(request.question));
    const best = hits[0];
    const relevant = best !== undefined && coverage(request.question, best) >= (this.options.minCoverage ?? 0.3);
    const sources = relevant ? hits : [];
    yield { type: 'sources', sources };
    const prompt = `retrieval-only: ${request.question}`;
    if (!relevant) {
      yield {
        type: 'token',
        text: chinese
          ? '抱歉，我在知识库里没有找到相关内容。可以换个说法再问，或者联系相关负责人。'
          : "Sorry, I couldn't find that in the knowledge base. Try rephrasing, or ask the team that owns the topic.",
      };
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

/**
 * Share of the question's words found in the passage. Words, not the bigrams BM25 also uses:
 * bigrams spanning two Chinese words ("的具") are noise that would make every question look unanswered.
 */
function coverage(question: string, hit: Source): number {
  const queryTerms = new Set(searchTerms(question, { bigrams: false }));
  if (queryTerms.size === 0) return 0;
  const passage = new Set(searchTerms(`${hit.title} ${hit.text}`));
  let found = 0;
  for (const t of queryTerms) if (passage.has(t)) found++;
  return found / queryTerms.size;
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
