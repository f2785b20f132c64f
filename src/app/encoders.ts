/**
 * Imported encoders for the commands that run without a whole runtime (`teamllm eval retrieval
 * --encoder vN`): the registry of a home and the embeddings of one of its versions.
 */
import { ModelRegistry } from '../model/registry.ts';
import { ImportedEmbeddings } from '../rag/imported-embeddings.ts';

export { ImportedEmbeddings };

export function importedEmbeddings(home: string, version: string): Promise<ImportedEmbeddings> {
  return ImportedEmbeddings.load(new ModelRegistry(home), version);
}
