/** Supervised fine-tuning with LoRA: data formats, the QA generator, training, the whole job. */
export {
  parseSftRecord,
  readSftFile,
  readSftData,
  formatContext,
  fitContext,
  queryTerms,
  encodeSftExample,
  encodeQaPrompt,
  type Passage,
  type SftExample,
  type SftFormat,
  type EncodedExample,
  type EncodeSftOptions,
} from './data.ts';
export { generateQa, readDocuments, withRetrievedContext, type GeneratedQa, type GeneratedKind, type GenerateQaOptions, type SourceDocument, type PassageSearch } from './qa-generator.ts';
export { sft, sftLoss, collate, SftOptionsSchema, type SftOptions, type SftHooks, type SftProgress, type SftResult } from './train.ts';
export { runSftJob, SftJobParamsSchema, type SftJobParams, type SftJobContext, type SftJobResult } from './pipeline.ts';
