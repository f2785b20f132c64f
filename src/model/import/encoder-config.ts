/**
 * What an imported sentence encoder is: a BERT-family transformer encoder (BertModel, or
 * XLMRobertaModel, which is BERT with positions offset past the padding index and a SentencePiece
 * tokenizer), its pooling (sentence-transformers: CLS or mean, normalised or not), and the tensor
 * names and shapes its config implies. llama.cpp's per-architecture table (llama-arch.cpp,
 * llama-model.cpp) is the model for this: one place says how each family differs.
 */

import { checkTensorShapes, ImportError } from './hf-folder.ts';
export const SUPPORTED_ENCODERS = ['BertModel', 'XLMRobertaModel'] as const;
export type EncoderArchitecture = (typeof SUPPORTED_ENCODERS)[number];

export interface EncoderConfig {
  architecture: EncoderArchitecture;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  /** Rows of the position table. */
  maxPositions: number;
  /** Rows of the token-type table (0: the model has none). */
  typeVocabSize: number;
  layerNormEps: number;
  /**
   * Added to every position before the table lookup: 0 for BERT; padding_idx + 1 for XLM-R in a
   * Hugging Face folder (RoBERTa numbers positions from past the padding index). GGUF files store
   * the table already shifted (llama.cpp's converter drops those rows), so theirs is 0.
   */
  positionOffset: number;
}

export type PoolingMode = 'cls' | 'mean';

export interface Pooling {
  mode: PoolingMode;
  normalize: boolean;
}

/** Tensor names of a BertModel as Hugging Face writes them (prefixes such as "bert." removed). */
export function layerTensor(i: number, name: string): string {
  return `encoder.layer.${i}.${name}`;
}

/** Every tensor the forward reads, with the shape the config implies ([out, in] for weights). */
export function expectedTensors(c: EncoderConfig): Map<string, number[]> {
  const h = c.hidden;
  const m = new Map<string, number[]>([
    ['embeddings.word_embeddings.weight', [c.vocabSize, h]],
    ['embeddings.position_embeddings.weight', [c.maxPositions, h]],
    ['embeddings.LayerNorm.weight', [h]],
    ['embeddings.LayerNorm.bias', [h]],
  ]);
  if (c.typeVocabSize > 0) m.set('embeddings.token_type_embeddings.weight', [c.typeVocabSize, h]);
  for (let i = 0; i < c.layers; i++) {
    for (const p of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) {
      m.set(layerTensor(i, `${p}.weight`), [h, h]);
      m.set(layerTensor(i, `${p}.bias`), [h]);
    }
    m.set(layerTensor(i, 'attention.output.LayerNorm.weight'), [h]);
    m.set(layerTensor(i, 'attention.output.LayerNorm.bias'), [h]);
    m.set(layerTensor(i, 'intermediate.dense.weight'), [c.intermediate, h]);
    m.set(layerTensor(i, 'intermediate.dense.bias'), [c.intermediate]);
    m.set(layerTensor(i, 'output.dense.weight'), [h, c.intermediate]);
    m.set(layerTensor(i, 'output.dense.bias'), [h]);
    m.set(layerTensor(i, 'output.LayerNorm.weight'), [h]);
    m.set(layerTensor(i, 'output.LayerNorm.bias'), [h]);
  }
  return m;
}

export function countEncoderParameters(c: EncoderConfig): number {
  let n = 0;
  for (const shape of expectedTensors(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

function int(raw: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ImportError(`${file}: "${key}" must be a non-negative integer (found ${JSON.stringify(raw[key])})`);
  return v;
}

/** Reads a Hugging Face config.json; refuses an unsupported architecture or activation. */
export function encoderConfigFromHf(raw: Record<string, unknown>, file = 'config.json'): EncoderConfig {
  const archs = Array.isArray(raw.architectures) ? (raw.architectures as string[]) : [];
  const modelType = typeof raw.model_type === 'string' ? raw.model_type : undefined;
  const declared = archs[0] ?? (modelType === 'bert' ? 'BertModel' : modelType === 'xlm-roberta' ? 'XLMRobertaModel' : undefined);
  if (!declared || !(SUPPORTED_ENCODERS as readonly string[]).includes(declared)) {
    const what = declared ? `architecture ${declared}` : `no "architectures" (model_type ${modelType ?? 'missing'})`;
    throw new ImportError(
      `${file} declares ${what}: teamllm imports the encoders ${SUPPORTED_ENCODERS.join(' and ')} ` +
        '(e.g. bge-small-en/zh, multilingual-e5, gte); chat models (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM) are read as chat models',
    );
  }
  const architecture = declared as EncoderArchitecture;
  const act = raw.hidden_act ?? 'gelu';
  if (act !== 'gelu') throw new ImportError(`${file}: hidden_act "${String(act)}" is not supported (only "gelu", the exact erf GELU of BERT and XLM-R)`);
  const posType = raw.position_embedding_type ?? 'absolute';
  if (posType !== 'absolute') throw new ImportError(`${file}: position_embedding_type "${String(posType)}" is not supported (only "absolute")`);
  const hidden = int(raw, 'hidden_size', file);
  const heads = int(raw, 'num_attention_heads', file);
  if (heads === 0 || hidden % heads !== 0) throw new ImportError(`${file}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  const pad = int(raw, 'pad_token_id', file, architecture === 'XLMRobertaModel' ? 1 : 0);
  return {
    architecture,
    vocabSize: int(raw, 'vocab_size', file),
    hidden,
    layers: int(raw, 'num_hidden_layers', file),
    heads,
    intermediate: int(raw, 'intermediate_size', file),
    maxPositions: int(raw, 'max_position_embeddings', file),
    typeVocabSize: int(raw, 'type_vocab_size', file, 2),
    layerNormEps: typeof raw.layer_norm_eps === 'number' ? raw.layer_norm_eps : 1e-12,
    positionOffset: architecture === 'XLMRobertaModel' ? pad + 1 : 0,
  };
}

/** Checks tensors against the shapes the config implies: every problem named, or none. */
export function checkShapes(c: EncoderConfig, shapes: Map<string, number[]>, where: string): void {
  checkTensorShapes(expectedTensors(c), shapes, where);
}
