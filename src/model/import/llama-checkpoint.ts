/**
 * Reading a Llama-family chat model from where a company put it: a Hugging Face folder
 * (config.json, model.safetensors or its shards, tokenizer.json, tokenizer_config.json with the
 * chat template, generation_config.json) or a GGUF file of llama.cpp's llama, qwen2 or qwen3
 * architecture (what Ollama and llama.cpp users have).
 *
 * `inspect*` reads only headers and small JSON files, so an unsupported architecture, a missing
 * file or a tensor whose shape does not match the config is refused before a byte is copied;
 * `load*` then reads the tensors. Matrices stay in memory in the checkpoint's own precision unless
 * a dtype is asked for (`ChatLoadOptions.dtype`, `teamllm model import --dtype`):
 *   F32 → float32, BF16 → bf16 (the file's bits, no float32 copy), F16 → f16 (the exact values;
 *   `bf16` converts them, round to nearest even, for the faster AVX512_BF16 kernels),
 *   Q8_0 → int8 with its own blocks (one scale per 32 columns, the same numbers llama.cpp uses);
 *   `int8` quantises F32/F16/BF16 matrices per output channel at load (scale = max|row| / 127).
 * Norm weights and biases are float32 always.
 *
 * GGUF llama-arch files hold q_proj/k_proj rows permuted: llama.cpp's convert_hf_to_gguf.py
 * (LlamaModel, undo_permute = True; also for MistralForCausalLM) reshapes each head's rows to
 * (2, head_dim/2) and swaps the two axes, so that its RoPE rotates adjacent pairs. Reading undoes
 * it (rows back to HF's two halves). qwen2 and qwen3 files are written unpermuted (llama.cpp runs
 * them with NEOX RoPE, HF's halves).
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { readSafetensorsBytes, readSafetensorsTensor, type SafetensorsEntry } from '../safetensors.ts';
import { ChatTokenizer, BPE_PRE_TOKENIZERS, byteLevelBpeTokenizerJson, chatTemplateOf, tokenString, type TokenizerJson } from './chat-tokenizer.ts';
import { folderLicence } from './encoder-checkpoint.ts';
import { hfWeightFiles, ImportError, readHfConfig, readHfWeights, readJsonFile } from './hf-folder.ts';
import { GgufFile } from './gguf.ts';
import { GGUF_CHAT_ARCHS, ggufChatTensorName, ggufEndIds, unpermutedRow, unpermuteRows } from './chat-gguf.ts';
import { LlamaModel } from './llama.ts';
import { checkLlamaShapes, countLlamaParameters, expectedLlamaTensors, llamaConfigFromHf, type ChatArchitecture, type LlamaConfig, type RopeScaling } from './llama-config.ts';
import type { EncoderKernels } from './encoder-kernels.ts';
import { convertWeight, f32Matrix, permuteWeightRows, q8_0ToInt8, type WeightMatrix } from './weights.ts';

/**
 * How a chat model's weight matrices are held in memory: 'auto' keeps the checkpoint's precision
 * (F32 → f32, BF16 → bf16, F16 → f16, Q8_0 → int8 per block of 32); 'bf16', 'int8' (per output
 * channel; Q8_0 keeps its blocks) or 'f32' convert at load.
 */
export type ChatDtype = 'auto' | 'f32' | 'bf16' | 'int8';

export interface ChatLoadOptions {
  dtype?: ChatDtype;
  kernels?: EncoderKernels;
}

/** A stored tensor's bytes as a matrix in its own precision. */
function storedMatrix(type: string, raw: Uint8Array, rows: number, cols: number, what: string): WeightMatrix {
  const count = rows * cols;
  switch (type) {
    case 'F32':
      return f32Matrix(new Float32Array(raw.buffer, raw.byteOffset, count), rows, cols);
    case 'BF16':
      return { dtype: 'bf16', rows, cols, data: new Uint16Array(raw.buffer, raw.byteOffset, count) };
    case 'F16':
      return { dtype: 'f16', rows, cols, data: new Uint16Array(raw.buffer, raw.byteOffset, count) };
    case 'Q8_0':
      return q8_0ToInt8(raw, rows, cols);
    default:
      throw new ImportError(`${what} is ${type}; supported tensor types are F32, F16, BF16 and Q8_0`);
  }
}

/** The matrix in the dtype asked for. */
function asDtype(w: WeightMatrix, dtype: ChatDtype): WeightMatrix {
  if (dtype === 'auto') return w;
  return convertWeight(w, dtype);
}

export interface ChatModelDescription {
  format: 'hf' | 'gguf';
  /** The folder or file it was read from. */
  location: string;
  config: LlamaConfig;
  numParameters: number;
  /** The stored tensor types, e.g. "BF16", "F32+Q8_0". */
  dtype: string;
  /** Files (relative to `location`'s folder) that make up the model, with their sizes. */
  files: { file: string; bytes: number }[];
  licence: string;
  /** Ids that end a reply. */
  eosIds: number[];
  hasChatTemplate: boolean;
}

export interface LoadedChatModel {
  description: ChatModelDescription;
  model: LlamaModel;
  tokenizer: ChatTokenizer;
}


function summariseDtypes(types: Iterable<string>): string {
  return [...new Set(types)].sort().join('+');
}

const LICENCE_FILES = ['README.md', 'LICENSE', 'LICENSE.txt', 'LICENSE.md'];
const OPTIONAL_FILES = ['tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json', ...LICENCE_FILES];

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  return Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : [];
}

// ---- Hugging Face folders -----------------------------------------------------------------

/** The tokenizer of a folder: tokenizer.json, the template and special strings of tokenizer_config.json, EOS ids of generation_config.json. */
export function readHfChatTokenizer(dir: string, modelConfig: Record<string, unknown> = {}): ChatTokenizer {
  const file = path.join(dir, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  const generationFile = path.join(dir, 'generation_config.json');
  const tokConfig = existsSync(configFile) ? readJsonFile<Record<string, unknown>>(configFile) : {};
  const generation = existsSync(generationFile) ? readJsonFile<Record<string, unknown>>(generationFile) : {};
  const templateStrings: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
    const s = tokenString(tokConfig[key]);
    if (s !== undefined) templateStrings[key] = s;
  }
  const json = readJsonFile<TokenizerJson>(file);
  try {
    const probe = new ChatTokenizer(json);
    const eos = new Set([...ids(generation.eos_token_id), ...ids(modelConfig.eos_token_id)]);
    const eosId = templateStrings.eos_token !== undefined ? probe.idOf(templateStrings.eos_token) : undefined;
    if (eosId !== undefined) eos.add(eosId);
    const chatTemplate = chatTemplateOf(tokConfig);
    return new ChatTokenizer(json, { eosIds: [...eos], templateStrings, ...(chatTemplate ? { chatTemplate } : {}) });
  } catch (err) {
    throw new ImportError(`${file} cannot be used: ${(err as Error).message}`);
  }
}

/** Checks a Hugging Face chat model folder without reading its tensors. */
export function inspectHfChatModel(dir: string): ChatModelDescription & { tensors: Map<string, SafetensorsEntry>; tokenizer: ChatTokenizer } {
  const { raw, configFile } = readHfConfig(dir);
  const config = llamaConfigFromHf(raw, configFile);
  const entries = readHfWeights(dir);
  const tensors = new Map<string, SafetensorsEntry>();
  for (const e of entries) {
    if (e.name.endsWith('.rotary_emb.inv_freq')) continue; // older checkpoints store RoPE's table; it is recomputed
    if (e.name === 'lm_head.weight' && config.tiedEmbeddings) continue; // tied: the embedding table is the head
    tensors.set(e.name, e);
  }
  checkLlamaShapes(config, new Map([...tensors].map(([n, e]) => [n, e.shape])), `${dir} (safetensors)`);
  const used = [...expectedLlamaTensors(config).keys()].map((n) => tensors.get(n)!);
  const unsupported = used.find((e) => !['F32', 'F16', 'BF16'].includes(e.dtype));
  if (unsupported) throw new ImportError(`${dir}: tensor ${unsupported.name} is ${unsupported.dtype}; supported tensor types are F32, F16 and BF16`);
  const tokenizer = readHfChatTokenizer(dir, raw);
  if (tokenizer.vocabSize > config.vocabSize) throw new ImportError(`${dir}: tokenizer.json has ${tokenizer.vocabSize} tokens, the embedding table only ${config.vocabSize} rows`);
  const rel = ['config.json', 'tokenizer.json', ...hfWeightFiles(dir, entries), ...OPTIONAL_FILES.filter((f) => existsSync(path.join(dir, f)))];
  return {
    format: 'hf',
    location: dir,
    config,
    numParameters: countLlamaParameters(config),
    dtype: summariseDtypes(used.map((e) => e.dtype)),
    files: [...new Set(rel)].map((file) => ({ file, bytes: statSync(path.join(dir, file)).size })),
    licence: folderLicence(dir),
    eosIds: [...tokenizer.eosIds],
    hasChatTemplate: tokenizer.chatTemplate !== undefined,
    tensors,
    tokenizer,
  };
}

/** The weights of an inspected folder (HF names), matrices in the checkpoint's precision unless `dtype` says otherwise. */
function readHfChatWeights(config: LlamaConfig, tensors: Map<string, SafetensorsEntry>, dtype: ChatDtype): Map<string, Float32Array | WeightMatrix> {
  const weights = new Map<string, Float32Array | WeightMatrix>();
  for (const [name, shape] of expectedLlamaTensors(config)) {
    const entry = tensors.get(name)!;
    if (shape.length !== 2) weights.set(name, readSafetensorsTensor(entry));
    else weights.set(name, asDtype(storedMatrix(entry.dtype, readSafetensorsBytes(entry), shape[0]!, shape[1]!, `${entry.file}: tensor ${name}`), dtype));
  }
  return weights;
}

/** Reads a Hugging Face chat model folder into a runnable model (matrices in the checkpoint's precision unless `dtype` says otherwise). */
export function loadHfChatModel(dir: string, options: ChatLoadOptions = {}): LoadedChatModel {
  const { tensors, tokenizer, ...description } = inspectHfChatModel(dir);
  const weights = readHfChatWeights(description.config, tensors, options.dtype ?? 'auto');
  return { description, model: new LlamaModel(description.config, weights, options.kernels ? { kernels: options.kernels } : {}), tokenizer };
}

// ---- GGUF ---------------------------------------------------------------------------------

function num(g: GgufFile, key: string, fallback?: number): number {
  const v = g.get(key) ?? fallback;
  if (typeof v !== 'number') throw new ImportError(`${g.path}: metadata ${key} is missing or not a number`);
  return v;
}

/** Checks a GGUF chat model file without reading its weights (the small rope_freqs table excepted). */
export function inspectGgufChatModel(file: string): ChatModelDescription & { gguf: GgufFile; tokenizer: ChatTokenizer } {
  if (!existsSync(file)) throw new ImportError(`${file} does not exist`);
  let g: GgufFile;
  try {
    g = GgufFile.open(file);
  } catch (err) {
    throw new ImportError((err as Error).message);
  }
  try {
    const arch = g.get<string>('general.architecture') ?? '(none)';
    const architecture = GGUF_CHAT_ARCHS[arch];
    if (!architecture) {
      throw new ImportError(`${file} is a GGUF of architecture "${arch}": teamllm imports GGUF chat models of llama.cpp's ${Object.keys(GGUF_CHAT_ARCHS).join(', ')} architectures and encoders of its "bert" architecture`);
    }
    const hidden = num(g, `${arch}.embedding_length`);
    const heads = num(g, `${arch}.attention.head_count`);
    const kvHeads = num(g, `${arch}.attention.head_count_kv`, heads);
    const headDim = num(g, `${arch}.attention.key_length`, hidden / heads);
    const valueDim = num(g, `${arch}.attention.value_length`, headDim);
    if (valueDim !== headDim) throw new ImportError(`${file}: key_length ${headDim} and value_length ${valueDim} differ (not a Llama-family model)`);
    const ropeDims = num(g, `${arch}.rope.dimension_count`, headDim);
    if (ropeDims !== headDim) throw new ImportError(`${file}: RoPE over ${ropeDims} of ${headDim} dimensions (partial rotary) is not supported`);
    if (!Number.isInteger(headDim) || headDim % 2) throw new ImportError(`${file}: head dimension ${headDim} must be an even integer`);
    if (heads % kvHeads) throw new ImportError(`${file}: ${heads} attention heads are not a multiple of ${kvHeads} key/value heads`);
    const scalingType = g.get<string>(`${arch}.rope.scaling.type`) ?? 'none';
    let ropeScaling: RopeScaling;
    const freqs = g.tensors.get('rope_freqs.weight');
    if (freqs) {
      if (freqs.shape.length !== 1 || freqs.shape[0] !== headDim / 2) throw new ImportError(`${file}: rope_freqs.weight is [${freqs.shape.join(', ')}], expected [${headDim / 2}]`);
      ropeScaling = { type: 'factors', factors: [...g.read('rope_freqs.weight')] };
    } else if (scalingType === 'linear') ropeScaling = { type: 'linear', factor: num(g, `${arch}.rope.scaling.factor`) };
    else if (scalingType === 'none') ropeScaling = { type: 'none' };
    else throw new ImportError(`${file}: RoPE scaling "${scalingType}" is not supported (supported: none, linear, llama3 as rope_freqs)`);
    const embd = g.tensors.get('token_embd.weight');
    const has = (name: string) => g.tensors.has(name);
    const config: LlamaConfig = {
      architecture,
      vocabSize: embd?.shape[0] ?? (g.get<string[]>('tokenizer.ggml.tokens') ?? []).length,
      hidden,
      layers: num(g, `${arch}.block_count`),
      heads,
      kvHeads,
      headDim,
      intermediate: num(g, `${arch}.feed_forward_length`),
      maxPositions: num(g, `${arch}.context_length`, 4096),
      rmsNormEps: num(g, `${arch}.attention.layer_norm_rms_epsilon`, 1e-6),
      ropeTheta: num(g, `${arch}.rope.freq_base`, 10000),
      ropeScaling,
      qkvBias: has('blk.0.attn_q.bias'),
      outputBias: has('blk.0.attn_output.bias'),
      qkNorm: has('blk.0.attn_q_norm.weight'),
      tiedEmbeddings: !has('output.weight'),
    };
    const shapes = new Map<string, number[]>();
    const types: string[] = [];
    for (const hf of expectedLlamaTensors(config).keys()) {
      const info = g.tensors.get(ggufChatTensorName(hf)!);
      if (info) {
        shapes.set(hf, info.shape);
        types.push(info.type);
      }
    }
    checkLlamaShapes(config, shapes, file);
    const bad = types.find((t) => !['F32', 'F16', 'BF16', 'Q8_0'].includes(t));
    if (bad) throw new ImportError(`${file}: a tensor is ${bad}; supported tensor types are F32, F16, BF16 and Q8_0 (re-quantize with llama.cpp's llama-quantize to Q8_0, or convert to F16)`);
    const tokenizer = ggufChatTokenizer(g);
    return {
      format: 'gguf',
      location: file,
      config,
      numParameters: countLlamaParameters(config),
      dtype: summariseDtypes(types),
      files: [{ file: path.basename(file), bytes: statSync(file).size }],
      licence: g.get<string>('general.license') ?? folderLicence(path.dirname(file)),
      eosIds: [...tokenizer.eosIds],
      hasChatTemplate: tokenizer.chatTemplate !== undefined,
      gguf: g,
      tokenizer,
    };
  } catch (err) {
    g.close();
    throw err;
  }
}

/** The tokenizer a GGUF file carries: byte-level BPE (llama.cpp's "gpt2" model) with a known split expression. */
function ggufChatTokenizer(g: GgufFile): ChatTokenizer {
  const model = g.get<string>('tokenizer.ggml.model');
  const pre = g.get<string>('tokenizer.ggml.pre') ?? '(none)';
  if (model !== 'gpt2') {
    throw new ImportError(`${g.path}: tokenizer model "${model ?? '(none)'}" is not supported in GGUF files (only "gpt2", byte-level BPE as Llama 3 and Qwen ship); import the model's Hugging Face folder instead`);
  }
  const split = BPE_PRE_TOKENIZERS[pre];
  if (!split) throw new ImportError(`${g.path}: tokenizer.ggml.pre "${pre}" is not supported (${Object.keys(BPE_PRE_TOKENIZERS).join(', ')}); import the model's Hugging Face folder instead`);
  const tokens = g.get<string[]>('tokenizer.ggml.tokens');
  const merges = g.get<string[]>('tokenizer.ggml.merges');
  if (!Array.isArray(tokens) || !Array.isArray(merges)) throw new ImportError(`${g.path}: metadata tokenizer.ggml.tokens or tokenizer.ggml.merges is missing`);
  const types = g.get<number[]>('tokenizer.ggml.token_type') ?? [];
  const json = byteLevelBpeTokenizerJson(tokens, types, merges, split);
  // What llama.cpp stops at: eos, eot and eom, and the tokens whose text it knows as an end (<|im_end|>, <|endoftext|>, …).
  const eos = ggufEndIds(tokens, ['tokenizer.ggml.eos_token_id', 'tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id'].map((k) => g.get<number>(k)));
  const templateStrings: Record<string, string> = {};
  for (const [key, meta] of [['bos_token', 'bos'], ['eos_token', 'eos'], ['pad_token', 'padding'], ['unk_token', 'unknown']] as const) {
    const id = g.get<number>(`tokenizer.ggml.${meta}_token_id`);
    if (typeof id === 'number' && tokens[id] !== undefined) templateStrings[key] = tokens[id]!;
  }
  const chatTemplate = g.get<string>('tokenizer.chat_template');
  try {
    return new ChatTokenizer(json, { eosIds: eos, templateStrings, ...(typeof chatTemplate === 'string' ? { chatTemplate } : {}) });
  } catch (err) {
    throw new ImportError(`${g.path}: its vocabulary cannot be used: ${(err as Error).message}`);
  }
}

/** The weights of an open GGUF chat model under Hugging Face names and row order (llama-arch q/k un-permuted). */
function readGgufChatWeights(gguf: GgufFile, c: LlamaConfig, dtype: ChatDtype): Map<string, Float32Array | WeightMatrix> {
  const permuted = gguf.get<string>('general.architecture') === 'llama';
  const weights = new Map<string, Float32Array | WeightMatrix>();
  for (const [hf, shape] of expectedLlamaTensors(c)) {
    const name = ggufChatTensorName(hf)!;
    const heads = hf.includes('q_proj') ? c.heads : c.kvHeads;
    const unpermute = permuted && /self_attn\.[qk]_proj\./.test(hf);
    if (shape.length !== 2) {
      const values = gguf.read(name);
      weights.set(hf, unpermute ? unpermuteRows(values, heads, 1) : values);
      continue;
    }
    let m = storedMatrix(gguf.tensors.get(name)!.type, gguf.readBytes(name), shape[0]!, shape[1]!, `${gguf.path}: tensor ${name}`);
    if (unpermute) m = permuteWeightRows(m, unpermutedRow(heads, shape[0]!));
    weights.set(hf, asDtype(m, dtype));
  }
  return weights;
}

/** Reads a GGUF chat model into a runnable model (matrices in the file's precision unless `dtype` says otherwise; llama-arch q/k un-permuted). */
export function loadGgufChatModel(file: string, options: ChatLoadOptions = {}): LoadedChatModel {
  const { gguf, tokenizer, ...description } = inspectGgufChatModel(file);
  try {
    const weights = readGgufChatWeights(gguf, description.config, options.dtype ?? 'auto');
    return { description, model: new LlamaModel(description.config, weights, options.kernels ? { kernels: options.kernels } : {}), tokenizer };
  } finally {
    gguf.close();
  }
}

/**
 * A chat model's description, tokenizer and weights without building a runnable model (export
 * writes them out again): matrices in the checkpoint's own precision, under Hugging Face names and
 * row order. `addBosToken`: the GGUF file's tokenizer.ggml.add_bos_token, when it says.
 */
export function readChatWeights(location: string): { description: ChatModelDescription; tokenizer: ChatTokenizer; weights: Map<string, Float32Array | WeightMatrix>; addBosToken?: boolean } {
  if (existsSync(location) && statSync(location).isFile()) {
    const { gguf, tokenizer, ...description } = inspectGgufChatModel(location);
    try {
      const addBos = gguf.get<boolean>('tokenizer.ggml.add_bos_token');
      return { description, tokenizer, weights: readGgufChatWeights(gguf, description.config, 'auto'), ...(typeof addBos === 'boolean' ? { addBosToken: addBos } : {}) };
    } finally {
      gguf.close();
    }
  }
  const { tensors, tokenizer, ...description } = inspectHfChatModel(location);
  return { description, tokenizer, weights: readHfChatWeights(description.config, tensors, 'auto') };
}

/** A folder (Hugging Face) or a .gguf file. */
export function loadChatModel(location: string, options: ChatLoadOptions = {}): LoadedChatModel {
  return existsSync(location) && statSync(location).isFile() ? loadGgufChatModel(location, options) : loadHfChatModel(location, options);
}
