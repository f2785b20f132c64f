/** Supervised fine-tuning with LoRA: data formats, the QA generator, training, the whole job. */
export {
  parseSftRecord,
  readSftFile,
  readSftData,
  encodeSftExample,
  type SftExample,
  type SftFormat,
  type EncodedExample,
  type EncodeSftOptions,
} from './data.ts';
// The QA prompt layout lives in the model layer (serving uses it too); re-exported for this API's users.
export { formatContext, fitContext, queryTerms, encodeQaPrompt, type Passage } from '../../model/qa-prompt.ts';
export { generateQa, readDocuments, withRetrievedContext, type GeneratedQa, type GeneratedKind, type GenerateQaOptions, type SourceDocument, type PassageSearch } from './qa-generator.ts';
export { sft, sftLoss, collate, SftOptionsSchema, type SftOptions, type SftHooks, type SftProgress, type SftResult } from './train.ts';
export { runSftJob, SftJobParamsSchema, type SftJobParams, type SftJobContext, type SftJobResult } from './pipeline.ts';
