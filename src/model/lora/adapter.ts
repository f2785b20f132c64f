/**
 * LoRA (Hu et al., 2021): a frozen projection W gets a trainable low-rank update. On the GPT
 * (GPT-2 layout, W [in, out]):
 *
 *     y = x·W + (alpha / r) · dropout(x)·A·B,     A [in, r], B [r, out]
 *
 * on the llama family (Hugging Face layout, W [out, in]; PEFT's own shapes and formula):
 *
 *     y = x·Wᵀ + (alpha / r) · dropout(x)·Aᵀ·Bᵀ,   A [r, in], B [out, r]     (ΔW = (alpha/r)·B·A)
 *
 * with tensors named after the projection, `model.layers.N.self_attn.q_proj.lora_A` (PEFT's name
 * without its `base_model.model.` prefix and `.weight` suffix: peft.ts).
 *
 * A starts random (PEFT's Kaiming-uniform bound 1/√in) and B at zero, so a fresh adapter changes
 * nothing. The adapter plugs into the GPT through its projection hook (gpt.ts), reads its tensors
 * from the forward pass's parameter map when they are there (so training differentiates with
 * respect to them, functionally, like the base model's own training) and from itself otherwise.
 *
 * Files (a folder):
 *   adapter.safetensors   lora_A / lora_B tensors + metadata {format, lora, base}
 *   adapter_config.json   the same facts for people (PEFT-like field names) + free-form meta
 *
 * The base model's identity (a fingerprint of its configuration and weights) is stored with the
 * adapter; `attach`, `merge` and `LoraAdapter.load(dir, model)` refuse a different base.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { GPT, type Params, type ProjectionHook, type ProjectionSite } from '../gpt.ts';
import type { GPTConfig, LlamaArchConfig } from '../config.ts';
import { matMul } from '../ops.ts';
import { Random } from '../random.ts';
import { readSafetensors, writeSafetensors } from '../safetensors.ts';
import { arraysToTensors, tensorsToArrays } from '../model-files.ts';
import { readJson, writeJsonAtomic } from '../files.ts';
import { linearOutIn } from '../ops.ts';
import { expectedLlamaTensors } from '../import/llama-config.ts';
import { weightRow } from '../import/weights.ts';
import { isLlamaArch, toLlamaConfig } from '../config.ts';
import { type GptLoraTarget, type LoraConfig, type LoraConfigInput, type LoraTarget, LLAMA_LORA_TARGETS, LLAMA_TARGET_SITE, LORA_TARGETS, TARGET_PATH, TARGET_SITE, resolveLoraConfig } from './config.ts';

export const LORA_FORMAT = 'teamllm-lora/1';

/** What an adapter knows about the model it was trained on. */
export interface BaseModelIdentity {
  /** sha256 of the configuration and every weight (see modelFingerprint). */
  fingerprint: string;
  config: GPTConfig;
  /** Registry version or folder name, for messages. */
  version?: string;
}

export interface AdapterConfigFile {
  format: string;
  peft_type: 'LORA';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: LoraTarget[];
  layers_to_transform: number[] | null;
  base: BaseModelIdentity;
  numParameters: number;
  meta: Record<string, unknown>;
}

const fingerprints = new WeakMap<Params, string>();

/**
 * sha256 over the model's configuration and its weights (names, shapes and float32 bytes in
 * parameter order). The same weights give the same fingerprint, loaded from disk or in memory.
 */
export function modelFingerprint(model: GPT): string {
  const cached = fingerprints.get(model.params);
  if (cached) return cached;
  const h = createHash('sha256');
  const c = model.config;
  h.update(JSON.stringify([c.vocabSize, c.blockSize, c.nLayer, c.nHead, c.nEmbd, c.bias]));
  // The llama family's options beyond the shapes (RoPE, norm eps...); a GPT's fingerprint is unchanged.
  if (c.arch === 'llama') h.update(JSON.stringify(c));
  // A frozen matrix (held bf16/int8 while training an imported base) is hashed as its float32
  // values, a row block at a time: the same fingerprint as the float32 model of the same values.
  for (const { name, shape } of model.specs) {
    h.update(`${name}:${shape.join('x')};`);
    const frozen = model.frozen.get(name);
    if (!frozen) {
      const data = model.params.get(name)!.dataSync() as Float32Array;
      h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      continue;
    }
    const rowsPerBlock = Math.max(1, Math.floor(65536 / frozen.cols));
    const block = new Float32Array(rowsPerBlock * frozen.cols);
    for (let r0 = 0; r0 < frozen.rows; r0 += rowsPerBlock) {
      const r1 = Math.min(frozen.rows, r0 + rowsPerBlock);
      for (let r = r0; r < r1; r++) weightRow(frozen, r, block.subarray((r - r0) * frozen.cols, (r - r0 + 1) * frozen.cols));
      h.update(new Uint8Array(block.buffer, 0, (r1 - r0) * frozen.cols * 4));
    }
  }
  const fp = h.digest('hex');
  fingerprints.set(model.params, fp);
  return fp;
}

function describeBase(id: { fingerprint: string; config: GPTConfig; version?: string }): string {
  const c = id.config;
  const fp = /^[0-9a-f]{12,}$/.test(id.fingerprint) ? `fingerprint ${id.fingerprint.slice(0, 12)}, ` : '';
  return `${id.version ? `${id.version} ` : ''}(${fp}${c.nLayer} layers × ${c.nEmbd} wide, vocab ${c.vocabSize}, context ${c.blockSize})`;
}

/** Models with an adapter merged into their weights (the fingerprint then no longer says "base"). */
const mergedInto = new WeakMap<GPT, LoraAdapter>();

/** One adapter site: which tensors, and where its output goes. */
interface SiteEntry {
  target: LoraTarget;
  part: 0 | 1 | 2 | undefined;
  a: string;
  b: string;
}

export class LoraAdapter {
  readonly config: LoraConfig;
  readonly base: BaseModelIdentity;
  /** lora_A / lora_B tensors by name (`transformer.h.<i>.<target path>.lora_A|B`). */
  params: Map<string, Tensor>;
  /** Free-form facts saved with the adapter (training run, metrics...). */
  meta: Record<string, unknown>;
  private readonly sites: Map<string, SiteEntry[]>;

  constructor(config: LoraConfig, base: BaseModelIdentity, params: Map<string, Tensor>, meta: Record<string, unknown> = {}) {
    this.config = config;
    this.base = base;
    this.meta = meta;
    this.sites = new Map();
    const llama = isLlamaArch(base.config);
    for (const layer of this.layers) {
      for (const target of config.targets) {
        const { site, part } = llama ? { site: LLAMA_TARGET_SITE[target], part: undefined } : TARGET_SITE[target as GptLoraTarget];
        const key = `${layer}:${site}`;
        const prefix = llama ? `model.layers.${layer}.${site}` : `transformer.h.${layer}.${TARGET_PATH[target as GptLoraTarget]}`;
        const list = this.sites.get(key) ?? [];
        list.push({ target, part, a: `${prefix}.lora_A`, b: `${prefix}.lora_B` });
        this.sites.set(key, list);
      }
    }
    for (const s of this.specs()) {
      const t = params.get(s.name);
      if (!t) throw new Error(`LoRA adapter is missing ${s.name}`);
      if (t.shape.join('x') !== s.shape.join('x')) throw new Error(`LoRA tensor ${s.name} has shape [${t.shape}], expected [${s.shape}]`);
    }
    this.params = params;
  }

  /** A fresh adapter for `model`: A ~ U(-1/√in, 1/√in), B = 0 (so it changes nothing yet). */
  static create(model: GPT, config: LoraConfigInput = {}, options: { seed?: number; version?: string; meta?: Record<string, unknown> } = {}): LoraAdapter {
    const c = resolveLoraConfig(config, model.config.arch ?? 'gpt');
    const base: BaseModelIdentity = { fingerprint: modelFingerprint(model), config: model.config };
    if (options.version) base.version = options.version;
    if (c.layers?.some((l) => l >= model.config.nLayer)) throw new Error(`LoRA layers ${c.layers.join(',')} exceed the model's ${model.config.nLayer} layers`);
    const rng = new Random(options.seed ?? 1234);
    const params = new Map<string, Tensor>();
    for (const s of loraSpecs(c, model.config)) {
      const size = s.shape[0]! * s.shape[1]!;
      let data: Float32Array;
      if (s.kind === 'A') {
        const bound = 1 / Math.sqrt(s.fanIn);
        data = new Float32Array(size);
        for (let i = 0; i < size; i++) data[i] = (2 * rng.uniform() - 1) * bound;
      } else data = new Float32Array(size);
      params.set(s.name, tf.keep(tf.tensor(data, s.shape, 'float32')));
    }
    return new LoraAdapter(c, base, params, options.meta ?? {});
  }

  /** alpha / rank. */
  get scale(): number {
    return this.config.alpha / this.config.rank;
  }

  get layers(): number[] {
    return this.config.layers ?? [...Array(this.base.config.nLayer).keys()];
  }

  specs(): LoraSpec[] {
    return loraSpecs(this.config, this.base.config);
  }

  /** Tensor names in a stable order (the order of `paramList`). */
  get paramNames(): string[] {
    return this.specs().map((s) => s.name);
  }

  paramList(): Tensor[] {
    return this.paramNames.map((n) => this.params.get(n)!);
  }

  get numParameters(): number {
    return this.specs().reduce((n, s) => n + s.shape[0] * s.shape[1], 0);
  }

  /** Trainable share of the base model's parameters (0.03 = 3%). */
  share(model: GPT): number {
    return this.numParameters / model.numParameters;
  }

  /** Replaces the tensors (disposing old ones that are not reused), e.g. after an optimizer step. */
  setParams(next: Map<string, Tensor>): void {
    for (const [name, t] of this.params) if (next.get(name) !== t) t.dispose();
    this.params = next;
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
  }

  /** Throws a clear error when `model` is not the base this adapter was trained on. */
  checkBase(model: GPT, version?: string): void {
    assertSameBase(this.base, model, version, this.meta.name === undefined ? undefined : String(this.meta.name));
  }

  /**
   * The projection hook applying this adapter (unmerged). Tensors come from the forward pass's
   * parameter map when it has them (training), else from the adapter.
   */
  hook(): ProjectionHook {
    const scale = this.scale;
    const dropout = this.config.dropout;
    const llama = isLlamaArch(this.base.config);
    const hook: ProjectionHook = (x, y, ctx) => {
      const entries = this.sites.get(`${ctx.layer}:${ctx.site}`);
      if (!entries) return y;
      const get = (name: string) => ctx.params.get(name) ?? this.params.get(name)!;
      // [out, in] layout: x·Aᵀ·Bᵀ, each site its own projection.
      // The scale multiplies the rank-r intermediate [.., r], not the output [.., out]: the same
      // product (exactly, for a power-of-two alpha/r), and a pass over r columns instead of out
      // (forward and gradient), which for an MLP projection was 4864 columns per row.
      if (llama) return tf.add(y, linearOutIn(tf.mul(linearOutIn(ctx.dropout(x, dropout), get(entries[0]!.a)), scale), get(entries[0]!.b)));
      const delta = (e: SiteEntry) => tf.mul(matMul(matMul(ctx.dropout(x, dropout), get(e.a)), get(e.b)), scale);
      if (ctx.site !== 'attn.c_attn') return tf.add(y, delta(entries[0]!));
      // q, k, v are thirds of one fused projection: add each target's update to its third.
      const width = y.shape[y.rank - 1]! / 3;
      const parts: Tensor[] = [];
      for (const part of [0, 1, 2] as const) {
        const e = entries.find((x2) => x2.part === part);
        parts.push(e ? delta(e) : tf.zeros([...y.shape.slice(0, -1), width]));
      }
      return tf.add(y, tf.concat(parts, y.rank - 1));
    };
    if (llama) {
      hook.lowRank = (ctx) => {
        const entries = this.sites.get(`${ctx.layer}:${ctx.site}`);
        if (!entries || (ctx.training && dropout > 0)) return undefined;
        const get = (name: string) => ctx.params.get(name) ?? this.params.get(name)!;
        return { a: get(entries[0]!.a), b: get(entries[0]!.b), scale };
      };
    }
    return hook;
  }

  /** Applies the adapter to `model` (unmerged: base weights untouched). */
  attach(model: GPT, version?: string): void {
    this.checkBase(model, version);
    model.projectionHook = this.hook();
  }

  static detach(model: GPT): void {
    model.projectionHook = undefined;
  }

  /**
   * ΔW per projection weight name: (alpha/r)·A·B [in, out] on the GPT (q/k/v placed in their thirds
   * of c_attn), (alpha/r)·B·A [out, in] on the llama family.
   */
  deltas(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const C = this.base.config.nEmbd;
    for (const [key, entries] of this.sites) {
      const [layer, site] = key.split(':') as [string, ProjectionSite];
      if (isLlamaArch(this.base.config)) {
        const e = entries[0]!;
        out.set(`model.layers.${layer}.${site}.weight`, tf.tidy(() => tf.mul(tf.matMul(this.params.get(e.b)! as tf.Tensor2D, this.params.get(e.a)! as tf.Tensor2D), this.scale)));
        continue;
      }
      const weight = `transformer.h.${layer}.${site}.weight`;
      out.set(
        weight,
        tf.tidy(() => {
          const d = (e: SiteEntry) => tf.mul(tf.matMul(this.params.get(e.a)! as tf.Tensor2D, this.params.get(e.b)! as tf.Tensor2D), this.scale);
          if (site !== 'attn.c_attn') return d(entries[0]!);
          return tf.concat(
            ([0, 1, 2] as const).map((part) => {
              const e = entries.find((x) => x.part === part);
              return e ? d(e) : tf.zeros([C, C]);
            }),
            1,
          );
        }),
      );
    }
    return out;
  }

  /**
   * The base parameters with this adapter merged in (W + ΔW), as a new map: merged weights are
   * new tensors, every other entry is the model's own tensor (do not dispose those).
   */
  mergedParams(model: GPT): Params {
    this.checkBase(model);
    const next: Params = new Map(model.params);
    const deltas = this.deltas();
    for (const [name, d] of deltas) {
      // A frozen matrix (imported base) is widened to float32 for the sum.
      next.set(name, tf.keep(tf.tidy(() => tf.add(model.params.get(name) ?? tf.tensor(model.weightValues(name), d.shape), d))));
      d.dispose();
    }
    return next;
  }

  /** Merges into the model's weights in place (faster inference); `unmerge` restores the base. */
  merge(model: GPT): void {
    const next = this.mergedParams(model);
    model.projectionHook = undefined;
    model.setParams(next);
    mergedInto.set(model, this);
  }

  /** Subtracts the merged update again. The base weights come back up to float32 rounding. */
  unmerge(model: GPT): void {
    if (mergedInto.get(model) !== this) throw new Error('This adapter is not merged into that model');
    const next: Params = new Map(model.params);
    const deltas = this.deltas();
    for (const [name, d] of deltas) {
      next.set(name, tf.keep(tf.sub(model.params.get(name)!, d)));
      d.dispose();
    }
    model.setParams(next);
    mergedInto.delete(model);
  }

  /** A model folder's GPT with this adapter merged, as a new GPT that shares nothing it must not free. */
  mergedModel(model: GPT): GPT {
    const merged = this.mergedParams(model);
    const copy = new Map<string, Tensor>();
    for (const [name, t] of merged) copy.set(name, t === model.params.get(name) ? tf.keep(tf.clone(t)) : t);
    const frozen = new Map([...model.frozen].filter(([name]) => !copy.has(name)));
    return new GPT(model.config, copy, frozen);
  }

  configFile(): AdapterConfigFile {
    return {
      format: LORA_FORMAT,
      peft_type: 'LORA',
      r: this.config.rank,
      lora_alpha: this.config.alpha,
      lora_dropout: this.config.dropout,
      target_modules: [...this.config.targets],
      layers_to_transform: this.config.layers ?? null,
      base: this.base,
      numParameters: this.numParameters,
      meta: this.meta,
    };
  }

  /** Writes adapter.safetensors and adapter_config.json into `dir` (each file atomically). */
  async save(dir: string): Promise<void> {
    const arrays = tensorsToArrays(this.paramNames.map((n) => [n, this.params.get(n)!] as [string, Tensor]));
    await writeSafetensors(path.join(dir, 'adapter.safetensors'), arrays, {
      format: LORA_FORMAT,
      lora: JSON.stringify({ rank: this.config.rank, alpha: this.config.alpha, dropout: this.config.dropout, targets: this.config.targets, ...(this.config.layers ? { layers: this.config.layers } : {}) }),
      base: JSON.stringify(this.base),
    });
    await writeJsonAtomic(path.join(dir, 'adapter_config.json'), this.configFile());
  }

  /**
   * Reads an adapter folder. With `model`, checks that it is the adapter's base (a clear error
   * otherwise) before anything else is allocated.
   */
  static async load(dir: string, model?: GPT, version?: string): Promise<LoraAdapter> {
    const { tensors, metadata } = await readSafetensors(path.join(dir, 'adapter.safetensors'));
    if (metadata.format !== LORA_FORMAT) {
      throw new Error(`${dir} is not a teamllm LoRA adapter (format "${metadata.format ?? 'none'}", expected ${LORA_FORMAT})`);
    }
    let meta: Record<string, unknown> = {};
    try {
      meta = (await readJson<AdapterConfigFile>(path.join(dir, 'adapter_config.json'))).meta ?? {};
    } catch {
      // adapter_config.json is for people; the safetensors metadata is enough to load
    }
    const base = JSON.parse(metadata.base ?? 'null') as BaseModelIdentity | null;
    if (!base?.fingerprint || !base.config) throw new Error(`${dir}: the adapter does not say which base model it belongs to`);
    const config = resolveLoraConfig(JSON.parse(metadata.lora ?? '{}') as LoraConfigInput, base.config.arch ?? 'gpt');
    if (model) assertSameBase(base, model, version, meta.name === undefined ? undefined : String(meta.name));
    return new LoraAdapter(config, base, arraysToTensors(tensors), meta);
  }
}

/** Throws a clear error when `model` is not the base model `base` describes. */
export function assertSameBase(base: BaseModelIdentity, model: GPT, version?: string, adapterName?: string): void {
  if (mergedInto.get(model)) {
    throw new Error('This model has a LoRA adapter merged into its weights; unmerge it before loading or merging another adapter');
  }
  const c = model.config;
  const b = base.config;
  const shapeOk = c.nLayer === b.nLayer && c.nEmbd === b.nEmbd && c.vocabSize === b.vocabSize && c.nHead === b.nHead && c.blockSize === b.blockSize;
  const fp = shapeOk ? modelFingerprint(model) : 'different-shape';
  if (shapeOk && fp === base.fingerprint) return;
  const here = describeBase({ fingerprint: fp, config: c, ...(version ? { version } : {}) });
  throw new Error(
    `LoRA adapter${adapterName ? ` "${adapterName}"` : ''} was trained on base model ${describeBase(base)}, ` +
      `but the model it is being loaded onto is ${here}${shapeOk ? ' (same shape, different weights)' : ''}. ` +
      'An adapter only works on the exact base it was trained on: load that base, or fine-tune a new adapter on this one.',
  );
}

/** One adapter tensor: its name, shape, whether it is A or B, and the fan-in of its projection (A's init). */
export interface LoraSpec {
  name: string;
  shape: [number, number];
  kind: 'A' | 'B';
  fanIn: number;
}

/** The adapter tensors a configuration puts on a model of `model`'s shape, in a stable order. */
export function loraSpecs(c: LoraConfig, model: GPTConfig): LoraSpec[] {
  if (isLlamaArch(model)) return llamaSpecsFor(c, model);
  const C = model.nEmbd;
  const dims: Record<GptLoraTarget, [number, number]> = {
    q: [C, C],
    k: [C, C],
    v: [C, C],
    attn_out: [C, C],
    mlp_in: [C, 4 * C],
    mlp_out: [4 * C, C],
  };
  const layers = c.layers ?? [...Array(model.nLayer).keys()];
  const out: LoraSpec[] = [];
  for (const layer of [...layers].sort((a, b) => a - b)) {
    for (const target of LORA_TARGETS) {
      if (!c.targets.includes(target)) continue;
      const [nIn, nOut] = dims[target];
      const prefix = `transformer.h.${layer}.${TARGET_PATH[target]}`;
      out.push({ name: `${prefix}.lora_A`, shape: [nIn, c.rank], kind: 'A', fanIn: nIn });
      out.push({ name: `${prefix}.lora_B`, shape: [c.rank, nOut], kind: 'B', fanIn: nIn });
    }
  }
  return out;
}

/** PEFT's shapes on [out, in] weights: lora_A [r, in], lora_B [out, r]; the weight table says each projection's size. */
function llamaSpecsFor(c: LoraConfig, model: LlamaArchConfig): LoraSpec[] {
  const shapes = expectedLlamaTensors(toLlamaConfig(model));
  const layers = c.layers ?? [...Array(model.nLayer).keys()];
  const out: LoraSpec[] = [];
  for (const layer of [...layers].sort((a, b) => a - b)) {
    for (const target of LLAMA_LORA_TARGETS) {
      if (!c.targets.includes(target)) continue;
      const prefix = `model.layers.${layer}.${LLAMA_TARGET_SITE[target]}`;
      const [nOut, nIn] = shapes.get(`${prefix}.weight`)! as [number, number];
      out.push({ name: `${prefix}.lora_A`, shape: [c.rank, nIn], kind: 'A', fanIn: nIn });
      out.push({ name: `${prefix}.lora_B`, shape: [nOut, c.rank], kind: 'B', fanIn: nIn });
    }
  }
  return out;
}
