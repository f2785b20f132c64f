/**
 * What an imported chat model of the Llama family is, in one place (as llama.cpp's per-architecture
 * table is): which Hugging Face architectures are read, how each differs, and the tensor names and
 * shapes a config implies.
 *
 *                       q/k/v bias   q/k norm   head_dim          tied head     RoPE pairs
 *   LlamaForCausalLM    attention_bias  no      hidden/heads*     tie_word_...  half-split (HF)
 *   MistralForCausalLM  no          no          may differ        no            half-split (HF)
 *   Qwen2ForCausalLM    yes         no          hidden/heads      often (0.5B)  half-split
 *   Qwen3ForCausalLM    attention_bias  yes     explicit          often         half-split
 *   (attention_bias also puts a bias on o_proj for Llama and Qwen3; Qwen2's o_proj has none.)
 *   (* Llama configs may also declare head_dim.)
 *
 * RoPE: `rope_parameters` (transformers 5) or the older `rope_theta` + `rope_scaling`; scaling
 * "default", "linear" and "llama3" are supported (llama3: per-frequency factors, as Llama 3.1-3.3
 * declare them). Anything else is refused with what is supported.
 */
import { checkTensorShapes, ImportError } from './hf-folder.ts';

export const SUPPORTED_CHAT_MODELS = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'] as const;
export type ChatArchitecture = (typeof SUPPORTED_CHAT_MODELS)[number];

export type RopeScaling =
  | { type: 'none' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  /** One divisor per frequency, as a GGUF file's rope_freqs tensor gives them (llama3 scaling, converted). */
  | { type: 'factors'; factors: number[] };

export interface LlamaConfig {
  architecture: ChatArchitecture;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Bias on the q, k and v projections (Qwen2; Llama/Qwen3 with attention_bias). */
  qkvBias: boolean;
  /** Bias on the output projection (Llama with attention_bias; never Qwen). */
  outputBias: boolean;
  /** RMSNorm of each head's q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  /** The output head is the embedding table (no lm_head tensor is read). */
  tiedEmbeddings: boolean;
  /** Keys further back than this many positions are not attended to (Mistral v0.1); undefined: no window. */
  slidingWindow?: number;
}

/** Hugging Face tensor names, as the checkpoints write them. */
export function layerName(i: number, name: string): string {
  return `model.layers.${i}.${name}`;
}

/** Every tensor the forward reads, with the shape the config implies ([out, in] for weights). */
export function expectedLlamaTensors(c: LlamaConfig): Map<string, number[]> {
  const h = c.hidden;
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const m = new Map<string, number[]>([['model.embed_tokens.weight', [c.vocabSize, h]]]);
  for (let i = 0; i < c.layers; i++) {
    const L = (name: string, shape: number[]) => m.set(layerName(i, name), shape);
    L('input_layernorm.weight', [h]);
    L('self_attn.q_proj.weight', [q, h]);
    L('self_attn.k_proj.weight', [kv, h]);
    L('self_attn.v_proj.weight', [kv, h]);
    if (c.qkvBias) {
      L('self_attn.q_proj.bias', [q]);
      L('self_attn.k_proj.bias', [kv]);
      L('self_attn.v_proj.bias', [kv]);
    }
    if (c.qkNorm) {
      L('self_attn.q_norm.weight', [c.headDim]);
      L('self_attn.k_norm.weight', [c.headDim]);
    }
    L('self_attn.o_proj.weight', [h, q]);
    if (c.outputBias) L('self_attn.o_proj.bias', [h]);
    L('post_attention_layernorm.weight', [h]);
    L('mlp.gate_proj.weight', [c.intermediate, h]);
    L('mlp.up_proj.weight', [c.intermediate, h]);
    L('mlp.down_proj.weight', [h, c.intermediate]);
  }
  m.set('model.norm.weight', [h]);
  if (!c.tiedEmbeddings) m.set('lm_head.weight', [c.vocabSize, h]);
  return m;
}

export function countLlamaParameters(c: LlamaConfig): number {
  let n = 0;
  for (const shape of expectedLlamaTensors(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * RoPE's inverse frequencies for one head: theta^(-2i/d) for i < d/2, with the declared scaling
 * applied (llama3: transformers' _compute_llama3_parameters; linear: all divided by the factor).
 */
export function ropeInverseFrequencies(c: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / c.ropeTheta ** ((2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (s.type === 'linear') for (let i = 0; i < half; i++) inv[i]! /= s.factor;
  if (s.type === 'factors') for (let i = 0; i < half; i++) inv[i]! /= s.factors[i]!;
  if (s.type === 'llama3') {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / llama3Factor(inv[i]!, s, lowWavelen, highWavelen);
  }
  return inv;
}

/** The number llama3 scaling divides one frequency by (what llama.cpp's converter stores as rope_freqs). */
function llama3Factor(freq: number, s: Extract<RopeScaling, { type: 'llama3' }>, lowWavelen: number, highWavelen: number): number {
  const wavelen = (2 * Math.PI) / freq;
  if (wavelen < highWavelen) return 1;
  if (wavelen > lowWavelen) return s.factor;
  const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return 1 / ((1 - smooth) / s.factor + smooth);
}

/** llama.cpp's rope_freqs tensor for llama3 scaling (one divisor per frequency), as its converter writes it. */
export function llama3RopeFactors(c: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const s = c.ropeScaling;
  if (s.type !== 'llama3') throw new Error('llama3RopeFactors: the config has no llama3 RoPE scaling');
  const half = c.headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = llama3Factor(1 / c.ropeTheta ** ((2 * i) / c.headDim), s, s.originalMaxPositions / s.lowFreqFactor, s.originalMaxPositions / s.highFreqFactor);
  return out;
}

function int(raw: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ImportError(`${file}: "${key}" must be a positive integer (found ${JSON.stringify(raw[key])})`);
  return v;
}

function positive(v: unknown, what: string, file: string): number {
  if (typeof v !== 'number' || !(v > 0)) throw new ImportError(`${file}: ${what} must be a positive number (found ${JSON.stringify(v)})`);
  return v;
}

/** RoPE from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (older configs). */
function ropeFromHf(raw: Record<string, unknown>, file: string): { theta: number; scaling: RopeScaling } {
  const params = (raw.rope_parameters ?? undefined) as Record<string, unknown> | undefined;
  const scalingRaw = (params ?? raw.rope_scaling ?? undefined) as Record<string, unknown> | undefined;
  const theta = positive(params?.rope_theta ?? raw.rope_theta ?? 10000, 'rope_theta', file);
  const type = scalingRaw ? (scalingRaw.rope_type ?? scalingRaw.type ?? 'default') : 'default';
  const where = params ? 'rope_parameters' : 'rope_scaling';
  if (type === 'default') return { theta, scaling: { type: 'none' } };
  if (type === 'linear') return { theta, scaling: { type: 'linear', factor: positive(scalingRaw!.factor, `${where}.factor`, file) } };
  if (type === 'llama3') {
    const s = scalingRaw!;
    const scaling: RopeScaling = {
      type: 'llama3',
      factor: positive(s.factor, `${where}.factor`, file),
      lowFreqFactor: positive(s.low_freq_factor ?? 1, `${where}.low_freq_factor`, file),
      highFreqFactor: positive(s.high_freq_factor ?? 4, `${where}.high_freq_factor`, file),
      originalMaxPositions: positive(s.original_max_position_embeddings ?? 8192, `${where}.original_max_position_embeddings`, file),
    };
    if (scaling.lowFreqFactor === scaling.highFreqFactor) throw new ImportError(`${file}: ${where} low_freq_factor and high_freq_factor must differ`);
    return { theta, scaling };
  }
  throw new ImportError(`${file}: RoPE scaling "${String(type)}" is not supported (supported: default, linear, llama3)`);
}

/** Reads a Hugging Face config.json of a supported chat model; refuses anything else, naming what is supported. */
export function llamaConfigFromHf(raw: Record<string, unknown>, file = 'config.json'): LlamaConfig {
  const archs = Array.isArray(raw.architectures) ? (raw.architectures as string[]) : [];
  const declared = archs[0];
  if (!declared || !(SUPPORTED_CHAT_MODELS as readonly string[]).includes(declared)) {
    throw new ImportError(`${file} declares ${declared ? `architecture ${declared}` : 'no "architectures"'}: teamllm imports the chat models ${SUPPORTED_CHAT_MODELS.join(', ')}`);
  }
  const architecture = declared as ChatArchitecture;
  const act = raw.hidden_act ?? raw.hidden_activation ?? 'silu';
  if (act !== 'silu') throw new ImportError(`${file}: hidden_act "${String(act)}" is not supported (only "silu", the SwiGLU MLP of the Llama family)`);
  const hidden = int(raw, 'hidden_size', file);
  const heads = int(raw, 'num_attention_heads', file);
  const kvHeads = int(raw, 'num_key_value_heads', file, heads);
  if (heads % kvHeads !== 0) throw new ImportError(`${file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const declaredHeadDim = raw.head_dim;
  if (declaredHeadDim === undefined || declaredHeadDim === null) {
    if (hidden % heads !== 0) throw new ImportError(`${file}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}, and no head_dim is declared`);
  }
  const headDim = declaredHeadDim === undefined || declaredHeadDim === null ? hidden / heads : int(raw, 'head_dim', file);
  if (headDim % 2 !== 0) throw new ImportError(`${file}: head_dim ${headDim} must be even (RoPE rotates pairs)`);
  const { theta, scaling } = ropeFromHf(raw, file);
  const attentionBias = raw.attention_bias === true;
  const isQwen2 = architecture === 'Qwen2ForCausalLM';
  const useWindow = architecture === 'MistralForCausalLM' ? raw.sliding_window != null : raw.use_sliding_window === true;
  if (raw.mlp_bias === true) throw new ImportError(`${file}: mlp_bias true is not supported (the Llama family's MLP has no biases)`);
  const config: LlamaConfig = {
    architecture,
    vocabSize: int(raw, 'vocab_size', file),
    hidden,
    layers: int(raw, 'num_hidden_layers', file),
    heads,
    kvHeads,
    headDim,
    intermediate: int(raw, 'intermediate_size', file),
    maxPositions: int(raw, 'max_position_embeddings', file, 4096),
    rmsNormEps: positive(raw.rms_norm_eps ?? 1e-6, 'rms_norm_eps', file),
    ropeTheta: theta,
    ropeScaling: scaling,
    qkvBias: isQwen2 || attentionBias,
    outputBias: !isQwen2 && attentionBias,
    qkNorm: architecture === 'Qwen3ForCausalLM',
    tiedEmbeddings: raw.tie_word_embeddings === true,
  };
  if (useWindow) config.slidingWindow = int(raw, 'sliding_window', file);
  return config;
}

/** Checks tensors against the shapes the config implies: every problem named, or none. */
export function checkLlamaShapes(c: LlamaConfig, shapes: Map<string, number[]>, where: string): void {
  checkTensorShapes(expectedLlamaTensors(c), shapes, where);
}
