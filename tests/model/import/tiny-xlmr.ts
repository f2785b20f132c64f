/**
 * A tiny XLM-RoBERTa (multilingual-e5's family) with random weights and a small SentencePiece
 * Unigram vocabulary, written from the same numbers as a Hugging Face folder (tokenizer.json as
 * transformers writes XLM-R's: Precompiled normaliser, Metaspace, Unigram with scores,
 * RobertaProcessing) and as a GGUF file laid out as llama.cpp's convert_hf_to_gguf.py writes
 * XLMRobertaModel (conversion/bert.py, the llama.cpp that node-llama-cpp 3.21.1 bundles):
 *   - general.architecture "bert" (XLM-R has no architecture of its own in llama.cpp);
 *   - the position table without its first padding_idx + 1 = 2 rows, and bert.context_length =
 *     max_position_embeddings − 2 (`_xlmroberta_tokenizer_init` / `modify_tensors`);
 *   - tokenizer.ggml.model "t5" (llama.cpp's UGM tokenizer), pre "default", tokens, scores,
 *     token_type (SentencePiece's: 1 normal, 2 unknown, 3 control), add_space_prefix,
 *     remove_extra_whitespaces, precompiled_charsmap as a u8 array, token_type_count
 *     (`_xlmroberta_set_vocab`), then gguf-py's SpecialVocab: bos/eos/unk/sep/pad/cls/mask ids and
 *     add_bos/add_eos/add_sep true for a RobertaProcessing post-processor (gguf-py/gguf/vocab.py).
 * The charsmap is a real one in miniature: a few of nmt_nfkc's rules (full-width letters and
 * digits, tab/newline/CR and the ideographic space to a space, the "ﬁ" ligature) in SentencePiece's binary form, which llama.cpp applies
 * byte for byte; its rules agree with the NFKC that @huggingface/tokenizers uses for a
 * Precompiled normaliser, so both sides normalise these texts alike.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expectedTensors, type EncoderConfig } from '../../../src/model/import/encoder-config.ts';
import { ggufTensorNames } from '../../../src/model/import/encoder-checkpoint.ts';
import type { GgmlTypeName, GgufTyped } from '../../../src/model/import/gguf.ts';
import { encodeGguf } from '../../../src/model/import/gguf.ts';
import { rng, type TinyBert } from './tiny-bert.ts';

/** [piece, score]: SentencePiece's layout for XLM-R (<s> <pad> </s> <unk> first, <mask> last). */
export const XLMR_PIECES: [string, number][] = [
  ['<s>', 0], ['<pad>', 0], ['</s>', 0], ['<unk>', 0],
  ['▁', -3.2], [',', -3.5], ['.', -3.4], ['?', -4.6], ['!', -5.1], ['s', -4.1], ['▁the', -4.3], ['▁a', -4.9], ['▁of', -4.4],
  ['▁how', -7.1], ['▁many', -7.4], ['▁days', -8.2], ['▁annual', -9.6], ['▁leave', -8.9], ['▁do', -6.7], ['▁I', -6.2], ['▁get', -7.0],
  ['▁when', -7.2], ['▁work', -7.6], ['▁from', -6.9], ['▁home', -7.8], ['▁sick', -9.9], ['▁pay', -8.4], ['▁policy', -9.3],
  ['▁can', -7.3], ['▁my', -6.8], ['▁manager', -9.7], ['▁approve', -10.2], ['▁travel', -9.1], ['▁expense', -10.6], ['▁report', -9.0],
  ['▁per', -8.1], ['▁week', -8.6], ['▁How', -7.5], ['▁Can', -7.9], ['▁HOW', -11.3], ['▁fine', -9.4], ['fi', -8.8], ['ne', -7.7],
  ['ing', -6.1], ['ed', -6.3], ['er', -6.4], ['▁<', -9.8], ['/', -8.3], ['>', -8.5], ['<', -8.7],
  ['▁中国', -9.2], ['中', -8.0], ['国', -8.1], ['▁假期', -10.4], ['假', -9.5], ['期', -9.0], ['年', -8.2], ['▁年', -9.9], ['的', -6.0],
  ['h', -7.9], ['o', -7.0], ['w', -8.3], ['a', -6.9], ['e', -6.6], ['i', -7.1], ['n', -7.2], ['r', -7.3], ['t', -6.8], ['l', -7.6],
  ['d', -7.4], ['y', -8.0], ['m', -7.8], ['p', -8.1], ['k', -8.6], ['c', -7.7], ['g', -8.2], ['f', -8.4], ['u', -7.5], ['v', -8.9],
  ['H', -9.3], ['O', -9.6], ['W', -9.8], ['I', -8.7], ['C', -9.1], ['S', -9.2], ['E', -9.4], ['P', -9.7],
  ['▁h', -9.0], ['▁w', -9.1], ['▁s', -8.8], ['▁m', -8.9], ['▁t', -8.6], ['▁p', -9.2], ['▁c', -9.3], ['▁d', -9.4],
  ['<mask>', 0],
];
const CONTROL_PIECES = new Set(['<s>', '<pad>', '</s>', '<mask>']);
const PIECE_ID = new Map(XLMR_PIECES.map(([p], i) => [p, i]));

/** A few of SentencePiece's nmt_nfkc rules: full-width A–Z, a–z and digits, U+3000, "ﬁ". */
export const CHARSMAP_RULES: [string, string][] = [
  ...Array.from({ length: 26 }, (_, i): [string, string] => [String.fromCodePoint(0xff21 + i), String.fromCodePoint(0x41 + i)]),
  ...Array.from({ length: 26 }, (_, i): [string, string] => [String.fromCodePoint(0xff41 + i), String.fromCodePoint(0x61 + i)]),
  ...Array.from({ length: 10 }, (_, i): [string, string] => [String.fromCodePoint(0xff10 + i), String.fromCodePoint(0x30 + i)]),
  ['\t', ' '],
  ['\n', ' '],
  ['\r', ' '],
  ['\u3000', ' '],
  ['\ufb01', 'fi'],
];

/**
 * SentencePiece's precompiled charsmap (normalizer.cc, read by llama.cpp's llm_tokenizer_ugm):
 * u32 size of the trie, the trie as a Darts-clone double array of u32 units, then the
 * replacement strings, each NUL-terminated. A unit: bits 10–30 the offset to its children's
 * block (XORed with its own index; bit 9 would shift it by 8 for large offsets), bit 8 "a key
 * ends here", bits 0–7 the byte that leads to it; the unit at `children ^ 0` of a node where a key
 * ends holds, with bit 31 set, the offset of that key's replacement. llama.cpp reads a unit for
 * every byte it tries, so the array is padded to whole blocks of 256 as Darts-clone writes it.
 */
export function buildCharsmap(rules: [string, string][]): Uint8Array {
  interface Node {
    children: Map<number, Node>;
    value?: number;
  }
  const root: Node = { children: new Map() };
  const strings: number[] = [];
  for (const [from, to] of rules) {
    let node = root;
    for (const byte of Buffer.from(from, 'utf8')) {
      let next = node.children.get(byte);
      if (!next) node.children.set(byte, (next = { children: new Map() }));
      node = next;
    }
    node.value = strings.length;
    strings.push(...Buffer.from(to, 'utf8'), 0);
  }
  const units: number[] = [];
  const used = new Set<number>([0]);
  const queue: { node: Node; at: number; label: number }[] = [{ node: root, at: 0, label: 0 }];
  while (queue.length) {
    const { node, at, label } = queue.shift()!;
    const slots = [...node.children.keys(), ...(node.value !== undefined ? [0] : [])];
    let base = 1;
    while (slots.some((c) => used.has(base ^ c))) base++;
    for (const c of slots) used.add(base ^ c);
    const offset = at ^ base;
    if (offset >= 1 << 21) throw new Error('charsmap too large for this builder');
    units[at] = ((offset << 10) | (node.value !== undefined ? 1 << 8 : 0) | label) >>> 0;
    if (node.value !== undefined) units[base] = ((1 << 31) | node.value) >>> 0;
    for (const [c, child] of node.children) queue.push({ node: child, at: base ^ c, label: c });
  }
  // Darts-clone lays units out in blocks of 256: a lookup base ^ byte never leaves its block.
  const trie = Buffer.alloc(Math.ceil(units.length / 256) * 256 * 4);
  for (let i = 0; i < units.length; i++) trie.writeUInt32LE(units[i] ?? 0, i * 4);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(trie.length);
  return new Uint8Array(Buffer.concat([head, trie, Buffer.from(strings)]));
}

export const TINY_CHARSMAP = buildCharsmap(CHARSMAP_RULES);

export interface TinyXlmrOptions {
  hidden?: number;
  heads?: number;
  layers?: number;
  intermediate?: number;
  /** Tokens one sequence may have (the table has 2 more rows, XLM-R's padding offset). */
  maxTokens?: number;
  seed?: number;
  pooling?: 'cls' | 'mean';
  normalize?: boolean;
}

/** A random XLM-R: one token type (as multilingual-e5), LayerNorm eps 1e-5, padding_idx 1. */
export function tinyXlmr(options: TinyXlmrOptions = {}): TinyBert {
  const config: EncoderConfig = {
    architecture: 'XLMRobertaModel',
    vocabSize: XLMR_PIECES.length,
    hidden: options.hidden ?? 64,
    heads: options.heads ?? 4,
    layers: options.layers ?? 2,
    intermediate: options.intermediate ?? 128,
    maxPositions: (options.maxTokens ?? 64) + 2,
    typeVocabSize: 1,
    layerNormEps: 1e-5,
    positionOffset: 2,
  };
  const normal = rng(options.seed ?? 4321);
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
  return { config, weights, pooling: options.pooling ?? 'mean', normalize: options.normalize ?? true, tokenizerFiles: { json: xlmrTokenizerJson(), config: XLMR_TOKENIZER_CONFIG } };
}

/** tokenizer.json as transformers' XLMRobertaConverter writes it (multilingual-e5's, in miniature). */
export function xlmrTokenizerJson(): Record<string, unknown> {
  const added = (content: string) => ({ id: PIECE_ID.get(content)!, content, single_word: false, lstrip: content === '<mask>', rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: ['<s>', '<pad>', '</s>', '<unk>', '<mask>'].map(added),
    normalizer: { type: 'Precompiled', precompiled_charsmap: Buffer.from(TINY_CHARSMAP).toString('base64') },
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: true },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: 3, vocab: XLMR_PIECES, byte_fallback: false },
  };
}

/** The tokenizer_config.json of an XLM-R folder (the part gguf-py's SpecialVocab reads). */
export const XLMR_TOKENIZER_CONFIG = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', sep_token: '</s>', pad_token: '<pad>', cls_token: '<s>', mask_token: '<mask>', model_max_length: 512, tokenizer_class: 'XLMRobertaTokenizer' };

/**
 * The GGUF as convert_hf_to_gguf.py's XLMRobertaModel writes it (see the module comment). Norms,
 * biases and the token-type table stay F32; the other matrices are `dtype`.
 */
export function encodeTinyXlmrGguf(model: TinyBert, dtype: GgmlTypeName = 'F32', extra: { tokenizerModel?: string } = {}): Uint8Array {
  const c = model.config;
  const offset = c.positionOffset;
  const id = (t: string) => PIECE_ID.get(t)!;
  const meta: [string, GgufTyped][] = [
    ['general.architecture', { type: 'string', value: 'bert' }],
    ['general.name', { type: 'string', value: 'tiny-e5' }],
    ['general.file_type', { type: 'u32', value: dtype === 'F32' ? 0 : dtype === 'F16' ? 1 : dtype === 'Q8_0' ? 7 : 32 }],
    ['bert.context_length', { type: 'u32', value: c.maxPositions - offset }],
    ['bert.embedding_length', { type: 'u32', value: c.hidden }],
    ['bert.feed_forward_length', { type: 'u32', value: c.intermediate }],
    ['bert.block_count', { type: 'u32', value: c.layers }],
    ['bert.attention.head_count', { type: 'u32', value: c.heads }],
    ['bert.attention.layer_norm_epsilon', { type: 'f32', value: c.layerNormEps }],
    ['bert.attention.causal', { type: 'bool', value: false }],
    ['bert.pooling_type', { type: 'u32', value: model.pooling === 'mean' ? 1 : 2 }],
    ['tokenizer.ggml.model', { type: 'string', value: extra.tokenizerModel ?? 't5' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'default' }],
    ['tokenizer.ggml.tokens', { type: 'array', of: 'string', value: XLMR_PIECES.map(([p]) => p) }],
    ['tokenizer.ggml.scores', { type: 'array', of: 'f32', value: XLMR_PIECES.map(([, s]) => s) }],
    ['tokenizer.ggml.token_type', { type: 'array', of: 'i32', value: XLMR_PIECES.map(([p]) => (p === '<unk>' ? 2 : CONTROL_PIECES.has(p) ? 3 : 1)) }],
    ['tokenizer.ggml.add_space_prefix', { type: 'bool', value: true }],
    ['tokenizer.ggml.token_type_count', { type: 'u32', value: c.typeVocabSize }],
    ['tokenizer.ggml.remove_extra_whitespaces', { type: 'bool', value: true }],
    ['tokenizer.ggml.precompiled_charsmap', { type: 'array', of: 'u8', value: [...TINY_CHARSMAP] }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: id('<s>') }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: id('</s>') }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: id('<unk>') }],
    ['tokenizer.ggml.seperator_token_id', { type: 'u32', value: id('</s>') }],
    ['tokenizer.ggml.padding_token_id', { type: 'u32', value: id('<pad>') }],
    ['tokenizer.ggml.cls_token_id', { type: 'u32', value: id('<s>') }],
    ['tokenizer.ggml.mask_token_id', { type: 'u32', value: id('<mask>') }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_sep_token', { type: 'bool', value: true }],
  ];
  const shapes = expectedTensors(c);
  const tensors = [...ggufTensorNames(c)].map(([hf, name]) => {
    let shape = shapes.get(hf)!;
    let data = model.weights.get(hf)!;
    if (hf === 'embeddings.position_embeddings.weight') {
      // "position embeddings start at pad_token_id + 1, so just chop down the weight tensor"
      shape = [shape[0]! - offset, shape[1]!];
      data = data.subarray(offset * c.hidden);
    }
    const type: GgmlTypeName = shape.length === 2 && name !== 'token_types.weight' ? dtype : 'F32';
    return { name, shape, data, type };
  });
  return encodeGguf(meta, tensors);
}

export function writeTinyXlmrGguf(file: string, model: TinyBert, dtype: GgmlTypeName = 'F32', extra: { tokenizerModel?: string } = {}): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, encodeTinyXlmrGguf(model, dtype, extra));
}
