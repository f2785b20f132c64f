/**
 * The transformer's configuration (nanoGPT's GPTConfig) and named sizes, from a test model to
 * tens of millions of parameters.
 */
import { z } from 'zod';

export const GPTConfigSchema = z.object({
  vocabSize: z.number().int().positive(),
  /** Longest context the model sees (positions). */
  blockSize: z.number().int().positive(),
  nLayer: z.number().int().positive(),
  nHead: z.number().int().positive(),
  nEmbd: z.number().int().positive(),
  dropout: z.number().min(0).max(1).default(0),
  /** Biases in Linear and LayerNorm layers (nanoGPT: False is a bit better and faster). */
  bias: z.boolean().default(false),
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
} satisfies Record<string, ModelSize>;

export type ModelSizeName = keyof typeof MODEL_SIZES;

export function validateConfig(config: unknown): GPTConfig {
  const c = GPTConfigSchema.parse(config);
  if (c.nEmbd % c.nHead !== 0) {
    throw new Error(`nEmbd (${c.nEmbd}) must be divisible by nHead (${c.nHead})`);
  }
  return c;
}

/** Number of parameters (tied embeddings counted once), as nanoGPT reports it with positions. */
export function countParameters(c: GPTConfig): number {
  const C = c.nEmbd;
  const b = c.bias ? 1 : 0;
  const ln = C + b * C;
  const perLayer = ln + (C * 3 * C + b * 3 * C) + (C * C + b * C) + ln + (C * 4 * C + b * 4 * C) + (4 * C * C + b * C);
  return c.vocabSize * C + c.blockSize * C + c.nLayer * perLayer + ln;
}
