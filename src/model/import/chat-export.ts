/**
 * `teamllm model export <version> --format hf|gguf|peft <dir>`: an imported chat model written out
 * in the ecosystem's formats, from its weights as held (or from weights given to it). A LoRA
 * adapter version (PEFT's folder over an imported base) is written as its base with the adapter
 * merged (hf, gguf: the merged matrices in float32, so the file is f32 unless --dtype says
 * otherwise), or as the adapter alone (peft: its adapter_config.json and adapter_model.safetensors,
 * which PEFT and LLaMA-Factory load onto the base).
 *
 *   hf    config.json (the source folder's own, its dtype field set; a GGUF source's stated in
 *         the architecture's fields and checked to read back to the same config), model.safetensors
 *         (shards of at most 5 GB, as save_pretrained, with model.safetensors.index.json),
 *         tokenizer.json, tokenizer_config.json (chat_template), generation_config.json, and the
 *         README/LICENSE the import copied (else a README.md whose front matter states the licence).
 *   gguf  one file of llama.cpp's llama/qwen2/qwen3 architecture (chat-gguf.ts), F32, F16, BF16 or
 *         Q8_0, with the licence files beside it.
 *
 * The default dtype is the weights' own: f32, bf16 or f16 as held; Q8_0 blocks stay Q8_0 in a GGUF
 * and become f32 in a folder (exact: an F16 scale times an int8). Matrices already in the asked
 * type are written bit for bit. The target must be a new or empty folder; the disk is checked
 * first; the folder appears complete or not at all.
 *
 * `servingGguf` is the llama.cpp engine's file: the version exported once into
 * `<version>/llama.cpp/`, in the precision the version is served in, and reused.
 */
import { existsSync, promises as fs, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { exists, writeDirAtomic } from '../files.ts';
import { ensureDiskSpace } from '../registry.ts';
import { safetensorsFileBytes, writeSafetensorsStream, type SafetensorsTensorToWrite } from '../safetensors.ts';
import { chatGgufBytes, encodeMatrix, ggufVocabulary, writeChatGguf, type ChatGgufSource, type ChatGgufType } from './chat-gguf.ts';
import { adapterBaseDir, loadChatModelVersion, readChatManifest, type ChatManifest } from './chat-manifest.ts';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from '../lora/peft.ts';
import type { ChatTokenizer } from './chat-tokenizer.ts';
import { roundTo16 } from './dtypes.ts';
import { ImportError } from './hf-folder.ts';
import { readChatWeights, type ChatModelDescription } from './llama-checkpoint.ts';
import { expectedLlamaTensors, llamaConfigFromHf, type ChatArchitecture, type LlamaConfig } from './llama-config.ts';
import { dequantize, f32Matrix, type WeightMatrix } from './weights.ts';

export const EXPORT_FORMATS = ['hf', 'gguf', 'peft'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export const EXPORT_DTYPES = ['f32', 'f16', 'bf16', 'q8_0'] as const;
export type ExportDtype = (typeof EXPORT_DTYPES)[number];

/** The most a safetensors shard holds (transformers' save_pretrained default, "5GB"). */
export const MAX_SHARD_BYTES = 5_000_000_000;

type Weights = ReadonlyMap<string, Float32Array | WeightMatrix>;

/** An imported version as export reads it. */
export interface ChatExportSource {
  dir: string;
  manifest: ChatManifest;
  description: ChatModelDescription;
  tokenizer: ChatTokenizer;
  weights: Weights;
  /** A GGUF source's tokenizer.ggml.add_bos_token. */
  addBosToken?: boolean;
}

/** Reads a version folder for export; `weights` replaces its own (HF names and row order). */
export function readChatExportSource(dir: string, weights?: Weights): ChatExportSource {
  const manifest = readChatManifest(dir);
  // An adapter version holds no model: its base's files, with the adapter merged into the weights.
  if (manifest.adapter && !weights) return readChatExportSource(adapterBaseDir(dir, manifest), loadChatModelVersion(dir).model.weights());
  const read = readChatWeights(manifest.from === 'gguf' ? path.join(dir, manifest.file ?? 'model.gguf') : dir);
  if (weights) {
    for (const name of expectedLlamaTensors(read.description.config).keys()) if (!weights.has(name)) throw new Error(`export: the weights given have no ${name}`);
  }
  return { dir, manifest, description: read.description, tokenizer: read.tokenizer, weights: weights ?? read.weights, ...(read.addBosToken !== undefined ? { addBosToken: read.addBosToken } : {}) };
}

const GGUF_TYPE: Record<ExportDtype, ChatGgufType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0' };
const SAFETENSORS_TYPE = { f32: 'F32', f16: 'F16', bf16: 'BF16' } as const;

/** The dtype the weights are held in, as an export dtype (Q8_0-held: q8_0 for GGUF, f32 for a folder). */
export function heldDtype(weights: Weights, format: 'hf' | 'gguf'): ExportDtype {
  const kinds = new Set<string>();
  for (const w of weights.values()) if (!(w instanceof Float32Array)) kinds.add(w.dtype);
  if (kinds.size === 0) return 'f32'; // every tensor float32 (LoRA merges, fixtures)
  if (kinds.size > 1 || kinds.has('f32')) return 'f32';
  const [only] = kinds;
  if (only === 'int8') return format === 'gguf' ? 'q8_0' : 'f32';
  return only as 'bf16' | 'f16';
}

/** Whether `dir` may receive an export: absent, or an empty folder. */
async function checkTarget(target: string): Promise<void> {
  if (!(await exists(target))) return;
  if (!statSync(target).isDirectory()) throw new ImportError(`${target} is a file: export writes into a new or empty folder`);
  const entries = readdirSync(target);
  if (entries.length) throw new ImportError(`${target} is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}): export writes into a new or empty folder, so nothing of yours is overwritten`);
}

const LICENCE_FILES = ['README.md', 'LICENSE', 'LICENSE.txt', 'LICENSE.md'];

/** The README/LICENSE files the import copied, or a README stating the licence it recorded. */
async function writeLicenceFiles(source: ChatExportSource, into: string, what: string): Promise<string[]> {
  const copied: string[] = [];
  for (const f of LICENCE_FILES) {
    if (existsSync(path.join(source.dir, f))) {
      await fs.copyFile(path.join(source.dir, f), path.join(into, f));
      copied.push(f);
    }
  }
  if (!copied.includes('README.md')) {
    const licence = source.manifest.licence;
    const front = licence && licence !== 'unknown' ? `---\nlicense: ${licence}\n---\n\n` : '';
    await fs.writeFile(
      path.join(into, 'README.md'),
      `${front}# ${what}\n\nExported by teamllm from an imported chat model (${source.manifest.architecture}, imported from ${source.manifest.origin}).\n` +
        `Licence recorded at import: ${licence || 'unknown'}${licence === 'unknown' ? ' (check the original model card before using or sharing it)' : ''}.\n`,
    );
    copied.push('README.md');
  }
  return copied;
}

// ---- Hugging Face folders -------------------------------------------------------------------

const MODEL_TYPE: Record<ChatArchitecture, string> = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3' };
const TORCH_DTYPE = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' } as const;

/** config.json of a model read from a GGUF file, in its architecture's own fields; checked to read back to `c`. */
export function hfConfigOf(c: LlamaConfig, ids: { bos?: number; eos: number[] }, dtype: 'f32' | 'f16' | 'bf16'): Record<string, unknown> {
  const refuse = (why: string) => new ImportError(`hf export: ${why}; export gguf instead`);
  const arch = c.architecture;
  let rope: Record<string, unknown>;
  switch (c.ropeScaling.type) {
    case 'none':
      rope = { rope_theta: c.ropeTheta, rope_scaling: null };
      break;
    case 'linear':
      rope = { rope_theta: c.ropeTheta, rope_scaling: { rope_type: 'linear', factor: c.ropeScaling.factor } };
      break;
    case 'llama3':
      rope = {
        rope_theta: c.ropeTheta,
        rope_scaling: { rope_type: 'llama3', factor: c.ropeScaling.factor, low_freq_factor: c.ropeScaling.lowFreqFactor, high_freq_factor: c.ropeScaling.highFreqFactor, original_max_position_embeddings: c.ropeScaling.originalMaxPositions },
      };
      break;
    case 'factors':
      throw refuse("its RoPE scaling came as llama.cpp's rope_freqs table (Llama 3.1-style scaling), which config.json can only state as the parameters it was made from, and the GGUF file does not keep them");
  }
  const bias: Record<string, unknown> = {};
  if (arch === 'Qwen2ForCausalLM') {
    if (!c.qkvBias || c.outputBias) throw refuse('a Qwen2 model has q/k/v biases and no output bias; this one differs');
  } else {
    if (c.qkvBias !== c.outputBias) throw refuse(`${arch}'s attention_bias puts a bias on q, k, v and o alike; this model has ${c.qkvBias ? 'q/k/v biases only' : 'an output bias only'}`);
    bias.attention_bias = c.qkvBias;
  }
  if (c.qkNorm !== (arch === 'Qwen3ForCausalLM')) throw refuse(`q/k norms ${c.qkNorm ? 'are' : 'are not'} part of ${arch}`);
  const raw: Record<string, unknown> = {
    architectures: [arch],
    model_type: MODEL_TYPE[arch],
    vocab_size: c.vocabSize,
    hidden_size: c.hidden,
    intermediate_size: c.intermediate,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    ...(c.headDim !== c.hidden / c.heads || arch === 'Qwen3ForCausalLM' ? { head_dim: c.headDim } : {}),
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.rmsNormEps,
    ...rope,
    ...bias,
    ...(arch === 'LlamaForCausalLM' ? { mlp_bias: false } : {}),
    ...(arch === 'MistralForCausalLM' ? { sliding_window: c.slidingWindow ?? null } : arch !== 'LlamaForCausalLM' ? { use_sliding_window: c.slidingWindow !== undefined, ...(c.slidingWindow !== undefined ? { sliding_window: c.slidingWindow } : {}) } : {}),
    tie_word_embeddings: c.tiedEmbeddings,
    ...(ids.bos !== undefined ? { bos_token_id: ids.bos } : {}),
    ...(ids.eos.length ? { eos_token_id: ids.eos.length === 1 ? ids.eos[0] : ids.eos } : {}),
    torch_dtype: TORCH_DTYPE[dtype],
  };
  const back = llamaConfigFromHf(raw);
  if (!isDeepStrictEqual(back, c)) throw new Error(`hf export: config.json would read back as ${JSON.stringify(back)}, not ${JSON.stringify(c)}`);
  return raw;
}

/** The source folder's config.json with its dtype field (torch_dtype, or transformers 5's dtype) set to the export's. */
function configJson(source: ChatExportSource, dtype: 'f32' | 'f16' | 'bf16'): Record<string, unknown> {
  if (source.manifest.from === 'hf') {
    const raw = JSON.parse(readFileSync(path.join(source.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const out: Record<string, unknown> = { ...raw, torch_dtype: TORCH_DTYPE[dtype] };
    if ('dtype' in raw) out.dtype = TORCH_DTYPE[dtype];
    return out;
  }
  const t = source.tokenizer;
  const bos = t.templateStrings.bos_token !== undefined ? t.idOf(t.templateStrings.bos_token) : undefined;
  return hfConfigOf(source.description.config, { ...(bos !== undefined ? { bos } : {}), eos: [...t.eosIds].sort((a, b) => a - b) }, dtype);
}

/** The tensors of model.safetensors: matrices in the export dtype, 1-D tensors too when that loses nothing (else F32). */
function safetensorsTensors(source: ChatExportSource, dtype: 'f32' | 'f16' | 'bf16'): SafetensorsTensorToWrite[] {
  const type = SAFETENSORS_TYPE[dtype];
  return [...expectedLlamaTensors(source.description.config)].map(([name, shape]) => {
    const w = source.weights.get(name)!;
    if (shape.length === 2) return { name, dtype: type, shape, bytes: () => encodeMatrix(w instanceof Float32Array ? f32Matrix(w, shape[0]!, shape[1]!) : w, type) };
    const values = w instanceof Float32Array ? w : dequantize(w);
    const exact = type === 'F32' || roundTo16(values, type).every((x, i) => Object.is(x, values[i]));
    const stored = exact ? type : 'F32';
    return { name, dtype: stored, shape, bytes: () => encodeMatrix(f32Matrix(values, 1, values.length), stored) };
  });
}

/** A tensor's data bytes. */
function dataBytes(t: SafetensorsTensorToWrite): number {
  return t.shape.reduce((a, b) => a * b, 1) * (t.dtype === 'F32' ? 4 : 2);
}

/** Tensors grouped into shards of at most `max` data bytes each (a tensor larger than that alone). */
function shards(tensors: SafetensorsTensorToWrite[], max: number): SafetensorsTensorToWrite[][] {
  const out: SafetensorsTensorToWrite[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    const bytes = dataBytes(t);
    if (size > 0 && size + bytes > max) {
      out.push([]);
      size = 0;
    }
    out[out.length - 1]!.push(t);
    size += bytes;
  }
  return out;
}

/** tokenizer_config.json of a GGUF source (the strings the template uses and the template). */
function tokenizerConfigOf(source: ChatExportSource): Record<string, unknown> {
  const t = source.tokenizer;
  const s = t.templateStrings;
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: source.addBosToken ?? false,
    bos_token: s.bos_token ?? null,
    eos_token: s.eos_token ?? null,
    ...(s.pad_token !== undefined ? { pad_token: s.pad_token } : {}),
    ...(s.unk_token !== undefined ? { unk_token: s.unk_token } : {}),
    model_max_length: source.description.config.maxPositions,
    clean_up_tokenization_spaces: false,
    ...(t.chatTemplate !== undefined ? { chat_template: t.chatTemplate } : {}),
  };
}

export interface ExportResult {
  format: ExportFormat;
  dtype: ExportDtype;
  dir: string;
  files: { file: string; bytes: number }[];
  /** What the format could not hold or changed (for the operator). */
  notes: string[];
}

async function exportHf(source: ChatExportSource, target: string, dtype: ExportDtype, maxShardBytes: number): Promise<ExportResult> {
  if (dtype === 'q8_0') throw new ImportError('hf export: a Hugging Face folder holds f32, f16 or bf16 weights (Q8_0 is a GGUF type: --format gguf --dtype q8_0)');
  const config = configJson(source, dtype);
  const tensors = safetensorsTensors(source, dtype);
  const groups = shards(tensors, maxShardBytes);
  const weightBytes = groups.reduce((n, g) => n + safetensorsFileBytes(g, { format: 'pt' }), 0);
  await ensureDiskSpace(target, weightBytes, 'export');
  const fromHf = source.manifest.from === 'hf';
  await writeDirAtomic(target, async (tmp) => {
    await fs.writeFile(path.join(tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    if (groups.length === 1) await writeSafetensorsStream(path.join(tmp, 'model.safetensors'), groups[0]!, { format: 'pt' });
    else {
      const weightMap: Record<string, string> = {};
      const pad = (n: number) => String(n).padStart(5, '0');
      for (const [i, group] of groups.entries()) {
        const file = `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`;
        await writeSafetensorsStream(path.join(tmp, file), group, { format: 'pt' });
        for (const t of group) weightMap[t.name] = file;
      }
      await fs.writeFile(path.join(tmp, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: tensors.reduce((n, t) => n + dataBytes(t), 0) }, weight_map: weightMap }, null, 2)}\n`);
    }
    const copyOr = async (file: string, make: () => unknown) => {
      if (fromHf && existsSync(path.join(source.dir, file))) await fs.copyFile(path.join(source.dir, file), path.join(tmp, file));
      else await fs.writeFile(path.join(tmp, file), `${JSON.stringify(make(), null, 2)}\n`);
    };
    await copyOr('tokenizer.json', () => source.tokenizer.json);
    await copyOr('tokenizer_config.json', () => tokenizerConfigOf(source));
    await copyOr('generation_config.json', () => ({ ...(config.bos_token_id !== undefined ? { bos_token_id: config.bos_token_id } : {}), eos_token_id: [...source.tokenizer.eosIds].sort((a, b) => a - b) }));
    await writeLicenceFiles(source, tmp, `${source.manifest.architecture} (${dtype})`);
  });
  return { format: 'hf', dtype, dir: target, files: listFiles(target), notes: [] };
}

function listFiles(dir: string): { file: string; bytes: number }[] {
  return readdirSync(dir)
    .sort()
    .map((file) => ({ file, bytes: statSync(path.join(dir, file)).size }));
}

// ---- GGUF -------------------------------------------------------------------------------------

/** What the GGUF writer needs of a version: its config, weights and vocabulary (from its tokenizer.json). */
export function ggufSourceOf(source: ChatExportSource, name: string): { gguf: ChatGgufSource; notes: string[] } {
  const c = source.description.config;
  let addBos = source.addBosToken;
  let bosId: number | undefined;
  if (source.manifest.from === 'hf') {
    const read = (f: string) => (existsSync(path.join(source.dir, f)) ? (JSON.parse(readFileSync(path.join(source.dir, f), 'utf8')) as Record<string, unknown>) : {});
    const tokConfig = read('tokenizer_config.json');
    const raw = read('config.json');
    if (typeof raw.bos_token_id === 'number') bosId = raw.bos_token_id;
    // As convert_hf_to_gguf.py's SpecialVocab: tokenizer_config.json's add_bos_token, else whether tokenizer.json's post-processor adds BOS.
    if (typeof tokConfig.add_bos_token === 'boolean') addBos = tokConfig.add_bos_token;
    else {
      const bosText = source.tokenizer.templateStrings.bos_token;
      addBos = bosText !== undefined && JSON.stringify(source.tokenizer.json.post_processor ?? null).includes(`{"SpecialToken":{"id":${JSON.stringify(bosText)}`);
    }
  }
  const { lost, ...vocabulary } = ggufVocabulary(source.tokenizer, c.vocabSize, { ...(addBos !== undefined ? { addBos } : {}), ...(bosId !== undefined ? { bosId } : {}) });
  const notes = lost.length ? [`end-of-turn ids ${lost.join(', ')} have no GGUF key left (eos, eot and eom are taken): llama.cpp does not stop at them`] : [];
  return { gguf: { config: c, weights: source.weights, vocabulary, name, licence: source.manifest.licence }, notes };
}

/** The file name of a GGUF export: the model's name and its type, as llama.cpp's converter names them. */
export function ggufFileName(name: string, type: ChatGgufType): string {
  return `${name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'model'}-${type}.gguf`;
}

async function exportGguf(source: ChatExportSource, target: string, dtype: ExportDtype, name: string): Promise<ExportResult> {
  const type = GGUF_TYPE[dtype];
  const { gguf, notes } = ggufSourceOf(source, name);
  await ensureDiskSpace(target, chatGgufBytes(gguf, type), 'export');
  const file = ggufFileName(name, type);
  await writeDirAtomic(target, async (tmp) => {
    notes.push(...(await writeChatGguf(path.join(tmp, file), gguf, type)));
    await writeLicenceFiles(source, tmp, `${name} (${type})`);
  });
  return { format: 'gguf', dtype, dir: target, files: listFiles(target), notes };
}

export interface ExportOptions {
  dtype?: ExportDtype;
  /** The name written into the files (GGUF general.name, the file name); default the architecture. */
  name?: string;
  /** Weights to write instead of the version's own (HF names and row order). */
  weights?: Weights;
  maxShardBytes?: number;
}

/** Writes the chat model of a version folder to `target` (a new or empty folder) in `format`. */
export async function exportChatModel(dir: string, format: ExportFormat, target: string, options: ExportOptions = {}): Promise<ExportResult> {
  await checkTarget(target);
  if (format === 'peft') return exportPeft(dir, target);
  const source = readChatExportSource(dir, options.weights);
  const dtype = options.dtype ?? heldDtype(source.weights, format);
  const name = options.name ?? source.manifest.architecture;
  return format === 'hf' ? exportHf(source, target, dtype, options.maxShardBytes ?? MAX_SHARD_BYTES) : exportGguf(source, target, dtype, name);
}

/** An adapter version's PEFT files, as they are (they were written, or imported, in PEFT's format). */
async function exportPeft(dir: string, target: string): Promise<ExportResult> {
  const manifest = readChatManifest(dir);
  if (!manifest.adapter) throw new ImportError('--format peft writes a LoRA adapter version (teamllm train sft --base <imported version>, or an imported PEFT folder); this version is a whole model: --format hf or gguf');
  const files = [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE];
  const bytes = files.reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);
  await ensureDiskSpace(target, bytes, 'export');
  await writeDirAtomic(target, async (tmp) => {
    for (const f of files) await fs.copyFile(path.join(dir, f), path.join(tmp, f));
  });
  return {
    format: 'peft',
    dtype: 'f32',
    dir: target,
    files: files.map((f) => ({ file: f, bytes: statSync(path.join(target, f)).size })),
    notes: [`the adapter goes on ${manifest.adapter.base} (${manifest.architecture}, imported from ${readChatManifest(adapterBaseDir(dir, manifest)).origin})`],
  };
}

// ---- the llama.cpp engine's file ------------------------------------------------------------

/** The GGUF type a version is served in: its --dtype at import (bf16, int8 → Q8_0, f32), else its weights' own. */
export function servingGgufType(manifest: ChatManifest, weights: Weights): ChatGgufType {
  if (manifest.servingDtype === 'bf16') return 'BF16';
  if (manifest.servingDtype === 'int8') return 'Q8_0';
  if (manifest.servingDtype === 'f32') return 'F32';
  return GGUF_TYPE[heldDtype(weights, 'gguf')];
}

/** The folder inside a version where the llama.cpp engine's GGUF export is kept. */
export const SERVING_GGUF_DIR = 'llama.cpp';

/**
 * The version's GGUF file for llama.cpp: written on first use into `<dir>/llama.cpp/`, reused
 * after (written atomically: a file there is complete).
 */
export async function servingGguf(dir: string, name: string): Promise<{ file: string; written: boolean; notes: string[] }> {
  const folder = path.join(dir, SERVING_GGUF_DIR);
  const existing = existsSync(folder) ? readdirSync(folder).find((f) => f.endsWith('.gguf')) : undefined;
  if (existing) return { file: path.join(folder, existing), written: false, notes: [] };
  const source = readChatExportSource(dir);
  const type = servingGgufType(source.manifest, source.weights);
  const { gguf, notes } = ggufSourceOf(source, name);
  await ensureDiskSpace(folder, chatGgufBytes(gguf, type), 'export');
  const file = path.join(folder, ggufFileName(name, type));
  notes.push(...(await writeChatGguf(file, gguf, type)));
  return { file, written: true, notes };
}
