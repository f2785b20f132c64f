/**
 * LoRA's configuration: rank r, alpha (the update is scaled by alpha / r), dropout on the
 * adapter's input, and which projections get an adapter, chosen by name.
 *
 * Target names (GPT-2 layout, weights stored [in, out]):
 *
 *   q, k, v      the query / key / value thirds of the fused `attn.c_attn` projection
 *   attn_out     the attention output projection `attn.c_proj`
 *   mlp_in       the MLP's up projection `mlp.c_fc`
 *   mlp_out      the MLP's down projection `mlp.c_proj`
 *
 * Aliases people bring from PEFT configs are accepted (`q_proj`, `o_proj`, `up_proj`, `c_fc`...),
 * and the groups `attention` (q, k, v, attn_out), `mlp` (mlp_in, mlp_out) and `all`.
 */
import { z } from 'zod';
import type { ProjectionSite } from '../gpt.ts';

export const LORA_TARGETS = ['q', 'k', 'v', 'attn_out', 'mlp_in', 'mlp_out'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** Default: all attention projections. */
export const DEFAULT_LORA_TARGETS: LoraTarget[] = ['q', 'k', 'v', 'attn_out'];

const ALIASES: Record<string, LoraTarget[]> = {
  q: ['q'],
  k: ['k'],
  v: ['v'],
  query: ['q'],
  key: ['k'],
  value: ['v'],
  q_proj: ['q'],
  k_proj: ['k'],
  v_proj: ['v'],
  'attn.q': ['q'],
  'attn.k': ['k'],
  'attn.v': ['v'],
  qkv: ['q', 'k', 'v'],
  c_attn: ['q', 'k', 'v'],
  'attn.c_attn': ['q', 'k', 'v'],
  attn_out: ['attn_out'],
  o: ['attn_out'],
  o_proj: ['attn_out'],
  out_proj: ['attn_out'],
  dense: ['attn_out'],
  'attn.c_proj': ['attn_out'],
  mlp_in: ['mlp_in'],
  c_fc: ['mlp_in'],
  fc: ['mlp_in'],
  up: ['mlp_in'],
  up_proj: ['mlp_in'],
  fc_in: ['mlp_in'],
  'mlp.c_fc': ['mlp_in'],
  mlp_out: ['mlp_out'],
  down: ['mlp_out'],
  down_proj: ['mlp_out'],
  fc_out: ['mlp_out'],
  'mlp.c_proj': ['mlp_out'],
  attention: ['q', 'k', 'v', 'attn_out'],
  attn: ['q', 'k', 'v', 'attn_out'],
  mlp: ['mlp_in', 'mlp_out'],
  all: [...LORA_TARGETS],
  'all-linear': [...LORA_TARGETS],
};

/** Which projection a target lives in, and (for q/k/v) which third of its output. */
export const TARGET_SITE: Record<LoraTarget, { site: ProjectionSite; part?: 0 | 1 | 2 }> = {
  q: { site: 'attn.c_attn', part: 0 },
  k: { site: 'attn.c_attn', part: 1 },
  v: { site: 'attn.c_attn', part: 2 },
  attn_out: { site: 'attn.c_proj' },
  mlp_in: { site: 'mlp.c_fc' },
  mlp_out: { site: 'mlp.c_proj' },
};

/** Names as they appear in tensor names: `transformer.h.<i>.<path>.lora_A`. */
export const TARGET_PATH: Record<LoraTarget, string> = {
  q: 'attn.q',
  k: 'attn.k',
  v: 'attn.v',
  attn_out: 'attn.c_proj',
  mlp_in: 'mlp.c_fc',
  mlp_out: 'mlp.c_proj',
};

/** Turns target names (with aliases and groups, or a comma list) into canonical targets, in a stable order. */
export function parseLoraTargets(names: string | readonly string[]): LoraTarget[] {
  const list = (typeof names === 'string' ? names.split(',') : [...names]).map((n) => n.trim()).filter(Boolean);
  const out = new Set<LoraTarget>();
  for (const name of list) {
    const t = ALIASES[name] ?? ALIASES[name.toLowerCase()];
    if (!t) {
      throw new Error(`Unknown LoRA target module "${name}": use ${LORA_TARGETS.join(', ')} (or attention, mlp, all; PEFT names like q_proj, o_proj, up_proj work too)`);
    }
    for (const x of t) out.add(x);
  }
  if (out.size === 0) throw new Error('LoRA needs at least one target module');
  return LORA_TARGETS.filter((t) => out.has(t));
}

export const LoraConfigSchema = z.object({
  rank: z.number().int().positive().default(8),
  /** The update is scaled by alpha / rank. */
  alpha: z.number().positive().default(16),
  dropout: z.number().min(0).lt(1).default(0.05),
  targets: z
    .union([z.string(), z.array(z.string())])
    .default(DEFAULT_LORA_TARGETS)
    .transform((t) => parseLoraTargets(t)),
  /** Only these layers (default: all). */
  layers: z.array(z.number().int().nonnegative()).optional(),
});

export type LoraConfigInput = z.input<typeof LoraConfigSchema>;
export type LoraConfig = z.output<typeof LoraConfigSchema>;

export function resolveLoraConfig(input: LoraConfigInput = {}): LoraConfig {
  return LoraConfigSchema.parse(input);
}
