import { Document } from '@langchain/core/documents';
import { BaseRetriever, type BaseRetrieverInput } from '@langchain/core/retrievers';
import type { LocalKnowledgeBase, RetrievedPassage, SearchOptions } from './local-knowledge-base.ts';

export interface HybridRetrieverInput extends BaseRetrieverInput, SearchOptions {
  kb: LocalKnowledgeBase;
  /** Passages returned (default 4: enough context for a small model's window). */
  k?: number;
}

/**
 * The knowledge base's hybrid search as a LangChain retriever, so it composes with prompts and
 * models in a Runnable chain. Each Document carries the passage's metadata plus `score`,
 * `cosine` and the two retrievers' ranks.
 */
export class HybridRetriever extends BaseRetriever {
  lc_namespace = ['teamllm', 'rag', 'retrievers'];
  readonly kb: LocalKnowledgeBase;
  readonly k: number;
  private readonly search: SearchOptions;

  constructor(fields: HybridRetrieverInput) {
    super(fields);
    this.kb = fields.kb;
    this.k = fields.k ?? 4;
    this.search = { ...(fields.mode ? { mode: fields.mode } : {}), ...(fields.filter ? { filter: fields.filter } : {}) };
  }

  override async _getRelevantDocuments(query: string): Promise<Document[]> {
    return (await this.kb.retrieve(query, this.k, this.search)).map(passageToDocument);
  }
}

export function passageToDocument(p: RetrievedPassage): Document {
  return new Document({
    id: p.id,
    pageContent: p.text,
    metadata: {
      ...p.metadata,
      source: p.source,
      title: p.title,
      score: p.score,
      ...(p.cosine !== undefined ? { cosine: p.cosine } : {}),
      ...(p.bm25Rank !== undefined ? { bm25Rank: p.bm25Rank } : {}),
      ...(p.denseRank !== undefined ? { denseRank: p.denseRank } : {}),
    },
  });
}
