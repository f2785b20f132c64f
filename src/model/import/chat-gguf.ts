/**
 * How a Llama-family chat model is laid out in a GGUF file of llama.cpp's llama, qwen2 or qwen3
 * architecture — read by llama-checkpoint.ts, written here (`teamllm model export --format gguf`,
 * the llama.cpp serving engine's file, and the tests' fixtures: one writer).
 *
 * Sources for the names and numbers (llama.cpp as node-llama-cpp 3.21.1 bundles it, release
 * v0.4.0: node_modules/node-llama-cpp/llama/gitRelease.bundle):
 *   - gguf-py/gguf/constants.py: metadata keys (Keys.General/LLM/Attention/Rope/Tokenizer),
 *     tensor names (MODEL_TENSOR), LlamaFileType (F32 0, F16 1, Q8_0 7, BF16 32), TokenType
 *     (NORMAL 1, CONTROL 3, USER_DEFINED 4, UNUSED 5), GGML_QUANT_VERSION 2;
 *   - conversion/base.py TextModel.set_gguf_parameters and get_vocab_base (what is written, the
 *     [PAD{i}] fill of ids the tokenizer lacks, does_token_look_special), prepare_metadata;
 *   - conversion/llama.py LlamaModel: vocab_size and rope.dimension_count, the q/k row permutation
 *     (permute: reshape(n_head, 2, d/2, ...).swapaxes(1, 2)), llama3 RoPE as a rope_freqs tensor;
 *   - conversion/qwen.py Qwen2Model/Qwen3Model: the rows as they are (llama.cpp runs NEOX RoPE);
 *   - src/models/qwen3.cpp: no attention output bias in llama.cpp's qwen3;
 *   - src/llama-vocab.cpp: the texts of tokens that end generation (LLAMA_CPP_END_TEXTS).
 * 1-D tensors (norms, biases, rope_freqs) are F32, matrices the file's type, as the converter does;
 * a matrix whose rows are not a multiple of 32 wide cannot be Q8_0 and is F16 (the converter's
 * fallback too).
 */
import type { ChatTokenizer } from './chat-tokenizer.ts';
import { BPE_PRE_TOKENIZERS } from './chat-tokenizer.ts';
import { encodeGguf, ggufFileBytes, quantizeQ8_0, writeGguf, type GgmlTypeName, type GgufTensorToWrite, type GgufTyped } from './gguf.ts';
import { ImportError } from './hf-folder.ts';
import { expectedLlamaTensors, llama3RopeFactors, type ChatArchitecture, type LlamaConfig } from './llama-config.ts';
import { encode16, floatToHalf, halfToFloat } from './dtypes.ts';
import { dequantize, f32Matrix, halfBitsToBf16, permuteWeightRows, type WeightMatrix } from './weights.ts';

/** llama.cpp's architectures read and written here, and the Hugging Face architecture each stands for. */
export const GGUF_CHAT_ARCHS: Record<string, ChatArchitecture> = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' };

/** The llama.cpp architecture a Hugging Face one is written as (Mistral is llama.cpp's llama, as its converter does). */
export function ggufArchOf(architecture: ChatArchitecture): 'llama' | 'qwen2' | 'qwen3' {
  return architecture === 'Qwen2ForCausalLM' ? 'qwen2' : architecture === 'Qwen3ForCausalLM' ? 'qwen3' : 'llama';
}

/** llama.cpp's tensor names (gguf-py constants.py / tensor_mapping.py) → Hugging Face names. */
export function ggufChatTensorName(hfName: string): string | undefined {
  const fixed: Record<string, string> = {
    'model.embed_tokens.weight': 'token_embd.weight',
    'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
  };
  if (fixed[hfName]) return fixed[hfName];
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hfName);
  if (!m) return undefined;
  const per: Record<string, string> = {
    input_layernorm: 'attn_norm',
    'self_attn.q_proj': 'attn_q',
    'self_attn.k_proj': 'attn_k',
    'self_attn.v_proj': 'attn_v',
    'self_attn.o_proj': 'attn_output',
    'self_attn.q_norm': 'attn_q_norm',
    'self_attn.k_norm': 'attn_k_norm',
    post_attention_layernorm: 'ffn_norm',
    'mlp.gate_proj': 'ffn_gate',
    'mlp.up_proj': 'ffn_up',
    'mlp.down_proj': 'ffn_down',
  };
  const part = per[m[2]!];
  return part ? `blk.${m[1]}.${part}.${m[3]}` : undefined;
}

/**
 * convert_hf_to_gguf.py's LlamaModel.permute on the rows of q/k (each head's two halves
 * interleaved, so that llama.cpp's RoPE rotates adjacent pairs): HF row h·d + j·d/2 + i goes to
 * GGUF row h·d + 2i + j.
 */
export function permutedRow(heads: number, rows: number): (r: number) => number {
  const d = rows / heads;
  const half = d / 2;
  return (r) => {
    const h = Math.floor(r / d);
    const rem = r - h * d;
    const j = rem >= half ? 1 : 0;
    return h * d + 2 * (rem - j * half) + j;
  };
}

/** The inverse of permutedRow: where GGUF row r goes in Hugging Face's order. */
export function unpermutedRow(heads: number, rows: number): (r: number) => number {
  const d = rows / heads;
  const half = d / 2;
  return (r) => {
    const h = Math.floor(r / d);
    const rem = r - h * d;
    return h * d + (rem % 2) * half + Math.floor(rem / 2);
  };
}

/** Undoes the permutation on float32 rows (weights [rows, cols], or biases with cols 1). */
export function unpermuteRows(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  return permuteWeightRows(f32Matrix(w, rows, cols), unpermutedRow(heads, rows)).data as Float32Array;
}

/**
 * Texts of tokens llama.cpp ends generation at whatever the metadata says (llama-vocab.cpp, its
 * "auto-detect EOG tokens by text"), those a Llama-family vocabulary can hold.
 */
export const LLAMA_CPP_END_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>', '<EOT>', '<|end_of_text|>'];

/** The ids llama.cpp stops at: eos, eot and eom of the metadata, and the tokens LLAMA_CPP_END_TEXTS name. */
export function ggufEndIds(tokens: readonly string[], declared: readonly (number | undefined)[]): number[] {
  const ids = new Set(declared.filter((v): v is number => typeof v === 'number' && v >= 0 && v < tokens.length));
  for (const text of LLAMA_CPP_END_TEXTS) {
    const id = tokens.indexOf(text);
    if (id >= 0) ids.add(id);
  }
  return [...ids].sort((a, b) => a - b);
}

/** What the tokenizer.* metadata of a GGUF file says (llama.cpp's "gpt2" byte-level BPE). */
export interface GgufVocabulary {
  tokens: string[];
  /** gguf TokenType per token: 1 normal, 3 control, 4 user-defined, 5 unused. */
  types: number[];
  merges: string[];
  /** tokenizer.ggml.pre: the split expression's name (qwen2, llama-bpe). */
  pre: string;
  bosId?: number;
  eosId?: number;
  eotId?: number;
  eomId?: number;
  padId?: number;
  unkId?: number;
  addBos: boolean;
  chatTemplate?: string;
}

/**
 * The GGUF vocabulary of a byte-level BPE tokenizer.json (what Llama 3, Qwen2/2.5/3 ship), as
 * convert_hf_to_gguf.py's get_vocab_base and SpecialVocab write it: the tokens by id up to the
 * embedding's rows (ids the tokenizer lacks as "[PAD{id}]", unused), added tokens control when
 * special or when they look it (<|…|>), else user-defined; the split expression named by llama.cpp
 * (anything else is refused: llama.cpp picks its split by name). End-of-turn ids that llama.cpp
 * would not find from eos and the token texts go into eot and eom; `lost` names any left over.
 */
export function ggufVocabulary(tokenizer: ChatTokenizer, vocabSize: number, options: { addBos?: boolean; bosId?: number } = {}): GgufVocabulary & { lost: number[] } {
  const json = tokenizer.json;
  const model = json.model as { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] } | undefined;
  if (model?.type !== 'BPE' || !model.vocab) throw new ImportError(`GGUF export: the tokenizer is ${model?.type ?? 'unknown'}, not byte-level BPE; teamllm writes GGUF vocabularies of byte-level BPE tokenizers (Llama 3, Qwen) only: export hf and convert with llama.cpp's convert_hf_to_gguf.py`);
  const split = splitRegexOf(json.pre_tokenizer);
  const pre = Object.entries(BPE_PRE_TOKENIZERS).find(([, regex]) => regex === split)?.[0];
  if (!pre) throw new ImportError(`GGUF export: the tokenizer's pre-tokenizer split is not one llama.cpp names here (${Object.keys(BPE_PRE_TOKENIZERS).join(', ')}); export hf and convert with llama.cpp's convert_hf_to_gguf.py`);
  const tokens: (string | undefined)[] = new Array(vocabSize);
  const types: number[] = new Array(vocabSize).fill(5);
  for (const [text, id] of Object.entries(model.vocab)) {
    if (id < vocabSize) {
      tokens[id] = text;
      types[id] = 1;
    }
  }
  for (const t of json.added_tokens ?? []) {
    if (t.id >= vocabSize) throw new ImportError(`GGUF export: added token ${JSON.stringify(t.content)} has id ${t.id}, beyond the ${vocabSize} rows of the embedding table`);
    tokens[t.id] = t.content;
    types[t.id] = t.special || (t.content.startsWith('<|') && t.content.endsWith('|>')) ? 3 : 4;
  }
  const filled = tokens.map((t, i) => t ?? `[PAD${i}]`);
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const idOf = (key: string) => {
    const text = tokenizer.templateStrings[key];
    return text === undefined ? undefined : tokenizer.idOf(text);
  };
  const eosIds = [...tokenizer.eosIds].sort((a, b) => a - b);
  const eosId = idOf('eos_token') ?? eosIds[0];
  const byText = new Set(ggufEndIds(filled, [eosId]));
  const rest = eosIds.filter((id) => !byText.has(id));
  const bosId = idOf('bos_token') ?? options.bosId;
  const padId = idOf('pad_token');
  const unkId = idOf('unk_token');
  return {
    tokens: filled,
    types,
    merges,
    pre,
    ...(bosId !== undefined ? { bosId } : {}),
    ...(eosId !== undefined ? { eosId } : {}),
    ...(rest[0] !== undefined ? { eotId: rest[0] } : {}),
    ...(rest[1] !== undefined ? { eomId: rest[1] } : {}),
    ...(padId !== undefined ? { padId } : {}),
    ...(unkId !== undefined ? { unkId } : {}),
    addBos: options.addBos ?? false,
    ...(tokenizer.chatTemplate !== undefined ? { chatTemplate: tokenizer.chatTemplate } : {}),
    lost: rest.slice(2),
  };
}

/** The Split expression of a byte-level BPE pre-tokenizer (a Sequence of Split and ByteLevel). */
function splitRegexOf(pre: unknown): string | undefined {
  const p = pre as { type?: string; pretokenizers?: unknown[]; pattern?: { Regex?: string } } | null | undefined;
  if (!p) return undefined;
  if (p.type === 'Split') return p.pattern?.Regex;
  if (p.type === 'Sequence') {
    const parts = p.pretokenizers ?? [];
    const splits = parts.map(splitRegexOf).filter((r): r is string => r !== undefined);
    const byteLevel = parts.some((x) => (x as { type?: string }).type === 'ByteLevel');
    return splits.length === 1 && byteLevel ? splits[0] : undefined;
  }
  return undefined;
}

/** A chat model to write: its config, weights under Hugging Face names and row order (float32 or held matrices), vocabulary. */
export interface ChatGgufSource {
  config: LlamaConfig;
  weights: ReadonlyMap<string, Float32Array | WeightMatrix>;
  vocabulary: GgufVocabulary;
  name?: string;
  licence?: string;
}

/** The tensor types a chat model's matrices are written as. */
export type ChatGgufType = GgmlTypeName;

const FILE_TYPE: Record<ChatGgufType, number> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 };
const GGML_QUANT_VERSION = 2;

/** A matrix's bytes in `type`: the held bits when they already are (bf16, f16, Q8_0's own blocks), else converted. */
export function encodeMatrix(w: WeightMatrix, type: ChatGgufType): Uint8Array {
  const asBytes = (a: Float32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  switch (type) {
    case 'F32':
      return asBytes(dequantize(w));
    case 'F16':
      return w.dtype === 'f16' ? asBytes(w.data) : encode16(dequantize(w), 'F16');
    case 'BF16':
      if (w.dtype === 'bf16') return asBytes(w.data);
      if (w.dtype === 'f16') return asBytes(halfBitsToBf16(w.data, w.rows, w.cols).data as Uint16Array);
      return encode16(dequantize(w), 'BF16');
    case 'Q8_0':
      return w.dtype === 'int8' && w.group === 32 && heldQ8_0Scales(w.scales) ? int8ToQ8_0(w) : quantizeQ8_0(dequantize(w));
  }
}

/** Scales that F16 holds exactly (blocks read from a Q8_0 file): re-written as they are. */
function heldQ8_0Scales(scales: Float32Array): boolean {
  for (const s of scales) if (halfToFloat(floatToHalf(s)) !== s) return false;
  return true;
}

/** int8 with one scale per 32 columns → Q8_0 blocks (34 bytes: the F16 scale, 32 int8), the same numbers. */
function int8ToQ8_0(w: Extract<WeightMatrix, { dtype: 'int8' }>): Uint8Array {
  const blocks = w.scales.length;
  const out = new Uint8Array(blocks * 34);
  const view = new DataView(out.buffer);
  const q = new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength);
  for (let b = 0; b < blocks; b++) {
    view.setUint16(b * 34, floatToHalf(w.scales[b]!), true);
    out.set(q.subarray(b * 32, b * 32 + 32), b * 34 + 2);
  }
  return out;
}

/**
 * The metadata and tensors of a chat model's GGUF file (matrices `type`; llama arch: q/k rows
 * permuted). Refuses what llama.cpp's architecture cannot hold. Tensors are encoded when written.
 */
export function chatGgufLayout(source: ChatGgufSource, type: ChatGgufType): { metadata: [string, GgufTyped][]; tensors: GgufTensorToWrite[]; notes: string[] } {
  const c = source.config;
  const arch = ggufArchOf(c.architecture);
  const notes: string[] = [];
  if (arch === 'qwen3' && c.outputBias) throw new ImportError("GGUF export: llama.cpp's qwen3 architecture has no attention output bias, and this model has one");
  if (arch === 'qwen2' && (!c.qkvBias || c.outputBias || c.qkNorm)) throw new ImportError("GGUF export: llama.cpp's qwen2 architecture needs q/k/v biases and no output bias or q/k norm");
  if (arch === 'llama' && c.qkNorm) throw new ImportError("GGUF export: llama.cpp's llama architecture has no q/k norm");
  if (c.slidingWindow !== undefined) notes.push(`its sliding window of ${c.slidingWindow} positions is not written (llama.cpp's llama architecture attends to the whole context, as its converter leaves Mistral's)`);
  const v = source.vocabulary;
  const u32 = (value: number): GgufTyped => ({ type: 'u32', value });
  const f32 = (value: number): GgufTyped => ({ type: 'f32', value });
  const metadata: [string, GgufTyped][] = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.type', { type: 'string', value: 'model' }],
    ['general.name', { type: 'string', value: source.name ?? c.architecture }],
    ...(source.licence && source.licence !== 'unknown' ? ([['general.license', { type: 'string', value: source.licence }]] as [string, GgufTyped][]) : []),
    [`${arch}.block_count`, u32(c.layers)],
    [`${arch}.context_length`, u32(c.maxPositions)],
    [`${arch}.embedding_length`, u32(c.hidden)],
    [`${arch}.feed_forward_length`, u32(c.intermediate)],
    [`${arch}.attention.head_count`, u32(c.heads)],
    [`${arch}.attention.head_count_kv`, u32(c.kvHeads)],
    [`${arch}.rope.freq_base`, f32(c.ropeTheta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(c.rmsNormEps)],
    ...(c.ropeScaling.type === 'linear' ? ([[`${arch}.rope.scaling.type`, { type: 'string', value: 'linear' }], [`${arch}.rope.scaling.factor`, f32(c.ropeScaling.factor)]] as [string, GgufTyped][]) : []),
    ...(c.headDim !== c.hidden / c.heads || arch === 'qwen3' ? ([[`${arch}.attention.key_length`, u32(c.headDim)], [`${arch}.attention.value_length`, u32(c.headDim)]] as [string, GgufTyped][]) : []),
    ...(arch === 'llama' ? ([[`${arch}.vocab_size`, u32(c.vocabSize)], [`${arch}.rope.dimension_count`, u32(c.headDim)]] as [string, GgufTyped][]) : []),
    ['general.file_type', u32(FILE_TYPE[type])],
    ['general.quantization_version', u32(GGML_QUANT_VERSION)],
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: v.pre }],
    ['tokenizer.ggml.tokens', { type: 'array', of: 'string', value: v.tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', of: 'i32', value: v.types }],
    ['tokenizer.ggml.merges', { type: 'array', of: 'string', value: v.merges }],
  ];
  const ids: [string, number | undefined][] = [
    ['bos', v.bosId],
    ['eos', v.eosId],
    ['eot', v.eotId],
    ['eom', v.eomId],
    ['unknown', v.unkId],
    ['padding', v.padId],
  ];
  for (const [key, id] of ids) if (id !== undefined) metadata.push([`tokenizer.ggml.${key}_token_id`, u32(id)]);
  metadata.push(['tokenizer.ggml.add_bos_token', { type: 'bool', value: v.addBos }]);
  if (v.chatTemplate !== undefined) metadata.push(['tokenizer.chat_template', { type: 'string', value: v.chatTemplate }]);

  const tensors: GgufTensorToWrite[] = [];
  let fellBack = 0;
  for (const [hf, shape] of expectedLlamaTensors(c)) {
    const w = source.weights.get(hf);
    if (!w) throw new Error(`GGUF export: the weights have no ${hf}`);
    const name = ggufChatTensorName(hf)!;
    const permute = arch === 'llama' && /self_attn\.[qk]_proj\./.test(hf);
    const heads = hf.includes('q_proj') ? c.heads : c.kvHeads;
    if (shape.length !== 2) {
      const values = w instanceof Float32Array ? w : dequantize(w);
      tensors.push({ name, shape, type: 'F32', data: permute ? () => f32Bytes(permuteWeightRows(f32Matrix(values, values.length, 1), permutedRow(heads, values.length)).data as Float32Array) : values });
      continue;
    }
    const [rows, cols] = shape as [number, number];
    const tensorType: ChatGgufType = type === 'Q8_0' && cols % 32 !== 0 ? 'F16' : type;
    if (tensorType !== type) fellBack++;
    tensors.push({
      name,
      shape,
      type: tensorType,
      data: () => {
        let m = w instanceof Float32Array ? f32Matrix(w, rows, cols) : w;
        if (permute) m = permuteWeightRows(m, permutedRow(heads, rows));
        return encodeMatrix(m, tensorType);
      },
    });
  }
  if (fellBack) notes.push(`${fellBack} matrices are not a multiple of 32 wide and are F16 (Q8_0 blocks are 32 wide)`);
  if (c.ropeScaling.type === 'llama3') tensors.push({ name: 'rope_freqs.weight', shape: [c.headDim / 2], type: 'F32', data: llama3RopeFactors(c) });
  if (c.ropeScaling.type === 'factors') tensors.push({ name: 'rope_freqs.weight', shape: [c.headDim / 2], type: 'F32', data: Float32Array.from(c.ropeScaling.factors) });
  return { metadata, tensors, notes };
}

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The whole file in memory (small models: tests, fixtures). */
export function encodeChatGguf(source: ChatGgufSource, type: ChatGgufType): Uint8Array {
  const { metadata, tensors } = chatGgufLayout(source, type);
  return encodeGguf(metadata, tensors);
}

/** Bytes the file will take. */
export function chatGgufBytes(source: ChatGgufSource, type: ChatGgufType): number {
  const { metadata, tensors } = chatGgufLayout(source, type);
  return ggufFileBytes(metadata, tensors);
}

/** Writes the file one tensor at a time, atomically; returns what the file could not hold (notes for the operator). */
export async function writeChatGguf(file: string, source: ChatGgufSource, type: ChatGgufType): Promise<string[]> {
  const { metadata, tensors, notes } = chatGgufLayout(source, type);
  await writeGguf(file, metadata, tensors);
  return notes;
}
