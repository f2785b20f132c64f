/**
 * A tiny BERT with random weights, real tensor names and a small WordPiece vocabulary, written
 * from the same numbers as a Hugging Face folder (config.json, model.safetensors, tokenizer.json,
 * sentence-transformers pooling files) and as a GGUF file laid out as llama.cpp's
 * convert_hf_to_gguf.py writes the "bert" architecture. No pretrained weights exist on this
 * machine: the parity checks run on these.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encodeSafetensors, type NamedArray } from '../../../src/model/safetensors.ts';
import { expectedTensors, type EncoderConfig } from '../../../src/model/import/encoder-config.ts';
import { ggufTensorNames } from '../../../src/model/import/encoder-checkpoint.ts';
import { wordPieceTokenizerJson } from '../../../src/model/import/encoder-tokenizer.ts';
import { encodeGguf, type GgmlTypeName, type GgufTyped } from '../../../src/model/import/gguf.ts';
import { roundTo16 } from '../../../src/model/import/dtypes.ts';

export const TINY_VOCAB = [
  '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
  'how', 'many', 'days', 'of', 'annual', 'leave', 'do', 'i', 'get', 'the', 'a', 'holiday', 'sick', 'pay',
  'work', 'remote', 'from', 'home', 'policy', 'employee', 'week', 'hours', 'per', 'is', 'what', 'can',
  'travel', 'expense', 'report', 'manager', 'approve', 'my', 'when', 'year', 'new', 'hire', 'laptop',
  '?', '.', ',', '!', '[', ']', '<', '>', '/', 'cl', 'se', 's', 'p',
  '##s', '##ing', '##ed', '##ly', '##er', '##ay', '##ork', '##s?', '##cls', '##sep',
  '中', '国', '假', '期', '年',
];

export interface TinyBertOptions {
  hidden?: number;
  heads?: number;
  layers?: number;
  intermediate?: number;
  maxPositions?: number;
  seed?: number;
  pooling?: 'cls' | 'mean';
  normalize?: boolean;
}

/** Deterministic normal draws (mulberry32 + Box-Muller): the tiny test models' weights. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
}

export interface TinyBert {
  config: EncoderConfig;
  /** HF names → values. */
  weights: Map<string, Float32Array>;
  pooling: 'cls' | 'mean';
  normalize: boolean;
  /** tokenizer.json and tokenizer_config.json of the folder (default: the WordPiece of TINY_VOCAB). */
  tokenizerFiles?: { json: Record<string, unknown>; config: Record<string, unknown> };
}

export function tinyBert(options: TinyBertOptions = {}): TinyBert {
  const config: EncoderConfig = {
    architecture: 'BertModel',
    vocabSize: TINY_VOCAB.length,
    hidden: options.hidden ?? 64,
    heads: options.heads ?? 4,
    layers: options.layers ?? 2,
    intermediate: options.intermediate ?? 128,
    maxPositions: options.maxPositions ?? 64,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    positionOffset: 0,
  };
  const normal = rng(options.seed ?? 1234);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of expectedTensors(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    const isNorm = name.includes('LayerNorm');
    const fanIn = shape.length === 2 && !name.startsWith('embeddings.') ? shape[1]! : 1;
    for (let i = 0; i < size; i++) {
      const z = normal();
      values[i] = isNorm && name.endsWith('weight') ? 1 + 0.1 * z : isNorm || name.endsWith('bias') ? 0.05 * z : name.startsWith('embeddings.') ? 0.5 * z : z / Math.sqrt(fanIn);
    }
    weights.set(name, values);
  }
  return { config, weights, pooling: options.pooling ?? 'cls', normalize: options.normalize ?? true };
}

/** The same numbers rounded through F16 or BF16 (what a file of that dtype holds). */
export function rounded(model: TinyBert, dtype: 'F16' | 'BF16'): TinyBert {
  return { ...model, weights: new Map([...model.weights].map(([n, v]) => [n, roundTo16(v, dtype)])) };
}

export function hfConfigJson(config: EncoderConfig): Record<string, unknown> {
  return {
    architectures: [config.architecture],
    model_type: config.architecture === 'BertModel' ? 'bert' : 'xlm-roberta',
    vocab_size: config.vocabSize,
    hidden_size: config.hidden,
    num_hidden_layers: config.layers,
    num_attention_heads: config.heads,
    intermediate_size: config.intermediate,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    max_position_embeddings: config.maxPositions,
    type_vocab_size: config.typeVocabSize,
    layer_norm_eps: config.layerNormEps,
    pad_token_id: config.architecture === 'BertModel' ? 0 : 1,
    position_embedding_type: 'absolute',
    torch_dtype: 'float32',
  };
}

/** Writes the Hugging Face folder: weights stored as `dtype` (BERT's with a "bert." prefix, and a pooler, as such checkpoints often have; XLM-R's without, as multilingual-e5's). */
export function writeHfFolder(dir: string, model: TinyBert, dtype: 'F32' | 'F16' | 'BF16' = 'F32', extra: { licence?: string; noModules?: boolean } = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson(model.config), null, 2));
  const tensors = new Map<string, NamedArray>();
  const prefix = model.config.architecture === 'BertModel' ? 'bert.' : '';
  for (const [name, values] of model.weights) {
    const shape = expectedTensors(model.config).get(name)!;
    tensors.set(`${prefix}${name}`, { dtype: 'F32', shape, data: values, ...(dtype !== 'F32' ? { stored: dtype } : {}) });
  }
  const h = model.config.hidden;
  tensors.set(`${prefix}pooler.dense.weight`, { dtype: 'F32', shape: [h, h], data: new Float32Array(h * h) });
  tensors.set(`${prefix}pooler.dense.bias`, { dtype: 'F32', shape: [h], data: new Float32Array(h) });
  writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  const tokenizer = model.tokenizerFiles ?? {
    json: wordPieceTokenizerJson(TINY_VOCAB, { cls: '[CLS]', sep: '[SEP]', unk: '[UNK]', pad: '[PAD]', mask: '[MASK]' }),
    config: { do_lower_case: true, model_max_length: model.config.maxPositions, cls_token: '[CLS]', sep_token: '[SEP]', unk_token: '[UNK]', pad_token: '[PAD]', mask_token: '[MASK]' },
  };
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer.json));
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizer.config));
  if (!extra.noModules) {
    const modules = [
      { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
      { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
      ...(model.normalize ? [{ idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' }] : []),
    ];
    writeFileSync(path.join(dir, 'modules.json'), JSON.stringify(modules, null, 2));
    mkdirSync(path.join(dir, '1_Pooling'), { recursive: true });
    writeFileSync(
      path.join(dir, '1_Pooling', 'config.json'),
      JSON.stringify({ word_embedding_dimension: h, pooling_mode_cls_token: model.pooling === 'cls', pooling_mode_mean_tokens: model.pooling === 'mean', pooling_mode_max_tokens: false, pooling_mode_mean_sqrt_len_tokens: false }),
    );
  }
  if (extra.licence) writeFileSync(path.join(dir, 'README.md'), `---\nlicense: ${extra.licence}\nlanguage: en\n---\n# tiny test encoder\n`);
}

/** GGUF token types (llama.h): 1 normal, 3 control. */
const CONTROL = new Set(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);

/**
 * The GGUF file as convert_hf_to_gguf.py's BertModel writes it: general.architecture "bert",
 * bert.* hyperparameters, the phantom-space vocabulary (a word-initial piece gets "▁", a "##"
 * continuation loses it, control tokens stay), special token ids, and the tensors under llama.cpp's
 * names (no pooler). Norms, biases and the token-type table stay F32 (as the converter keeps them);
 * the other matrices are `dtype`.
 */
export function encodeTinyGguf(model: TinyBert, dtype: GgmlTypeName = 'F32'): Uint8Array {
  const c = model.config;
  const id = (t: string) => TINY_VOCAB.indexOf(t);
  const meta: [string, GgufTyped][] = [
    ['general.architecture', { type: 'string', value: 'bert' }],
    ['general.name', { type: 'string', value: 'tiny-bert' }],
    ['general.file_type', { type: 'u32', value: dtype === 'F32' ? 0 : dtype === 'F16' ? 1 : dtype === 'Q8_0' ? 7 : 32 }],
    ['bert.context_length', { type: 'u32', value: c.maxPositions }],
    ['bert.embedding_length', { type: 'u32', value: c.hidden }],
    ['bert.feed_forward_length', { type: 'u32', value: c.intermediate }],
    ['bert.block_count', { type: 'u32', value: c.layers }],
    ['bert.attention.head_count', { type: 'u32', value: c.heads }],
    ['bert.attention.layer_norm_epsilon', { type: 'f32', value: c.layerNormEps }],
    ['bert.attention.causal', { type: 'bool', value: false }],
    ['bert.pooling_type', { type: 'u32', value: model.pooling === 'mean' ? 1 : 2 }],
    ['tokenizer.ggml.model', { type: 'string', value: 'bert' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'default' }],
    ['tokenizer.ggml.tokens', { type: 'array', of: 'string', value: TINY_VOCAB.map((t) => (CONTROL.has(t) ? t : t.startsWith('##') ? t.slice(2) : `\u2581${t}`)) }],
    ['tokenizer.ggml.token_type', { type: 'array', of: 'i32', value: TINY_VOCAB.map((t) => (CONTROL.has(t) ? 3 : 1)) }],
    ['tokenizer.ggml.token_type_count', { type: 'u32', value: c.typeVocabSize }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: id('[CLS]') }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: id('[SEP]') }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: id('[UNK]') }],
    ['tokenizer.ggml.seperator_token_id', { type: 'u32', value: id('[SEP]') }],
    ['tokenizer.ggml.padding_token_id', { type: 'u32', value: id('[PAD]') }],
    ['tokenizer.ggml.cls_token_id', { type: 'u32', value: id('[CLS]') }],
    ['tokenizer.ggml.mask_token_id', { type: 'u32', value: id('[MASK]') }],
  ];
  const shapes = expectedTensors(c);
  const tensors = [...ggufTensorNames(c)].map(([hf, name]) => {
    const shape = shapes.get(hf)!;
    // The converter keeps 1-D tensors and the token-type table F32 (llama.cpp adds its row to F32 activations).
    const type: GgmlTypeName = shape.length === 2 && name !== 'token_types.weight' ? dtype : 'F32';
    return { name, shape, data: model.weights.get(hf)!, type };
  });
  return encodeGguf(meta, tensors);
}

export function writeTinyGguf(file: string, model: TinyBert, dtype: GgmlTypeName = 'F32'): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, encodeTinyGguf(model, dtype));
}
