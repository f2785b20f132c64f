/**
 * PEFT's LoRA folder, the interchange format of the Hugging Face world (PEFT, LLaMA-Factory,
 * vLLM, llama.cpp's convert_lora_to_gguf.py read it):
 *
 *   adapter_config.json         {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout",
 *                                "target_modules": ["q_proj", ...], "task_type": "CAUSAL_LM", ...}
 *   adapter_model.safetensors   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight  [r, in]
 *                               base_model.model.model.layers.N.self_attn.q_proj.lora_B.weight  [out, r]
 *
 * (PEFT's save_pretrained: get_peft_model_state_dict drops the adapter name, so `lora_A.default.weight`
 * is saved as `lora_A.weight`; the `base_model.model.` prefix is PeftModel → LoraModel → the
 * transformers model.) The update is PEFT's: W' = W + (lora_alpha / r)·B·A, our llama adapter's.
 *
 * Written: what PEFT writes, plus the base's identity (teamllm's fingerprint) in the safetensors
 * metadata, where PEFT ignores it. Read: folders PEFT or LLaMA-Factory wrote (F32, F16 or BF16
 * tensors; a leftover adapter name in the keys is accepted); what this format can say that our
 * adapter cannot hold (DoRA, rsLoRA, per-module ranks, trained biases or extra modules) is refused
 * by name rather than loaded wrong.
 *
 * Everything here is plain arrays (no tensor backend): the serving side merges an adapter read this
 * way into an imported model's weights in a worker thread (imported-base.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { decodeSafetensors, writeSafetensors, type NamedArray } from '../safetensors.ts';
import { writeJsonAtomic } from '../files.ts';
import { arraysToTensors, tensorsToArrays } from '../model-files.ts';
import type { GPT } from '../gpt.ts';
import type { GPTConfig } from '../config.ts';
import { LLAMA_LORA_TARGETS, LLAMA_TARGET_SITE, resolveLoraConfig, type LoraConfig, type LoraTarget } from './config.ts';
import { LoraAdapter, assertSameBase, loraSpecs, modelFingerprint, type BaseModelIdentity, type LoraSpec } from './adapter.ts';

export const PEFT_CONFIG_FILE = 'adapter_config.json';
export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';
const PEFT_PREFIX = 'base_model.model.';

/** An adapter as PEFT's folder holds it: the configuration and the tensors under our names, float32. */
export interface PeftLora {
  config: LoraConfig;
  /** `model.layers.N.<site>.lora_A|B` → [r, in] / [out, r]. */
  tensors: Map<string, NamedArray>;
  /** adapter_config.json's base_model_name_or_path. */
  baseModel: string | null;
  /** The base's identity, when teamllm wrote the folder. */
  base?: BaseModelIdentity;
  /** Free-form facts teamllm saved with it. */
  meta: Record<string, unknown>;
}

/** `model.layers.0.self_attn.q_proj.lora_A` → PEFT's `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`. */
export function peftTensorName(name: string): string {
  return `${PEFT_PREFIX}${name}.weight`;
}

const PEFT_KEY = /^(?:base_model\.model\.)?(model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB]))(?:\.default)?\.weight$/;

/** Whether `dir` is a LoRA adapter folder in PEFT's format (its adapter_config.json says peft_type LORA). */
export function isPeftAdapterFolder(dir: string): boolean {
  const file = path.join(dir, PEFT_CONFIG_FILE);
  if (!existsSync(file)) return false;
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { peft_type?: unknown }).peft_type === 'LORA';
  } catch {
    return false;
  }
}

/** adapter_config.json as PEFT's LoraConfig writes it (the fields other readers look at). */
export function peftConfigJson(config: LoraConfig, baseModel: string | null): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: config.layers ? [...config.layers].sort((a, b) => a - b) : null,
    loftq_config: {},
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: config.rank,
    rank_pattern: {},
    revision: null,
    target_modules: config.targets.map((t) => LLAMA_TARGET_SITE[t].split('.').pop()!),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  };
}

/**
 * Writes `adapter` (on a llama-family base) as PEFT's folder into `dir`. `baseModel` is what
 * adapter_config.json names as the base (PEFT's base_model_name_or_path: a hub id or a folder).
 */
export async function writePeftAdapter(dir: string, adapter: LoraAdapter, options: { baseModel?: string | null } = {}): Promise<void> {
  if (adapter.base.config.arch !== 'llama') throw new Error("PEFT's format is written for adapters on a Llama-family base (the GPT's fused c_attn has no PEFT layout)");
  const arrays = tensorsToArrays(adapter.paramNames.map((n) => [n, adapter.params.get(n)!]));
  await writePeftLora(dir, { config: adapter.config, tensors: new Map(arrays), baseModel: options.baseModel ?? adapter.base.version ?? null, base: adapter.base, meta: adapter.meta });
}

/** Writes an adapter held as plain arrays (readPeftAdapter's, combine.ts's) as PEFT's folder. */
export async function writePeftLora(dir: string, lora: PeftLora): Promise<void> {
  const arrays = [...lora.tensors].map(([n, t]) => [peftTensorName(n), t] as [string, NamedArray]);
  await writeSafetensors(path.join(dir, PEFT_WEIGHTS_FILE), new Map(arrays), {
    format: 'pt',
    ...(lora.base ? { teamllm_base: JSON.stringify(lora.base) } : {}),
    teamllm_meta: JSON.stringify(lora.meta),
  });
  await writeJsonAtomic(path.join(dir, PEFT_CONFIG_FILE), peftConfigJson(lora.config, lora.baseModel));
}

function refuse(dir: string, what: string): never {
  throw new Error(`${dir}: ${what}; teamllm reads plain LoRA adapters (PEFT's LoraConfig without it)`);
}

/** Reads PEFT's folder (adapter_config.json + adapter_model.safetensors); no tensor backend needed. */
export function readPeftAdapter(dir: string): PeftLora {
  const configFile = path.join(dir, PEFT_CONFIG_FILE);
  if (!existsSync(configFile)) throw new Error(`${dir} has no ${PEFT_CONFIG_FILE} (a PEFT LoRA adapter folder has adapter_config.json and adapter_model.safetensors)`);
  const c = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  if (c.peft_type !== 'LORA') throw new Error(`${configFile}: peft_type is ${JSON.stringify(c.peft_type)}; teamllm reads LoRA adapters (peft_type "LORA")`);
  if (c.use_dora) refuse(dir, 'it is a DoRA adapter (use_dora)');
  if (c.use_rslora) refuse(dir, 'it scales by alpha/√r (use_rslora)');
  if (c.bias !== undefined && c.bias !== 'none') refuse(dir, `it trains biases (bias "${String(c.bias)}")`);
  if (c.fan_in_fan_out) refuse(dir, 'its weights are stored transposed (fan_in_fan_out: a GPT-2 Conv1D base)');
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    if (c[key] && Object.keys(c[key] as object).length) refuse(dir, `it gives some modules their own ${key === 'rank_pattern' ? 'rank' : 'alpha'} (${key})`);
  }
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length) refuse(dir, `it saves whole modules besides LoRA (modules_to_save: ${c.modules_to_save.join(', ')})`);
  const weightsFile = path.join(dir, PEFT_WEIGHTS_FILE);
  if (!existsSync(weightsFile)) {
    const bin = existsSync(path.join(dir, 'adapter_model.bin'));
    throw new Error(`${dir} has no ${PEFT_WEIGHTS_FILE}${bin ? ' (only adapter_model.bin, a pickle: save it again with safe_serialization=True, PEFT\'s default)' : ''}`);
  }
  const { tensors: stored, metadata } = decodeSafetensors(readFileSync(weightsFile));
  const tensors = new Map<string, NamedArray>();
  const targets = new Set<LoraTarget>();
  const layers = new Set<number>();
  for (const [key, t] of stored) {
    const m = PEFT_KEY.exec(key);
    if (!m) throw new Error(`${weightsFile}: tensor ${key} is not a LoRA matrix of a Llama-family projection (q/k/v/o_proj, gate/up/down_proj)`);
    if (t.shape.length !== 2 || t.dtype !== 'F32') throw new Error(`${weightsFile}: tensor ${key} is not a matrix`);
    tensors.set(m[1]!, { dtype: 'F32', shape: [...t.shape], data: t.data });
    layers.add(Number(m[2]));
    targets.add(LLAMA_LORA_TARGETS.find((x) => LLAMA_TARGET_SITE[x] === m[3])!);
  }
  if (tensors.size === 0) throw new Error(`${weightsFile} holds no LoRA tensors`);
  const rank = Number(c.r);
  const alpha = Number(c.lora_alpha ?? rank);
  if (!Number.isInteger(rank) || rank <= 0) throw new Error(`${configFile}: r is ${JSON.stringify(c.r)}, not a positive integer`);
  // Which projections and layers carry an adapter is what the tensors say (target_modules may be a regex).
  const sortedLayers = [...layers].sort((a, b) => a - b);
  const someLayers = c.layers_to_transform !== null && c.layers_to_transform !== undefined;
  const config = resolveLoraConfig(
    {
      rank,
      alpha,
      dropout: Number(c.lora_dropout ?? 0),
      targets: [...targets],
      ...(someLayers ? { layers: sortedLayers } : {}),
    },
    'llama',
  );
  for (const [name, t] of tensors) {
    const ok = name.endsWith('lora_A') ? t.shape[0] === rank : t.shape[1] === rank;
    if (!ok) throw new Error(`${weightsFile}: ${peftTensorName(name)} is [${t.shape.join(', ')}], not of rank r=${rank}`);
  }
  const out: PeftLora = {
    config,
    tensors,
    baseModel: typeof c.base_model_name_or_path === 'string' ? c.base_model_name_or_path : null,
    meta: metadata.teamllm_meta ? (JSON.parse(metadata.teamllm_meta) as Record<string, unknown>) : {},
  };
  if (metadata.teamllm_base) out.base = JSON.parse(metadata.teamllm_base) as BaseModelIdentity;
  return out;
}

/**
 * Checks that PEFT's adapter fits a llama-family model of `config` (every tensor the shape of that
 * model's projection; layers without tensors have none, however layers_to_transform spelled it),
 * and returns its configuration there with the tensors it must have.
 */
export function checkPeftFits(peft: PeftLora, config: GPTConfig): { config: LoraConfig; specs: LoraSpec[] } {
  if (config.arch !== 'llama') throw new Error("a PEFT adapter goes on a Llama-family base, not on teamllm's GPT");
  const present = [...new Set([...peft.tensors.keys()].map((n) => Number(n.split('.')[2])))].sort((a, b) => a - b);
  if (present.some((l) => l >= config.nLayer)) throw new Error(`the adapter has layers up to ${present.at(-1)}; the base has ${config.nLayer}: it was trained on another model`);
  const lora: LoraConfig = present.length === config.nLayer ? peft.config : { ...peft.config, layers: present };
  const specs = loraSpecs(lora, config);
  for (const s of specs) {
    const t = peft.tensors.get(s.name);
    if (!t) throw new Error(`the adapter has no ${peftTensorName(s.name)}, though it has ${lora.targets.join(', ')} on other layers`);
    if (t.shape.join('x') !== s.shape.join('x')) throw new Error(`${peftTensorName(s.name)} is [${t.shape.join(', ')}]; this base's projection needs [${s.shape.join(', ')}]: it was trained on another model`);
  }
  if (specs.length !== peft.tensors.size) throw new Error(`the adapter has ${peft.tensors.size} tensors; ${lora.targets.join(', ')} on ${present.length} layers make ${specs.length} (some layer lacks a projection the others have)`);
  return { config: lora, specs };
}

/**
 * PEFT's adapter as a LoraAdapter on `model` (the trainable llama-family model of its base). A
 * folder teamllm wrote is checked against its recorded base; one from elsewhere is taken to belong
 * to `model` when it fits it (checkPeftFits), and gets this model's identity.
 */
export function adapterFromPeft(peft: PeftLora, model: GPT, version?: string): LoraAdapter {
  if (peft.base) assertSameBase(peft.base, model, version);
  const { config, specs } = checkPeftFits(peft, model.config);
  const base: BaseModelIdentity = peft.base ?? { fingerprint: modelFingerprint(model), config: model.config, ...(version ? { version } : {}) };
  return new LoraAdapter(config, base, arraysToTensors(new Map(specs.map((s) => [s.name, peft.tensors.get(s.name)!]))), peft.meta);
}
