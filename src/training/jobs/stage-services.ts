import { sqliteStoreIn } from '../../core/sqlite-store.ts';
import { localKnowledgeBases } from '../../rag/knowledge-base-opener.ts';
import type { StageContext } from './stage.ts';

/**
 * The store and knowledge bases of a data folder, as a stage's context carries them: the stage
 * worker gives these to every stage (a worker thread opens connections of its own), and code
 * that runs a pipeline outside a job (the quickstart, tests) builds the same.
 */
export function stageServices(home: string): Pick<StageContext, 'store' | 'knowledgeBases'> {
  return { store: sqliteStoreIn(home), knowledgeBases: localKnowledgeBases(home) };
}
