/**
 * The knowledge base: loaders, splitting, a locally trained encoder, Chroma, hybrid retrieval,
 * the LangChain answer chain and retrieval evaluation. The app's entry points are
 * `openKnowledgeBase` and `evaluateRetrieval`; docs/knowledge-base.md explains the pieces.
 */
export { openKnowledgeBase, trainEmbeddings, askedPairs, type AskedPassage, knowledgeBaseFile, DEFAULT_KB_NAME, type OpenKnowledgeBaseOptions, type OpenedKnowledgeBases, type VectorStoreStatus, type VectorStoreObserver, type AnswererOptions, type TrainEmbeddingsOptions } from './open-knowledge-base.ts';
export { localKnowledgeBases, type KnowledgeBaseOpener, type TrainingKnowledgeBase } from './knowledge-base-opener.ts';
export {
  LocalKnowledgeBase,
  passageText,
  DEFAULT_FUSION,
  type AddOptions,
  type DenseIndex,
  type FusionMethod,
  type FusionOptions,
  type KnowledgeBaseOptions,
  type LexicalOptions,
  DEFAULT_LEXICAL,
  type RetrievalMode,
  type RetrievedPassage,
  type SearchOptions,
} from './local-knowledge-base.ts';
export { evaluateRetrieval, formatEvaluation, measureAnswerability, readQuestions, passageAnswers, isAnswerableQuestion, type EvalQuestion, type EvaluateRetrievalOptions, type MetricsRow, type RetrievalEvaluation, type AnswerabilityMeasurement } from './retrieval-eval.ts';
export { ChainAnswerer, createAnswerChain, formatPassages, ANSWER_PROMPT, CHAT_TEMPLATE_PROMPT, type ChainAnswererOptions, type AnswerChainInput } from './answer-chain.ts';
export { RetrievalOnlyAnswerer, type RetrievalOnlyOptions } from './retrieval-only-answerer.ts';
export { HybridRetriever, type HybridRetrieverInput } from './hybrid-retriever.ts';
export { DEFAULT_ANSWERABILITY, coverage, isAnswerable, type AnswerabilityRule, type AnswerabilitySignal } from './answerability.ts';
export { LocalEmbeddings, type EmbeddingModelInfo } from './local-embeddings.ts';
export { BagEncoder, EncoderEnsemble, DEFAULT_ENCODER_CONFIG, type EncoderConfig } from './bag-encoder.ts';
export type { EncoderTrainingOptions, EncoderTrainingReport } from './encoder-training.ts';
export { ChromaVectorStore, collectionName } from './chroma-vector-store.ts';
export { InMemoryVectorStore } from './in-memory-vector-store.ts';
export { startChromaServer, chromaClientFor, freePort, type ChromaServer } from './chroma-server.ts';
export { type FlatMetadata, type MetadataFilter } from './metadata.ts';
export { loadDocument, fetchDocument, SUPPORTED_EXTENSIONS, type LoadedDocument, type DocumentFormat } from './loaders.ts';
export { Bm25Index, weightedQuery, type Bm25Hit, type Bm25Field, type WeightedTerms } from './bm25.ts';
export { searchTerms } from './search-terms.ts';
export { splitMarkdown, splitDocument, type Chunk } from './markdown-splitter.ts';
