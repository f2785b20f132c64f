/**
 * Reading an open sentence encoder from where a company put it: a Hugging Face folder
 * (config.json, model.safetensors or its shards, tokenizer.json, the sentence-transformers files
 * modules.json + 1_Pooling/config.json) or a GGUF file of llama.cpp's "bert" architecture.
 *
 * `inspect*` reads only headers and small JSON files, so everything that can be wrong (an
 * unsupported architecture, a missing file, a tensor whose shape does not match the config, a
 * pooling we do not do) is refused before a byte is copied; `load*` then reads the tensors.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { readSafetensorsTensor, type SafetensorsEntry } from '../safetensors.ts';
import { BertEncoder } from './bert.ts';
import { checkShapes, countEncoderParameters, encoderConfigFromHf, expectedTensors, type EncoderConfig, type Pooling } from './encoder-config.ts';
import { hfWeightFiles, ImportError, readHfConfig, readHfWeights, readJsonFile } from './hf-folder.ts';
import { EncoderTokenizer, PIECE_TYPE, unigramTokenizerJson, wordPieceTokenizerJson } from './encoder-tokenizer.ts';
import { GgufFile } from './gguf.ts';

export interface EncoderDescription {
  format: 'hf' | 'gguf';
  /** The folder or file it was read from. */
  location: string;
  config: EncoderConfig;
  pooling: Pooling;
  /** How the pooling was decided (which file said so, or the default taken). */
  poolingSource: string;
  numParameters: number;
  /** The stored tensor types, e.g. "F32", "BF16", "F16+F32", "Q8_0+F32". */
  dtype: string;
  /** Files (relative to `location`'s folder) that make up the model, with their sizes. */
  files: { file: string; bytes: number }[];
  /** From the README's front matter or the LICENSE file; "unknown" when neither says. */
  licence: string;
  /** Texts put before queries and passages (e5's "query: " / "passage: "), as the model's sentence-transformers config says. */
  prompts: EncoderPrompts;
}

/** What sentence-transformers prepends to a text before encoding it, by role. */
export interface EncoderPrompts {
  query?: string;
  document?: string;
}

/**
 * config_sentence_transformers.json's `prompts` (sentence-transformers ≥ 3): `query`, and `document`
 * (also written `passage` or `corpus`). e5 models need "query: " / "passage: "; without them their
 * retrieval is measurably worse (their model card says so), so the import keeps what the folder declares.
 */
function hfPrompts(dir: string): { prompts: EncoderPrompts; files: string[] } {
  const rel = 'config_sentence_transformers.json';
  const file = path.join(dir, rel);
  if (!existsSync(file)) return { prompts: {}, files: [] };
  const declared = readJsonFile<{ prompts?: Record<string, unknown> }>(file).prompts ?? {};
  const text = (key: string) => (typeof declared[key] === 'string' && declared[key] ? (declared[key] as string) : undefined);
  const query = text('query');
  const document = text('document') ?? text('passage') ?? text('corpus');
  return { prompts: { ...(query ? { query } : {}), ...(document ? { document } : {}) }, files: [rel] };
}

export interface LoadedEncoder {
  description: EncoderDescription;
  encoder: BertEncoder;
  tokenizer: EncoderTokenizer;
}

const ST_POOLING = 'sentence_transformers.models.Pooling';
const ST_NORMALIZE = 'sentence_transformers.models.Normalize';
const ST_TRANSFORMER = 'sentence_transformers.models.Transformer';


/** The HF tensor name without a task-head prefix, and with old LayerNorm names (gamma/beta) renamed. */
function canonicalName(name: string): string {
  let n = name.replace(/^(bert|roberta|model|encoder_model)\./, '');
  n = n.replace(/\.gamma$/, '.weight').replace(/\.beta$/, '.bias');
  return n;
}

/** sentence-transformers' pooling for a folder: modules.json and the Pooling module's config. */
function hfPooling(dir: string): { pooling: Pooling; source: string; files: string[] } {
  const modulesFile = path.join(dir, 'modules.json');
  if (!existsSync(modulesFile)) return { pooling: { mode: 'mean', normalize: true }, source: 'no modules.json: mean pooling, normalised (the sentence-transformers default)', files: [] };
  const modules = readJsonFile<{ type?: string; path?: string }[]>(modulesFile);
  if (!Array.isArray(modules)) throw new ImportError(`${modulesFile} is not a list of modules`);
  const files = ['modules.json'];
  let pooling: Pooling | undefined;
  let source = '';
  let normalize = false;
  for (const m of modules) {
    const type = m.type ?? '';
    if (type === ST_TRANSFORMER) continue;
    if (type === ST_POOLING) {
      const rel = path.join(m.path ?? '1_Pooling', 'config.json');
      const file = path.join(dir, rel);
      if (!existsSync(file)) throw new ImportError(`modules.json names a Pooling module, but ${file} is missing`);
      files.push(rel);
      const cfg = readJsonFile<Record<string, unknown>>(file);
      const cls = cfg.pooling_mode_cls_token === true;
      const mean = cfg.pooling_mode_mean_tokens === true;
      const others = ['pooling_mode_max_tokens', 'pooling_mode_mean_sqrt_len_tokens', 'pooling_mode_weightedmean_tokens', 'pooling_mode_lasttoken'].filter((k) => cfg[k] === true);
      if (others.length || cls === mean) {
        throw new ImportError(`${file}: pooling ${[...(cls ? ['cls'] : []), ...(mean ? ['mean'] : []), ...others].join(' + ') || '(none)'} is not supported; teamllm pools by CLS token or by mean, one of them`);
      }
      pooling = { mode: cls ? 'cls' : 'mean', normalize: false };
      source = `${rel}: ${cls ? 'CLS' : 'mean'} pooling`;
    } else if (type === ST_NORMALIZE) normalize = true;
    else throw new ImportError(`modules.json: the module ${type || '(no type)'} is not supported (teamllm reads Transformer, Pooling and Normalize)`);
  }
  if (!pooling) throw new ImportError(`${modulesFile} declares no Pooling module (sentence-transformers' ${ST_POOLING})`);
  pooling.normalize = normalize;
  return { pooling, source: `${source}${normalize ? ', normalised (Normalize module)' : ', not normalised'}`, files };
}

/** The licence a folder declares: its README's front matter `license:`, else the LICENSE file's first line. */
export function folderLicence(dir: string): string {
  const readme = path.join(dir, 'README.md');
  if (existsSync(readme)) {
    const text = readFileSync(readme, 'utf8');
    const front = /^---\r?\n([\s\S]*?)\r?\n---/.exec(text)?.[1];
    const line = front?.split(/\r?\n/).find((l) => /^license\s*:/.test(l));
    const value = line?.split(':').slice(1).join(':').trim().replace(/^["']|["']$/g, '');
    if (value) return value;
  }
  for (const name of ['LICENSE', 'LICENSE.txt', 'LICENSE.md']) {
    const file = path.join(dir, name);
    if (existsSync(file)) {
      const first = readFileSync(file, 'utf8').split(/\r?\n/).map((l) => l.trim()).find((l) => l.length > 0);
      if (first) return first.slice(0, 120);
    }
  }
  return 'unknown';
}

const LICENCE_FILES = ['README.md', 'LICENSE', 'LICENSE.txt', 'LICENSE.md'];

function fileSize(file: string): number {
  return statSync(file).size;
}

function summariseDtypes(types: Iterable<string>): string {
  return [...new Set(types)].sort().join('+');
}

/** Checks a Hugging Face encoder folder without reading its tensors. */
export function inspectHfEncoder(dir: string): EncoderDescription & { tensors: Map<string, SafetensorsEntry> } {
  const { raw, configFile } = readHfConfig(dir);
  // The architecture first: nothing else is read for a model we cannot run.
  const config = encoderConfigFromHf(raw, configFile);
  const entries = readHfWeights(dir);
  const tensors = new Map<string, SafetensorsEntry>();
  for (const e of entries) {
    const name = canonicalName(e.name);
    if (name.startsWith('pooler.') || name === 'embeddings.position_ids') continue;
    tensors.set(name, e);
  }
  checkShapes(config, new Map([...tensors].map(([n, e]) => [n, e.shape])), `${dir} (safetensors)`);
  const unsupported = [...tensors.values()].filter((e) => !['F32', 'F16', 'BF16'].includes(e.dtype));
  if (unsupported.length) throw new ImportError(`${dir}: tensor ${unsupported[0]!.name} is ${unsupported[0]!.dtype}; supported tensor types are F32, F16 and BF16`);
  const { pooling, source, files: poolingFiles } = hfPooling(dir);
  const { prompts, files: promptFiles } = hfPrompts(dir);
  // tokenizer.json must load (and agree with the embedding table) before anything is copied.
  const tokenizer = readHfTokenizer(dir);
  if (tokenizer.vocabSize > config.vocabSize) throw new ImportError(`${dir}: tokenizer.json has ${tokenizer.vocabSize} tokens, the embedding table only ${config.vocabSize} rows`);
  const rel = ['config.json', 'tokenizer.json', ...hfWeightFiles(dir, entries), ...poolingFiles, ...promptFiles, ...['tokenizer_config.json', 'special_tokens_map.json', ...LICENCE_FILES].filter((f) => existsSync(path.join(dir, f)))];
  return {
    format: 'hf',
    location: dir,
    config,
    pooling,
    poolingSource: source,
    numParameters: countEncoderParameters(config),
    dtype: summariseDtypes([...tensors.values()].map((e) => e.dtype)),
    files: [...new Set(rel)].map((file) => ({ file, bytes: fileSize(path.join(dir, file)) })),
    licence: folderLicence(dir),
    prompts,
    tensors,
  };
}

function readHfTokenizer(dir: string): EncoderTokenizer {
  const file = path.join(dir, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = existsSync(configFile) ? readJsonFile<Record<string, unknown>>(configFile) : {};
  try {
    return new EncoderTokenizer(readJsonFile(file), config);
  } catch (err) {
    throw new ImportError(`${file} cannot be used: ${(err as Error).message}`);
  }
}

/** Reads a Hugging Face encoder folder into a runnable encoder (weights as float32 in memory). */
export function loadHfEncoder(dir: string): LoadedEncoder {
  const { tensors, ...description } = inspectHfEncoder(dir);
  const weights = new Map<string, Float32Array>();
  for (const [name, entry] of tensors) weights.set(name, readSafetensorsTensor(entry));
  return { description, encoder: new BertEncoder(description.config, weights, description.pooling), tokenizer: readHfTokenizer(dir) };
}

// ---- GGUF ---------------------------------------------------------------------------------

/** llama.cpp's tensor names for the bert architecture (gguf-py constants + tensor_mapping.py). */
function ggufName(hfName: string): string | undefined {
  const fixed: Record<string, string> = {
    'embeddings.word_embeddings.weight': 'token_embd.weight',
    'embeddings.position_embeddings.weight': 'position_embd.weight',
    'embeddings.token_type_embeddings.weight': 'token_types.weight',
    'embeddings.LayerNorm.weight': 'token_embd_norm.weight',
    'embeddings.LayerNorm.bias': 'token_embd_norm.bias',
  };
  if (fixed[hfName]) return fixed[hfName];
  const m = /^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$/.exec(hfName);
  if (!m) return undefined;
  const per: Record<string, string> = {
    'attention.self.query': 'attn_q',
    'attention.self.key': 'attn_k',
    'attention.self.value': 'attn_v',
    'attention.output.dense': 'attn_output',
    'attention.output.LayerNorm': 'attn_output_norm',
    'intermediate.dense': 'ffn_up',
    'output.dense': 'ffn_down',
    'output.LayerNorm': 'layer_output_norm',
  };
  const part = per[m[2]!];
  return part ? `blk.${m[1]}.${part}.${m[3]}` : undefined;
}

/** Hugging Face name → GGUF name, for every tensor of a config (what a GGUF writer names them). */
export function ggufTensorNames(config: EncoderConfig): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of expectedTensors(config).keys()) out.set(name, ggufName(name)!);
  return out;
}

/** llama.cpp's pooling_type values (llama.h enum llama_pooling_type). */
const GGUF_POOLING: Record<number, Pooling['mode'] | undefined> = { 1: 'mean', 2: 'cls' };

function num(file: GgufFile, key: string): number {
  const v = file.get(key);
  if (typeof v !== 'number') throw new ImportError(`${file.path}: metadata ${key} is missing or not a number`);
  return v;
}

/**
 * XLM-RoBERTa in GGUF. llama.cpp's convert_hf_to_gguf.py (class XLMRobertaModel in
 * conversion/bert.py of the llama.cpp node-llama-cpp 3.21.1 bundles; gguf-py's vocab.py and
 * constants.py; src/llama-vocab.cpp for how it is read) writes an XLMRobertaModel as:
 *   - general.architecture "bert": the same graph and tensor names as BERT. Only the tokenizer
 *     model tells the two apart: "bert" (WordPiece) for BertModel, "t5" (llama.cpp's UGM, the
 *     SentencePiece Unigram) for XLM-R;
 *   - the position table without its first pad_token_id + 1 rows (XLM-R numbers positions from
 *     past the padding index; "position embeddings start at pad_token_id + 1, so just chop down
 *     the weight tensor"), and bert.context_length = max_position_embeddings − that offset. Row t
 *     of the stored table is the row t + offset the HF forward reads, so the forward here reads it
 *     with positionOffset 0 and is the HF forward; no row the HF forward reads is missing;
 *   - token_types.weight with type_vocab_size rows (1 for XLM-R), tokenizer.ggml.token_type_count;
 *   - tokenizer.ggml.tokens (the pieces as SentencePiece stores them, "▁" for a space),
 *     tokenizer.ggml.scores (f32 log probabilities), tokenizer.ggml.token_type (i32: 1 normal,
 *     2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), tokenizer.ggml.add_space_prefix,
 *     tokenizer.ggml.remove_extra_whitespaces (bools), tokenizer.ggml.precompiled_charsmap (u8
 *     array, SentencePiece's normaliser rules, when the model has them), tokenizer.ggml.pre
 *     "default";
 *   - gguf-py's SpecialVocab: tokenizer.ggml.{bos,eos,unknown,seperator,padding,cls,mask}_token_id
 *     and add_bos_token/add_eos_token/add_sep_token (true for XLM-R's RobertaProcessing); absent
 *     flags mean llama.cpp's UGM defaults: no BOS, EOS added;
 *   - bert.pooling_type from the sentence-transformers Pooling config, as for BERT.
 * Not carried over: remove_extra_whitespaces is SentencePiece's own (a run of spaces becomes one
 * "▁"); the Hugging Face tokenizer.json of the same model has no such step, and the import follows
 * the folder's tokenizer (what sentence-transformers runs), so a GGUF and its folder tokenize alike.
 */
function ggufUnigramTokenizer(g: GgufFile, tokens: string[]): Record<string, unknown> {
  const scores = g.get<number[]>('tokenizer.ggml.scores');
  if (!Array.isArray(scores) || scores.length !== tokens.length) throw new ImportError(`${g.path}: metadata tokenizer.ggml.scores is missing or does not have one score per token`);
  const types = g.get<number[]>('tokenizer.ggml.token_type') ?? tokens.map(() => PIECE_TYPE.normal);
  const id = (key: string) => {
    const v = g.get<number>(key);
    return typeof v === 'number' && v >= 0 && v < tokens.length ? v : undefined;
  };
  const unk = id('tokenizer.ggml.unknown_token_id') ?? types.indexOf(PIECE_TYPE.unknown);
  if (unk < 0) throw new ImportError(`${g.path}: the SentencePiece vocabulary has no unknown piece (tokenizer.ggml.unknown_token_id)`);
  const flag = (key: string, fallback: boolean) => {
    const v = g.get<boolean>(key);
    return typeof v === 'boolean' ? v : fallback;
  };
  const charsmap = g.get<number[]>('tokenizer.ggml.precompiled_charsmap') ?? [];
  return unigramTokenizerJson({
    pieces: tokens,
    scores,
    types,
    charsmap: Uint8Array.from(charsmap, (b) => b & 0xff),
    addSpacePrefix: flag('tokenizer.ggml.add_space_prefix', false),
    unk,
    bos: flag('tokenizer.ggml.add_bos_token', false) ? id('tokenizer.ggml.bos_token_id') : undefined,
    eos: flag('tokenizer.ggml.add_eos_token', true) ? id('tokenizer.ggml.eos_token_id') : undefined,
  }) as Record<string, unknown>;
}

/** The WordPiece tokenizer.json of a BERT GGUF. */
function ggufWordPieceTokenizer(g: GgufFile, tokens: string[]): Record<string, unknown> {
  // Reverse llama.cpp's phantom-space vocabulary: "▁word" starts a word, a bare piece continues one.
  const tokTypes = g.get<number[]>('tokenizer.ggml.token_type') ?? [];
  const vocab = tokens.map((t, i) => (tokTypes[i] === PIECE_TYPE.control ? t : t.startsWith('\u2581') ? t.slice(1) : `##${t}`));
  const idTok = (key: string, fallback: string) => {
    const id = g.get<number>(key);
    return typeof id === 'number' && vocab[id] !== undefined ? vocab[id]! : fallback;
  };
  return wordPieceTokenizerJson(vocab, {
    cls: idTok('tokenizer.ggml.cls_token_id', idTok('tokenizer.ggml.bos_token_id', '[CLS]')),
    sep: idTok('tokenizer.ggml.seperator_token_id', idTok('tokenizer.ggml.eos_token_id', '[SEP]')),
    unk: idTok('tokenizer.ggml.unknown_token_id', '[UNK]'),
    pad: idTok('tokenizer.ggml.padding_token_id', '[PAD]'),
    mask: idTok('tokenizer.ggml.mask_token_id', '[MASK]'),
  }) as Record<string, unknown>;
}

/** Checks a GGUF encoder file without reading its tensors. */
export function inspectGgufEncoder(file: string): EncoderDescription & { gguf: GgufFile; tokenizerJson: Record<string, unknown> } {
  if (!existsSync(file)) throw new ImportError(`${file} does not exist`);
  let g: GgufFile;
  try {
    g = GgufFile.open(file);
  } catch (err) {
    throw new ImportError((err as Error).message);
  }
  try {
    const arch = g.get<string>('general.architecture');
    if (arch !== 'bert') {
      throw new ImportError(`${file} is a GGUF of architecture "${arch ?? '(none)'}": teamllm imports GGUF encoders of llama.cpp's "bert" architecture (BERT, bge, e5, gte); chat models are read as chat models (llama, qwen2, qwen3)`);
    }
    const tokModel = g.get<string>('tokenizer.ggml.model');
    if (tokModel !== 'bert' && tokModel !== 't5') {
      throw new ImportError(`${file}: tokenizer model "${tokModel ?? '(none)'}" is not supported in GGUF files (only "bert", BERT's WordPiece, and "t5", XLM-RoBERTa's SentencePiece Unigram)`);
    }
    const xlmr = tokModel === 't5';
    const hidden = num(g, 'bert.embedding_length');
    const heads = num(g, 'bert.attention.head_count');
    const tokens = g.get<string[]>('tokenizer.ggml.tokens');
    if (!Array.isArray(tokens)) throw new ImportError(`${file}: metadata tokenizer.ggml.tokens is missing`);
    const typeRows = g.tensors.get('token_types.weight')?.shape[0] ?? 0;
    const posRows = g.tensors.get('position_embd.weight')?.shape[0] ?? num(g, 'bert.context_length');
    const config: EncoderConfig = {
      architecture: xlmr ? 'XLMRobertaModel' : 'BertModel',
      vocabSize: g.tensors.get('token_embd.weight')?.shape[0] ?? tokens.length,
      hidden,
      layers: num(g, 'bert.block_count'),
      heads,
      intermediate: num(g, 'bert.feed_forward_length'),
      maxPositions: posRows,
      typeVocabSize: typeRows,
      layerNormEps: num(g, 'bert.attention.layer_norm_epsilon'),
      // XLM-R's offset is already taken out of the stored table (see "XLM-RoBERTa in GGUF" above).
      positionOffset: 0,
    };
    const shapes = new Map<string, number[]>();
    const types: string[] = [];
    for (const [hf, gg] of ggufTensorNames(config)) {
      const info = g.tensors.get(gg);
      if (info) {
        shapes.set(hf, info.shape);
        types.push(info.type);
      }
    }
    if (typeRows === 0) shapes.delete('embeddings.token_type_embeddings.weight');
    checkShapes(config, shapes, file);
    const bad = types.find((t) => !['F32', 'F16', 'BF16', 'Q8_0'].includes(t));
    if (bad) throw new ImportError(`${file}: a tensor is ${bad}; supported tensor types are F32, F16, BF16 and Q8_0`);
    const poolingType = g.get<number>('bert.pooling_type');
    const mode = typeof poolingType === 'number' ? GGUF_POOLING[poolingType] : 'cls';
    if (!mode) throw new ImportError(`${file}: bert.pooling_type ${poolingType} is not supported (1 mean, 2 CLS)`);
    const tokenizerJson = xlmr ? ggufUnigramTokenizer(g, tokens) : ggufWordPieceTokenizer(g, tokens);
    if (tokens.length > config.vocabSize) throw new ImportError(`${file}: the vocabulary has ${tokens.length} tokens, the embedding table only ${config.vocabSize} rows`);
    // The rebuilt tokenizer must load before anything is copied, as a folder's tokenizer.json must.
    try {
      new EncoderTokenizer(tokenizerJson);
    } catch (err) {
      throw new ImportError(`${file}: its tokenizer cannot be rebuilt: ${(err as Error).message}`);
    }
    return {
      format: 'gguf',
      location: file,
      config,
      pooling: { mode, normalize: true },
      poolingSource: `bert.pooling_type ${poolingType ?? '(absent: CLS)'}: ${mode === 'cls' ? 'CLS' : 'mean'} pooling, normalised (as llama.cpp's embedding server does by default)`,
      numParameters: countEncoderParameters(typeRows ? config : { ...config, typeVocabSize: 0 }),
      dtype: summariseDtypes(types),
      files: [{ file: path.basename(file), bytes: fileSize(file) }],
      licence: (g.get<string>('general.license') as string | undefined) ?? folderLicence(path.dirname(file)),
      // A GGUF carries no sentence-transformers config: no prompts (import the HF folder of an e5 model).
      prompts: {},
      gguf: g,
      tokenizerJson,
    };
  } catch (err) {
    g.close();
    throw err;
  }
}

/** Reads a GGUF encoder file into a runnable encoder (tensors dequantised to float32). */
export function loadGgufEncoder(file: string): LoadedEncoder {
  const { gguf, tokenizerJson, ...description } = inspectGgufEncoder(file);
  try {
    const weights = new Map<string, Float32Array>();
    for (const [hf, gg] of ggufTensorNames(description.config)) if (gguf.tensors.has(gg)) weights.set(hf, gguf.read(gg));
    return { description, encoder: new BertEncoder(description.config, weights, description.pooling), tokenizer: new EncoderTokenizer(tokenizerJson) };
  } finally {
    gguf.close();
  }
}

/** A folder (Hugging Face) or a .gguf file. */
export function inspectEncoder(location: string): EncoderDescription {
  if (existsSync(location) && statSync(location).isFile()) {
    const { gguf, tokenizerJson: _t, ...d } = inspectGgufEncoder(location);
    gguf.close();
    return d;
  }
  const { tensors: _tensors, ...d } = inspectHfEncoder(location);
  return d;
}

export function loadEncoder(location: string): LoadedEncoder {
  return existsSync(location) && statSync(location).isFile() ? loadGgufEncoder(location) : loadHfEncoder(location);
}
