import { Document, type DocumentInterface } from '@langchain/core/documents';
import type { EmbeddingsInterface } from '@langchain/core/embeddings';
import { VectorStore } from '@langchain/core/vectorstores';
import { flatMetadata, matchesFilter, type MetadataFilter } from './metadata.ts';

/**
 * Exact cosine search over vectors kept in memory: no index, no server. Used by `eval retrieval`
 * (a throwaway knowledge base per run) and tests; Chroma's HNSW returns the same neighbours at
 * these sizes.
 */
export class InMemoryVectorStore extends VectorStore {
  declare FilterType: MetadataFilter;
  private readonly rows = new Map<string, { vector: number[]; norm: number; document: DocumentInterface }>();

  constructor(embeddings: EmbeddingsInterface) {
    super(embeddings, {});
  }

  _vectorstoreType(): string {
    return 'teamllm-memory';
  }

  async addVectors(vectors: number[][], documents: DocumentInterface[], options?: { ids?: string[] }): Promise<string[]> {
    const ids = options?.ids ?? documents.map((d, i) => d.id ?? `${this.rows.size + i}`);
    vectors.forEach((vector, i) => {
      const norm = Math.sqrt(vector.reduce((s, v) => s + v * v, 0));
      const d = documents[i]!;
      this.rows.set(ids[i]!, { vector, norm, document: new Document({ id: ids[i]!, pageContent: d.pageContent, metadata: flatMetadata(d.metadata) }) });
    });
    return ids;
  }

  async addDocuments(documents: DocumentInterface[], options?: { ids?: string[] }): Promise<string[]> {
    return this.addVectors(await this.embeddings.embedDocuments(documents.map((d) => d.pageContent)), documents, options);
  }

  async similaritySearchVectorWithScore(query: number[], k: number, filter?: MetadataFilter): Promise<[DocumentInterface, number][]> {
    const qNorm = Math.sqrt(query.reduce((s, v) => s + v * v, 0)) || 1;
    const scored: [DocumentInterface, number][] = [];
    for (const { vector, norm, document } of this.rows.values()) {
      if (!matchesFilter(document.metadata, filter)) continue;
      let dot = 0;
      for (let i = 0; i < vector.length; i++) dot += vector[i]! * query[i]!;
      scored.push([document, norm > 0 ? dot / (norm * qNorm) : 0]);
    }
    return scored.sort((a, b) => b[1] - a[1]).slice(0, k);
  }

  override async delete(params: { ids?: string[]; filter?: MetadataFilter } = {}): Promise<void> {
    for (const id of params.ids ?? []) this.rows.delete(id);
    if (params.filter) for (const [id, row] of this.rows) if (matchesFilter(row.document.metadata, params.filter)) this.rows.delete(id);
  }

  async vectorsByIds(ids: string[]): Promise<Map<string, number[]>> {
    return new Map(ids.flatMap((id) => (this.rows.has(id) ? [[id, this.rows.get(id)!.vector] as const] : [])));
  }

  async count(): Promise<number> {
    return this.rows.size;
  }

  async clear(): Promise<void> {
    this.rows.clear();
  }
}
