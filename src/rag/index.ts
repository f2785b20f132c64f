export { Bm25Index, type Bm25Hit } from './bm25.ts';
export { searchTerms } from './search-terms.ts';
export { splitMarkdown, type Chunk } from './markdown-splitter.ts';
export { LocalKnowledgeBase, type AddOptions } from './local-knowledge-base.ts';
export { RetrievalOnlyAnswerer, type RetrievalOnlyOptions } from './retrieval-only-answerer.ts';
