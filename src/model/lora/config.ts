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
 * The llama family (Hugging Face layout, weights [out, in]) has one more, `mlp_gate`, and each
 * target is its own projection:
 *
 *   q, k, v → self_attn.q_proj / k_proj / v_proj    attn_out → self_attn.o_proj
 *   mlp_gate → mlp.gate_proj    mlp_in → mlp.up_proj    mlp_out → mlp.down_proj
 *
 * Aliases people bring from PEFT configs are accepted (`q_proj`, `o_proj`, `up_proj`, `c_fc`...),
 * and the groups `attention` (q, k, v, attn_out), `mlp` (the family's MLP projections) and `all`.
 * Groups depend on the family (`parseLoraTargets(names, arch)`): `all` on a llama includes the gate.
 */
import { z } from 'zod';
import type { ProjectionSite } from '../gpt.ts';
import type { LlamaProjectionSite } from '../forward-ops.ts';

/** The GPT's targets, in their stable order. */
export const LORA_TARGETS = ['q', 'k', 'v', 'attn_out', 'mlp_in', 'mlp_out'] as const;
export type GptLoraTarget = (typeof LORA_TARGETS)[number];
/** The llama family's targets (PEFT's q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj), in order. */
export const LLAMA_LORA_TARGETS = ['q', 'k', 'v', 'attn_out', 'mlp_gate', 'mlp_in', 'mlp_out'] as const;
export type LoraTarget = (typeof LLAMA_LORA_TARGETS)[number];
export type LoraArch = 'gpt' | 'llama';

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
  mlp_gate: ['mlp_gate'],
  gate: ['mlp_gate'],
  gate_proj: ['mlp_gate'],
  'mlp.gate_proj': ['mlp_gate'],
  'self_attn.q_proj': ['q'],
  'self_attn.k_proj': ['k'],
  'self_attn.v_proj': ['v'],
  'self_attn.o_proj': ['attn_out'],
  'mlp.up_proj': ['mlp_in'],
  'mlp.down_proj': ['mlp_out'],
  mlp_out: ['mlp_out'],
  down: ['mlp_out'],
  down_proj: ['mlp_out'],
  fc_out: ['mlp_out'],
  'mlp.c_proj': ['mlp_out'],
  attention: ['q', 'k', 'v', 'attn_out'],
  attn: ['q', 'k', 'v', 'attn_out'],
};

/** Groups, per family. */
const GROUPS: Record<LoraArch, Record<string, LoraTarget[]>> = {
  gpt: { mlp: ['mlp_in', 'mlp_out'], all: [...LORA_TARGETS], 'all-linear': [...LORA_TARGETS] },
  llama: { mlp: ['mlp_gate', 'mlp_in', 'mlp_out'], all: [...LLAMA_LORA_TARGETS], 'all-linear': [...LLAMA_LORA_TARGETS] },
};

/** Which projection a target lives in, and (for q/k/v) which third of its output. */
export const TARGET_SITE: Record<GptLoraTarget, { site: ProjectionSite; part?: 0 | 1 | 2 }> = {
  q: { site: 'attn.c_attn', part: 0 },
  k: { site: 'attn.c_attn', part: 1 },
  v: { site: 'attn.c_attn', part: 2 },
  attn_out: { site: 'attn.c_proj' },
  mlp_in: { site: 'mlp.c_fc' },
  mlp_out: { site: 'mlp.c_proj' },
};

/** Names as they appear in tensor names: `transformer.h.<i>.<path>.lora_A`. */
export const TARGET_PATH: Record<GptLoraTarget, string> = {
  q: 'attn.q',
  k: 'attn.k',
  v: 'attn.v',
  attn_out: 'attn.c_proj',
  mlp_in: 'mlp.c_fc',
  mlp_out: 'mlp.c_proj',
};

/** The llama family's projection of each target (and PEFT's target_modules name: the path's last part). */
export const LLAMA_TARGET_SITE: Record<LoraTarget, LlamaProjectionSite> = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  attn_out: 'self_attn.o_proj',
  mlp_gate: 'mlp.gate_proj',
  mlp_in: 'mlp.up_proj',
  mlp_out: 'mlp.down_proj',
};

/**
 * Turns target names (with aliases and groups, or a comma list) into canonical targets, in a
 * stable order. `arch` decides the groups and whether the llama-only gate is allowed.
 */
export function parseLoraTargets(names: string | readonly string[], arch: LoraArch = 'gpt'): LoraTarget[] {
  const list = (typeof names === 'string' ? names.split(',') : [...names]).map((n) => n.trim()).filter(Boolean);
  const order: readonly LoraTarget[] = arch === 'llama' ? LLAMA_LORA_TARGETS : LORA_TARGETS;
  const out = new Set<LoraTarget>();
  for (const name of list) {
    const t = GROUPS[arch][name] ?? GROUPS[arch][name.toLowerCase()] ?? ALIASES[name] ?? ALIASES[name.toLowerCase()];
    if (!t) {
      throw new Error(`Unknown LoRA target module "${name}": use ${order.join(', ')} (or attention, mlp, all; PEFT names like q_proj, o_proj, up_proj work too)`);
    }
    for (const x of t) {
      if (!order.includes(x)) throw new Error(`LoRA target module "${name}" exists only in the llama family (the GPT's MLP has no gate projection)`);
      out.add(x);
    }
  }
  if (out.size === 0) throw new Error('LoRA needs at least one target module');
  return order.filter((t) => out.has(t));
}

/** The configuration's schema, with target names read as the family `arch` names them. */
export function loraConfigSchema(arch: LoraArch) {
  return z.object({
    rank: z.number().int().positive().default(8),
    /** The update is scaled by alpha / rank. */
    alpha: z.number().positive().default(16),
    dropout: z.number().min(0).lt(1).default(0.05),
    targets: z
      .union([z.string(), z.array(z.string())])
      .default(DEFAULT_LORA_TARGETS)
      .transform((t) => parseLoraTargets(t, arch)),
    /** Only these layers (default: all). */
    layers: z.array(z.number().int().nonnegative()).optional(),
  });
}

export const LoraConfigSchema = loraConfigSchema('gpt');

export type LoraConfigInput = z.input<typeof LoraConfigSchema>;
export type LoraConfig = z.output<typeof LoraConfigSchema>;

/** A configuration with its defaults, targets named for `arch` (default the GPT's). */
export function resolveLoraConfig(input: LoraConfigInput = {}, arch: LoraArch = 'gpt'): LoraConfig {
  return loraConfigSchema(arch).parse(input);
}
