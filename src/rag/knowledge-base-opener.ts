import { existsSync } from 'node:fs';
import { DEFAULT_KB_NAME, knowledgeBaseFile } from './open-knowledge-base.ts';
import { LocalKnowledgeBase } from './local-knowledge-base.ts';

/** The parts of a local knowledge base that training reads (passages, search) and fills (scratch indexes). */
export type TrainingKnowledgeBase = Pick<LocalKnowledgeBase, 'chunkCount' | 'passages' | 'addPaths' | 'search' | 'retrieve' | 'termWeight' | 'close'>;

/**
 * How a training job reaches knowledge bases without naming their files: the home's, by name, and
 * scratch ones of its own (documents indexed for this job only, in its run folder). The stage
 * worker gives one to every stage; tests and the quickstart build one for a home.
 */
export interface KnowledgeBaseOpener {
  /** Whether the named knowledge base of $TEAMLLM_HOME was ever created (default: the default one). */
  exists(name?: string): boolean;
  /** The named knowledge base of $TEAMLLM_HOME (created empty when missing). The caller closes it. */
  open(name?: string): TrainingKnowledgeBase;
  /** A knowledge base of this job only, in `file` (inside its run folder). The caller closes it. */
  scratch(file: string): TrainingKnowledgeBase;
}

/** The local (SQLite + BM25) knowledge bases of a data folder, for training. */
export function localKnowledgeBases(home: string): KnowledgeBaseOpener {
  return {
    exists: (name = DEFAULT_KB_NAME) => existsSync(knowledgeBaseFile(home, name)),
    open: (name = DEFAULT_KB_NAME) => new LocalKnowledgeBase(knowledgeBaseFile(home, name), { name }),
    scratch: (file) => new LocalKnowledgeBase(file),
  };
}
