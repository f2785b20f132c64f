/**
 * The transformer's configuration (nanoGPT's GPTConfig) and named sizes, from a test model to
 * tens of millions of parameters.
 *
 * One configuration covers two families, told apart by `arch`, the way llama.cpp's table says
 * how each architecture differs:
 *
 *                  norm       positions         attention            MLP      names (layout)
 *   gpt (default)  LayerNorm  learned (wpe)     fused c_attn, MHA    GELU     GPT-2's ([in, out])
 *   llama          RMSNorm    RoPE (+scaling)   q/k/v, GQA, q/k norm SwiGLU   Hugging Face's ([out, in])
 *
 * A GPT config has none of the llama fields (old config.json files read as they always did);
 * `validateConfig` fills a llama config's defaults, so a validated one has them all.
 */
import { z } from 'zod';
import { countLlamaParameters, type LlamaConfig, type RopeScaling } from './import/llama-config.ts';

const RopeScalingSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('none') }),
  z.object({ type: z.literal('linear'), factor: z.number().positive() }),
  z.object({
    type: z.literal('llama3'),
    factor: z.number().positive(),
    lowFreqFactor: z.number().positive(),
    highFreqFactor: z.number().positive(),
    originalMaxPositions: z.number().positive(),
  }),
  z.object({ type: z.literal('factors'), factors: z.array(z.number().positive()) }),
]);

export const GPTConfigSchema = z.object({
  vocabSize: z.number().int().positive(),
  /** Longest context the model sees (positions). */
  blockSize: z.number().int().positive(),
  nLayer: z.number().int().positive(),
  nHead: z.number().int().positive(),
  nEmbd: z.number().int().positive(),
  dropout: z.number().min(0).max(1).default(0),
  /** Biases in Linear and LayerNorm layers (nanoGPT: False is a bit better and faster). gpt only. */
  bias: z.boolean().default(false),
  /** The family: 'gpt' when absent (see the table above). */
  arch: z.enum(['gpt', 'llama']).optional(),
  // ---- llama only ----
  /** Key/value heads (grouped-query attention: each serves nHead / nKvHead query heads). Default nHead. */
  nKvHead: z.number().int().positive().optional(),
  /** Width of one head. Default nEmbd / nHead (Qwen3 declares its own). */
  headDim: z.number().int().positive().optional(),
  /** Width of the SwiGLU MLP. Default LLaMA's 2/3 · 4 · nEmbd, rounded up to a multiple of 64. */
  intermediateSize: z.number().int().positive().optional(),
  /** RMSNorm's epsilon. Default 1e-6. */
  normEps: z.number().positive().optional(),
  /** RoPE's base. Default 10000. */
  ropeTheta: z.number().positive().optional(),
  /** RoPE's frequency scaling (llama-config.ts). Default none. */
  ropeScaling: RopeScalingSchema.optional(),
  /** Bias on the q, k and v projections (Qwen2). */
  qkvBias: z.boolean().optional(),
  /** Bias on the attention output projection. */
  outputBias: z.boolean().optional(),
  /** RMSNorm of each head's q and k before RoPE (Qwen3). */
  qkNorm: z.boolean().optional(),
  /** The output head is the embedding table (no lm_head). Default true. */
  tiedHead: z.boolean().optional(),
});

export type GPTConfig = z.infer<typeof GPTConfigSchema>;

/** Model sizes without a vocabulary (the tokenizer decides it). */
export type ModelSize = Omit<GPTConfig, 'vocabSize'>;

export const MODEL_SIZES = {
  /** A few thousand parameters: unit tests. */
  tiny: { blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0, bias: true },
  /** nanoGPT's "baby GPT on CPU" (README): 4 layers, 4 heads, 128 wide, block 64. */
  'nanogpt-cpu': { blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: false },
  /** nanoGPT's shakespeare-char model: ~10M parameters. */
  'gpt-10m': { blockSize: 256, nLayer: 6, nHead: 6, nEmbd: 384, dropout: 0.2, bias: false },
  /** A GPT-2-small-shaped model with a shorter context (~30M parameters + embeddings). */
  'gpt-small': { blockSize: 512, nLayer: 8, nHead: 8, nEmbd: 512, dropout: 0.1, bias: false },
  /** The baby GPT's size in the Llama family: RMSNorm, RoPE, 4 query / 2 key-value heads, SwiGLU 384 wide, tied head. */
  'llama-cpu': { arch: 'llama', blockSize: 64, nLayer: 4, nHead: 4, nKvHead: 2, nEmbd: 128, intermediateSize: 384, dropout: 0, bias: false, ropeTheta: 10000, normEps: 1e-5 },
} satisfies Record<string, ModelSize>;

export type ModelSizeName = keyof typeof MODEL_SIZES;

const LLAMA_ONLY = ['nKvHead', 'headDim', 'intermediateSize', 'normEps', 'ropeTheta', 'ropeScaling', 'qkvBias', 'outputBias', 'qkNorm', 'tiedHead'] as const;

/** A validated llama config: every llama field filled. */
export type LlamaArchConfig = GPTConfig & { arch: 'llama' } & Required<Pick<GPTConfig, (typeof LLAMA_ONLY)[number]>>;

export function isLlamaArch(c: GPTConfig): c is LlamaArchConfig {
  return c.arch === 'llama';
}

export function validateConfig(config: unknown): GPTConfig {
  const c = GPTConfigSchema.parse(config);
  if (c.arch !== 'llama') {
    const stray = LLAMA_ONLY.filter((k) => c[k] !== undefined);
    if (stray.length) throw new Error(`${stray.join(', ')} only apply to arch "llama"`);
    if (c.nEmbd % c.nHead !== 0) throw new Error(`nEmbd (${c.nEmbd}) must be divisible by nHead (${c.nHead})`);
    return c;
  }
  if (c.bias) throw new Error('arch "llama" has no "bias": its biases are qkvBias and outputBias');
  const nKvHead = c.nKvHead ?? c.nHead;
  if (c.nHead % nKvHead !== 0) throw new Error(`nHead (${c.nHead}) must be a multiple of nKvHead (${nKvHead})`);
  if (c.headDim === undefined && c.nEmbd % c.nHead !== 0) throw new Error(`nEmbd (${c.nEmbd}) must be divisible by nHead (${c.nHead}), or headDim given`);
  const headDim = c.headDim ?? c.nEmbd / c.nHead;
  if (headDim % 2 !== 0) throw new Error(`headDim (${headDim}) must be even (RoPE rotates pairs)`);
  const full: LlamaArchConfig = {
    ...c,
    arch: 'llama',
    nKvHead,
    headDim,
    intermediateSize: c.intermediateSize ?? Math.ceil((8 * c.nEmbd) / 3 / 64) * 64,
    normEps: c.normEps ?? 1e-6,
    ropeTheta: c.ropeTheta ?? 10000,
    ropeScaling: c.ropeScaling ?? { type: 'none' },
    qkvBias: c.qkvBias ?? false,
    outputBias: c.outputBias ?? false,
    qkNorm: c.qkNorm ?? false,
    tiedHead: c.tiedHead ?? true,
  };
  if (full.ropeScaling.type === 'factors' && full.ropeScaling.factors.length !== headDim / 2) {
    throw new Error(`ropeScaling has ${full.ropeScaling.factors.length} factors for headDim ${headDim} (needs ${headDim / 2})`);
  }
  return full;
}

/**
 * The imported models' description of a llama config (llama-config.ts): one table of tensor
 * names and shapes and one RoPE for both the trainable model and the inference engine.
 */
export function toLlamaConfig(c: LlamaArchConfig): LlamaConfig {
  return {
    // The engine reads no behaviour from the name; this is the family whose options these are.
    architecture: c.qkNorm ? 'Qwen3ForCausalLM' : c.qkvBias && !c.outputBias ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM',
    vocabSize: c.vocabSize,
    hidden: c.nEmbd,
    layers: c.nLayer,
    heads: c.nHead,
    kvHeads: c.nKvHead,
    headDim: c.headDim,
    intermediate: c.intermediateSize,
    maxPositions: c.blockSize,
    rmsNormEps: c.normEps,
    ropeTheta: c.ropeTheta,
    ropeScaling: c.ropeScaling,
    qkvBias: c.qkvBias,
    outputBias: c.outputBias,
    qkNorm: c.qkNorm,
    tiedEmbeddings: c.tiedHead,
  };
}

/** A trainable config for an imported model's shape (`blockSize` defaults to its max positions). */
export function fromLlamaConfig(l: LlamaConfig, blockSize = l.maxPositions): LlamaArchConfig {
  if (l.slidingWindow !== undefined) throw new Error('sliding-window attention is not in the trainable model');
  const scaling: RopeScaling = l.ropeScaling;
  return validateConfig({
    arch: 'llama',
    vocabSize: l.vocabSize,
    blockSize,
    nLayer: l.layers,
    nHead: l.heads,
    nKvHead: l.kvHeads,
    nEmbd: l.hidden,
    headDim: l.headDim,
    intermediateSize: l.intermediate,
    normEps: l.rmsNormEps,
    ropeTheta: l.ropeTheta,
    ropeScaling: scaling,
    qkvBias: l.qkvBias,
    outputBias: l.outputBias,
    qkNorm: l.qkNorm,
    tiedHead: l.tiedEmbeddings,
    dropout: 0,
    bias: false,
  }) as LlamaArchConfig;
}

/** Number of parameters (tied embeddings counted once), as nanoGPT reports it with positions. */
export function countParameters(c: GPTConfig): number {
  if (isLlamaArch(c)) return countLlamaParameters(toLlamaConfig(c));
  const C = c.nEmbd;
  const b = c.bias ? 1 : 0;
  const ln = C + b * C;
  const perLayer = ln + (C * 3 * C + b * 3 * C) + (C * C + b * C) + ln + (C * 4 * C + b * 4 * C) + (4 * C * C + b * C);
  return c.vocabSize * C + c.blockSize * C + c.nLayer * perLayer + ln;
}
