import type { ImportedEmbeddings } from './imported-embeddings.ts';
import type { LocalEmbeddings } from './local-embeddings.ts';

/** The encoder of the dense half of hybrid search: the one trained here, or an imported one. */
export type DenseEmbeddings = LocalEmbeddings | ImportedEmbeddings;

/** How answers name the retrieval behind them ("hybrid BM25 + ..."). */
export function denseLabel(embeddings: unknown): string {
  if (!embeddings) return 'BM25';
  const info = (embeddings as { info?: Partial<ImportedEmbeddings['info']> }).info;
  if (info?.format === 'teamllm-imported-encoder/1') {
    return `hybrid BM25 + ${info.name ?? info.version} (${info.architecture})`;
  }
  return 'hybrid BM25 + trained embeddings';
}
