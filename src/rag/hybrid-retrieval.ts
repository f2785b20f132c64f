/**
 * Hybrid retrieval over a knowledge base's passages: BM25 and dense candidates fused
 * (score-fusion.ts; reciprocal rank fusion on request), duplicates (the same text under two names)
 * dropped. The knowledge base owns the passages and the stores; this is how a query ranks them.
 */
import type { Source } from '../core/index.ts';
import { cosine } from './bag-encoder.ts';
import type { ChromaVectorStore } from './chroma-vector-store.ts';
import type { DenseEmbeddings } from './dense-embeddings.ts';
import type { InMemoryVectorStore } from './in-memory-vector-store.ts';
import { matchesFilter, type FlatMetadata, type MetadataFilter } from './metadata.ts';
import { reciprocalRankFusion } from './rank-fusion.ts';
import { convexCombination } from './score-fusion.ts';

/** The dense half of hybrid search: the trained encoder and the vector store holding its vectors. */
export interface DenseIndex {
  embeddings: DenseEmbeddings;
  store: ChromaVectorStore | InMemoryVectorStore;
}

export type RetrievalMode = 'hybrid' | 'bm25' | 'dense';

/** A search result with what each retriever said about it (evaluation and the "don't know" gate read these). */
export interface RetrievedPassage extends Source {
  id: string;
  position: number;
  page?: number;
  metadata: FlatMetadata;
  /** Rank from 0 in the BM25 list, when BM25 found it. */
  bm25Rank?: number;
  /** Rank from 0 in the dense list, when the dense search found it. */
  denseRank?: number;
  /** Cosine similarity between the query's and the passage's embeddings (when an encoder is trained). */
  cosine?: number;
}

export interface SearchOptions {
  /** Default 'hybrid' (which is BM25 alone until an encoder is trained). */
  mode?: RetrievalMode;
  /** Only passages whose metadata has these values (e.g. `{ folder: 'hr' }`, `{ team: 'sales' }`). */
  filter?: MetadataFilter;
  /** Passages of these sources are skipped (evaluation hides a question's own document with it). */
  excludeSources?: string[];
  /** Overrides the knowledge base's fusion method (evaluation compares both). */
  fusion?: FusionMethod;
  /** Overrides the weight of the cosine in the convex combination (evaluation tunes it). */
  alpha?: number;
}

export type FusionMethod = 'convex' | 'rrf';

export interface FusionOptions {
  method: FusionMethod;
  /** Weight of the (normalised) cosine against BM25 in the convex combination; measured on the handbook. */
  alpha: number;
  /** RRF's k: larger values flatten the difference between ranks. */
  rrfK: number;
  /** How many results each retriever contributes before fusion. */
  candidates: number;
}

export const DEFAULT_FUSION: FusionOptions = { method: 'convex', alpha: 0.3, rrfK: 60, candidates: 50 };

/** A passage as the knowledge base keeps it in memory (BM25 indexes these; the vector store holds their ids). */
export interface StoredChunk {
  id: string;
  source: string;
  position: number;
  title: string;
  text: string;
  page: number | null;
  metadata: FlatMetadata;
}

/** What both retrievers read of a passage: its heading path and its text. */
export function passageText(p: { title: string; text: string }): string {
  return `${p.title}\n${p.text}`;
}

/** What a knowledge base hands a query: its passages, its BM25 scorer and its dense side (when usable). */
export interface RetrievalSources {
  /** Read at the moment it is asked: a concurrent add may have rebuilt the index. */
  chunk(id: string): StoredChunk | undefined;
  /** BM25 scores of the passages `accept` lets through (all when undefined). */
  lexicalScores(query: string, accept?: (c: StoredChunk) => boolean): Map<StoredChunk, number>;
  dense: DenseIndex | undefined;
  fusion: FusionOptions;
}

/**
 * `score` is the fused score in [0, 1]; in 'bm25' mode it is the BM25 score, in 'dense' mode the
 * cosine. Without a dense index, 'hybrid' is BM25 alone.
 */
export async function hybridRetrieve(query: string, k: number, options: SearchOptions, sources: RetrievalSources): Promise<RetrievedPassage[]> {
  const { fusion } = sources;
  const denseIndex = sources.dense;
  const mode = options.mode ?? 'hybrid';
  const { filter } = options;
  const excluded = new Set(options.excludeSources ?? []);
  const accept = filter || excluded.size > 0 ? (c: StoredChunk) => !excluded.has(c.source) && matchesFilter(c.metadata, filter) : undefined;
  const n = Math.max(k, fusion.candidates);
  const lexicalScores = mode === 'dense' ? new Map<StoredChunk, number>() : sources.lexicalScores(query, accept);
  const lexical = [...lexicalScores].sort((a, b) => b[1] - a[1]).slice(0, n).map(([chunk]) => chunk);
  const dense = denseIndex && mode !== 'bm25' ? denseIndex : undefined;
  const queryVector = dense ? await dense.embeddings.embedQuery(query) : undefined;
  const semantic: StoredChunk[] = [];
  const cosines = new Map<StoredChunk, number>();
  if (dense && queryVector) {
    for (const [doc, score] of await dense.store.similaritySearchVectorWithScore(queryVector, n, filter)) {
      const chunk = sources.chunk(doc.id ?? '');
      if (!chunk || excluded.has(chunk.source)) continue;
      semantic.push(chunk);
      cosines.set(chunk, score);
    }
  }
  // Passages BM25 found but the dense search did not rank: their cosine from the stored vectors
  // (one round trip) rather than by re-embedding up to 50 passages per query.
  if (dense && queryVector && mode === 'hybrid') {
    const missing = lexical.filter((c) => !cosines.has(c));
    const stored = await dense.store.vectorsByIds(missing.map((c) => c.id));
    for (const c of missing) {
      const vector = stored.get(c.id);
      if (vector) cosines.set(c, cosine(queryVector, vector));
    }
  }
  const cosineOf = (c: StoredChunk): number | undefined => {
    if (!dense || !queryVector) return undefined;
    let value = cosines.get(c);
    if (value === undefined) cosines.set(c, (value = cosine(queryVector, dense.embeddings.embedText(passageText(c)))));
    return value;
  };

  let ranked: { chunk: StoredChunk; score: number }[];
  if (mode === 'bm25' || !dense) ranked = lexical.map((chunk) => ({ chunk, score: lexicalScores.get(chunk)! }));
  else if (mode === 'dense') ranked = semantic.map((chunk) => ({ chunk, score: cosines.get(chunk)! }));
  else if ((options.fusion ?? fusion.method) === 'rrf') {
    const fused = reciprocalRankFusion([{ items: lexical }, { items: semantic }], (c) => c.id, fusion.rrfK);
    const best = 2 / (fusion.rrfK + 1);
    ranked = fused.map(({ item, score }) => ({ chunk: item, score: score / best }));
  } else {
    const candidates = [...new Set([...lexical, ...semantic])].map((chunk) => ({ item: chunk, lexical: lexicalScores.get(chunk) ?? 0, cosine: cosineOf(chunk)! }));
    ranked = convexCombination(candidates, options.alpha ?? fusion.alpha).map(({ item, score }) => ({ chunk: item, score }));
  }

  const lexicalRank = new Map(lexical.map((c, i) => [c, i]));
  const denseRank = new Map(semantic.map((c, i) => [c, i]));
  const seen = new Set<string>();
  const out: RetrievedPassage[] = [];
  for (const { chunk: c, score } of ranked) {
    const key = c.text.replace(/\s+/g, ' ').trim();
    if (seen.has(key)) continue;
    seen.add(key);
    const cos = cosineOf(c);
    out.push({
      id: c.id,
      source: c.source,
      title: c.title,
      text: c.text,
      score,
      position: c.position,
      ...(c.page !== null ? { page: c.page } : {}),
      metadata: c.metadata,
      ...(lexicalRank.has(c) ? { bm25Rank: lexicalRank.get(c)! } : {}),
      ...(denseRank.has(c) ? { denseRank: denseRank.get(c)! } : {}),
      ...(cos !== undefined ? { cosine: cos } : {}),
    });
    if (out.length >= k) break;
  }
  return out;
}
