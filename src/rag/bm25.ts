import { searchTerms } from './search-terms.ts';

export interface Bm25Hit<T> {
  doc: T;
  score: number;
}

/**
 * An in-memory Okapi BM25 index with an inverted list per term. Written here rather than taken
 * from LangChain's BM25Retriever, which re-scores every document per query and splits on
 * spaces only (Chinese text gets no terms at all).
 */
export class Bm25Index<T> {
  private readonly docs: { doc: T; length: number }[] = [];
  private readonly postings = new Map<string, { doc: number; tf: number }[]>();
  private totalLength = 0;

  constructor(
    private readonly k1 = 1.2,
    private readonly b = 0.75,
  ) {}

  get size(): number {
    return this.docs.length;
  }

  add(doc: T, text: string): void {
    const id = this.docs.length;
    const terms = searchTerms(text);
    const counts = new Map<string, number>();
    for (const t of terms) counts.set(t, (counts.get(t) ?? 0) + 1);
    for (const [term, tf] of counts) {
      let list = this.postings.get(term);
      if (!list) this.postings.set(term, (list = []));
      list.push({ doc: id, tf });
    }
    this.docs.push({ doc, length: terms.length });
    this.totalLength += terms.length;
  }

  /** Inverse document frequency of a term (as scoring uses it); a term no document has gets the highest. */
  idf(term: string): number {
    const n = this.docs.length;
    const df = this.postings.get(term)?.length ?? 0;
    return Math.log(1 + (n - df + 0.5) / (df + 0.5));
  }

  /** The k best documents for the query; `accept`, when given, keeps only the documents it approves. */
  search(query: string, k: number, accept?: (doc: T) => boolean): Bm25Hit<T>[] {
    return [...this.scoreAll(query, accept)]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([doc, score]) => ({ doc, score }));
  }

  /** The score of every document sharing a term with the query (the others score 0). */
  scoreAll(query: string, accept?: (doc: T) => boolean): Map<T, number> {
    const n = this.docs.length;
    if (n === 0) return new Map();
    const avgLength = this.totalLength / n;
    const scores = new Map<number, number>();
    for (const term of new Set(searchTerms(query))) {
      const list = this.postings.get(term);
      if (!list) continue;
      const idf = Math.log(1 + (n - list.length + 0.5) / (list.length + 0.5));
      for (const { doc, tf } of list) {
        if (accept && !accept(this.docs[doc]!.doc)) continue;
        const norm = tf + this.k1 * (1 - this.b + (this.b * this.docs[doc]!.length) / avgLength);
        scores.set(doc, (scores.get(doc) ?? 0) + (idf * tf * (this.k1 + 1)) / norm);
      }
    }
    return new Map([...scores].map(([doc, score]) => [this.docs[doc]!.doc, score]));
  }
}
