import { searchTerms, type TermOptions } from './search-terms.ts';

export interface Bm25Hit<T> {
  doc: T;
  score: number;
}

/** A part of a document with its weight: a term in a field of weight 2 counts as two occurrences (BM25F). */
export interface Bm25Field {
  text: string;
  weight: number;
}

/** Query terms with weights (an expansion term counts less than one the asker typed). */
export type WeightedTerms = Map<string, number>;

export interface Bm25Options {
  k1?: number;
  b?: number;
  /** How text becomes terms (search-terms.ts); documents and queries alike. */
  terms?: TermOptions;
}

/**
 * An in-memory Okapi BM25 index with an inverted list per term. Written here rather than taken
 * from LangChain's BM25Retriever, which re-scores every document per query and splits on
 * spaces only (Chinese text gets no terms at all).
 *
 * Documents may have weighted fields (the simple BM25F of Robertson et al. 2004: a field's term
 * frequencies and length are multiplied by its weight before saturation), and queries may carry
 * term weights, which multiply each term's contribution.
 */
export class Bm25Index<T> {
  private readonly docs: { doc: T; length: number }[] = [];
  private readonly postings = new Map<string, { doc: number; tf: number }[]>();
  private totalLength = 0;
  private readonly k1: number;
  private readonly b: number;
  readonly termOptions: TermOptions;

  constructor(options: Bm25Options = {}) {
    this.k1 = options.k1 ?? 1.2;
    this.b = options.b ?? 0.75;
    this.termOptions = options.terms ?? {};
  }

  get size(): number {
    return this.docs.length;
  }

  /** The terms of a text as this index reads it. */
  terms(text: string): string[] {
    return searchTerms(text, this.termOptions);
  }

  add(doc: T, content: string | Bm25Field[]): void {
    const id = this.docs.length;
    const fields = typeof content === 'string' ? [{ text: content, weight: 1 }] : content;
    const counts = new Map<string, number>();
    let length = 0;
    for (const { text, weight } of fields) {
      const terms = this.terms(text);
      for (const t of terms) counts.set(t, (counts.get(t) ?? 0) + weight);
      length += terms.length * weight;
    }
    for (const [term, tf] of counts) {
      let list = this.postings.get(term);
      if (!list) this.postings.set(term, (list = []));
      list.push({ doc: id, tf });
    }
    this.docs.push({ doc, length });
    this.totalLength += length;
  }

  /** How many documents contain the term (0 for one the corpus never had). */
  documentFrequency(term: string): number {
    return this.postings.get(term)?.length ?? 0;
  }

  /** Inverse document frequency of a term (as scoring uses it); a term no document has gets the highest. */
  idf(term: string): number {
    const n = this.docs.length;
    const df = this.postings.get(term)?.length ?? 0;
    return Math.log(1 + (n - df + 0.5) / (df + 0.5));
  }

  /** The k best documents for the query; `accept`, when given, keeps only the documents it approves. */
  search(query: string | WeightedTerms, k: number, accept?: (doc: T) => boolean): Bm25Hit<T>[] {
    return [...this.scoreAll(query, accept)]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([doc, score]) => ({ doc, score }));
  }

  /** The score of every document sharing a term with the query (the others score 0). */
  scoreAll(query: string | WeightedTerms, accept?: (doc: T) => boolean): Map<T, number> {
    const n = this.docs.length;
    if (n === 0) return new Map();
    const avgLength = this.totalLength / n;
    const weighted = typeof query === 'string' ? new Map(this.terms(query).map((t) => [t, 1])) : query;
    const scores = new Map<number, number>();
    for (const [term, weight] of weighted) {
      const list = this.postings.get(term);
      if (!list) continue;
      const idf = Math.log(1 + (n - list.length + 0.5) / (list.length + 0.5));
      for (const { doc, tf } of list) {
        if (accept && !accept(this.docs[doc]!.doc)) continue;
        const norm = tf + this.k1 * (1 - this.b + (this.b * this.docs[doc]!.length) / avgLength);
        scores.set(doc, (scores.get(doc) ?? 0) + (weight * idf * tf * (this.k1 + 1)) / norm);
      }
    }
    return new Map([...scores].map(([doc, score]) => [this.docs[doc]!.doc, score]));
  }
}

/**
 * A query's terms, each once, weight 1; single Chinese characters (`#字`, search-terms.ts
 * `cjkUnigrams`) weight `unigramWeight`, so a passage sharing only characters with the question
 * can be found but never outranks one sharing its words.
 */
export function weightedQuery(terms: string[], unigramWeight: number): WeightedTerms {
  const weighted: WeightedTerms = new Map();
  for (const t of terms) {
    const weight = t.startsWith('#') ? unigramWeight : 1;
    if (weight > 0) weighted.set(t, weight);
  }
  return weighted;
}
