/**
 * The model layer: tensor backend, tokenizers, the GPT, generation, model files and the registry.
 * Nothing here imports an adapter or the core.
 */
export { initBackend, ensureBackend, parseBackendName, BACKEND_NAMES, type BackendName, type InitBackendOptions } from './backend.ts';
export {
  type Tokenizer,
  type TokenizerFile,
  type EncodeOptions,
  type StreamDecoder,
  type SpecialTokenName,
  SPECIAL_TOKEN_NAMES,
  SPECIAL_TOKEN_TEXT,
  CharTokenizer,
  BpeTokenizer,
  trainBpe,
  loadTokenizer,
  saveTokenizer,
  tokenizerFromJSON,
} from './tokenizer/index.ts';
export { GPT, type Params, type KVCache, parameterSpecs } from './gpt.ts';
export { type GPTConfig, type LlamaArchConfig, MODEL_SIZES, type ModelSizeName, validateConfig, countParameters, isLlamaArch, toLlamaConfig, fromLlamaConfig } from './config.ts';
export {
  generate,
  generateAll,
  type GenerateOptions,
  type GeneratedToken,
  type GenerationResult,
  type FinishReason,
} from './generate.ts';
export { sampleToken, type SamplingOptions } from './sampling.ts';
export { encodeChat, type ChatMessage, type ChatPromptOptions } from './chat-template.ts';
export { encodeQaPrompt, fitContext, formatContext, queryTerms, type Passage } from './qa-prompt.ts';
export { LoadedModel, loadModel, type ModelInfoLike } from './loaded-model.ts';
export { saveModelFiles, loadModelFiles, readModelConfig, type ModelConfigFile, MODEL_FORMAT } from './model-files.ts';
export { ModelRegistry, ModelFilesError, hashFile, type ModelCheck, type ModelVersion, type RegisterOptions } from './registry.ts';
export { readSafetensors, writeSafetensors, encodeSafetensors, decodeSafetensors } from './safetensors.ts';
export { type ProjectionHook, type ProjectionHookContext, type ProjectionSite } from './gpt.ts';
export * from './lora/index.ts';
export { GgufFile, encodeGguf, writeGguf, quantizeQ8_0, type GgufTensorToWrite, type GgufTyped, type GgufValue } from './import/gguf.ts';
export { BertEncoder, type EncoderInput } from './import/bert.ts';
export { EncoderTokenizer, wordPieceTokenizerJson } from './import/encoder-tokenizer.ts';
export { SUPPORTED_ENCODERS, type EncoderConfig, type Pooling } from './import/encoder-config.ts';
export { ImportError } from './import/hf-folder.ts';
export { inspectEncoder, loadEncoder, type EncoderDescription, type LoadedEncoder } from './import/encoder-checkpoint.ts';
export { loadEncoderVersion, type EncoderManifest } from './import/encoder-manifest.ts';
export { LlamaModel, type LlamaCache, type GenerateOptions as ChatGenerateOptions } from './import/llama.ts';
export { SUPPORTED_CHAT_MODELS, llamaConfigFromHf, type LlamaConfig, type ChatArchitecture } from './import/llama-config.ts';
export { loadChatModel, inspectHfChatModel, inspectGgufChatModel, type ChatModelDescription, type LoadedChatModel } from './import/llama-checkpoint.ts';
export { ChatTokenizer, type ChatMessage as ImportedChatMessage } from './import/chat-tokenizer.ts';
export { loadChatModelVersion, type ChatManifest } from './import/chat-manifest.ts';
export { inspectImport, type ImportDescription } from './import/inspect-import.ts';
