import { pgStoreAt } from '../../core/pg-store.ts';
import { sqliteStoreIn } from '../../core/sqlite-store.ts';
import { localKnowledgeBases } from '../../rag/knowledge-base-opener.ts';
import type { StageContext } from './stage.ts';

/**
 * The store and knowledge bases of a data folder, as a stage's context carries them: the stage
 * worker gives these to every stage (a worker thread opens connections of its own), and code
 * that runs a pipeline outside a job (the quickstart, tests) builds the same.
 */
export function stageServices(home: string, databaseUrl?: string): Pick<StageContext, 'store' | 'knowledgeBases'> {
  // With TEAMLLM_DATABASE_URL the votes are in PostgreSQL (the job runner passes the URL on).
  return { store: databaseUrl ? pgStoreAt(databaseUrl) : sqliteStoreIn(home), knowledgeBases: localKnowledgeBases(home) };
}
