/**
 * A LangChain `VectorStore` over a Chroma collection, holding our own embeddings.
 *
 * Written here rather than taken from `@langchain/community/vectorstores/chroma`: that package
 * cannot be installed next to zod 4 (its peer dependencies conflict). This one is also stricter
 * about what Chroma accepts: flat scalar metadata, `embeddingFunction: null` (we embed
 * ourselves; Chroma's default embedder would want a model download) and cosine space.
 */
import { createHash } from 'node:crypto';
import { Document, type DocumentInterface } from '@langchain/core/documents';
import type { EmbeddingsInterface } from '@langchain/core/embeddings';
import { VectorStore } from '@langchain/core/vectorstores';
import type { ChromaClient, Collection, Where } from 'chromadb';
import { flatMetadata, type FlatMetadata, type MetadataFilter } from './metadata.ts';

export type { FlatMetadata, MetadataFilter } from './metadata.ts';

/** Our flat equality filter in Chroma's `where` syntax. */
function toWhere(filter: MetadataFilter | undefined): Where | undefined {
  const clauses = Object.entries(filter ?? {}).map(([key, value]) => ({ [key]: value }) as Where);
  if (clauses.length === 0) return undefined;
  return clauses.length === 1 ? clauses[0] : { $and: clauses };
}

/**
 * A Chroma collection name for a knowledge base: 3–512 characters of [a-zA-Z0-9._-], starting
 * and ending with a letter or digit. Names may be Chinese or contain spaces, so: a readable slug
 * plus a hash of the full name (two names never share a collection).
 */
export function collectionName(knowledgeBase: string): string {
  const slug = knowledgeBase
    .normalize('NFKD')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  const hash = createHash('sha256').update(knowledgeBase).digest('hex').slice(0, 10);
  return `teamllm-kb-${slug ? `${slug}-` : ''}${hash}`;
}

export interface ScoredDocument {
  document: DocumentInterface;
  /** Cosine similarity in [-1, 1]. */
  score: number;
}

export class ChromaVectorStore extends VectorStore {
  declare FilterType: MetadataFilter;

  private constructor(
    embeddings: EmbeddingsInterface,
    private readonly client: ChromaClient,
    private current: Collection,
    private readonly metadata: FlatMetadata,
    private readonly maxBatch: number,
  ) {
    super(embeddings, {});
  }

  /** Opens (creating if needed) the collection; `metadata` is set only when it is created. */
  static async open(client: ChromaClient, name: string, embeddings: EmbeddingsInterface, metadata: FlatMetadata = {}): Promise<ChromaVectorStore> {
    const collection = await ChromaVectorStore.getOrCreate(client, name, metadata);
    return new ChromaVectorStore(embeddings, client, collection, metadata, await client.getMaxBatchSize());
  }

  private static getOrCreate(client: ChromaClient, name: string, metadata: FlatMetadata): Promise<Collection> {
    return client.getOrCreateCollection({
      name,
      embeddingFunction: null,
      configuration: { hnsw: { space: 'cosine' } },
      metadata: { ...metadata, created_by: 'teamllm' },
    });
  }

  get collection(): Collection {
    return this.current;
  }

  _vectorstoreType(): string {
    return 'teamllm-chroma';
  }

  async addVectors(vectors: number[][], documents: DocumentInterface[], options?: { ids?: string[] }): Promise<string[]> {
    const ids = options?.ids ?? documents.map((d, i) => d.id ?? createHash('sha256').update(`${d.pageContent}\u0000${i}`).digest('hex'));
    for (let start = 0; start < vectors.length; start += this.maxBatch) {
      const end = start + this.maxBatch;
      await this.current.upsert({
        ids: ids.slice(start, end),
        embeddings: vectors.slice(start, end),
        documents: documents.slice(start, end).map((d) => d.pageContent),
        metadatas: documents.slice(start, end).map((d) => flatMetadata(d.metadata)),
      });
    }
    return ids;
  }

  async addDocuments(documents: DocumentInterface[], options?: { ids?: string[] }): Promise<string[]> {
    return this.addVectors(await this.embeddings.embedDocuments(documents.map((d) => d.pageContent)), documents, options);
  }

  async similaritySearchVectorWithScore(query: number[], k: number, filter?: MetadataFilter): Promise<[DocumentInterface, number][]> {
    const where = toWhere(filter);
    const result = await this.current.query({
      queryEmbeddings: [query],
      nResults: k,
      ...(where ? { where } : {}),
      include: ['documents', 'metadatas', 'distances'] as never,
    });
    const ids = result.ids[0] ?? [];
    return ids.map((id, i) => [
      new Document({ id, pageContent: result.documents[0]?.[i] ?? '', metadata: { ...(result.metadatas[0]?.[i] ?? {}) } }),
      // Chroma's cosine "distance" is 1 - cosine similarity.
      1 - (result.distances?.[0]?.[i] ?? 1),
    ]);
  }

  override async delete(params: { ids?: string[]; filter?: MetadataFilter } = {}): Promise<void> {
    if (params.ids && params.ids.length > 0) await this.current.delete({ ids: params.ids });
    const where = toWhere(params.filter);
    if (where) await this.current.delete({ where });
  }

  /** The stored vectors of these ids (one round trip; missing ids are left out). */
  async vectorsByIds(ids: string[]): Promise<Map<string, number[]>> {
    if (ids.length === 0) return new Map();
    const result = await this.current.get({ ids, include: ['embeddings'] as never });
    return new Map(result.ids.map((id, i) => [id, Array.from(result.embeddings[i] ?? [])]));
  }

  async count(): Promise<number> {
    return this.current.count();
  }

  /**
   * Removes every vector by dropping and recreating the collection: a collection keeps the
   * dimension of its first vectors, and a retrained encoder may have another.
   */
  async clear(): Promise<void> {
    const name = this.current.name;
    await this.client.deleteCollection({ name });
    this.current = await ChromaVectorStore.getOrCreate(this.client, name, this.metadata);
  }
}
