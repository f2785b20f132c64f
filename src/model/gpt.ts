/**
 * A decoder-only transformer that reads like nanoGPT's model.py: a config object, pre-norm blocks
 * of causal self-attention and an MLP, GPT-2 style initialisation, dropout. One forward for two
 * families (config.ts has the table):
 *
 *   x = embed(ids) (+ learned positions: gpt)
 *   per layer:  x += out_proj(attention(qkv(norm₁(x))))       qkv: gpt's fused c_attn, or llama's
 *               x += mlp(norm₂(x))                               q/k/v (+ q/k norm, RoPE, repeat_kv)
 *   logits = head(norm(x))                                     mlp: GELU (gpt) or SwiGLU (llama)
 *
 * The model is functional: parameters live in a name -> tensor map, and `forward` takes that map,
 * so gradients are taken with respect to plain tensors and optimizers swap tensors in and out.
 * gpt's names follow GPT-2's checkpoints (weights [in, out] like GPT-2's Conv1D); llama's are a
 * Hugging Face checkpoint's, names and [out, in] layout (llama-config.ts' table), so an imported
 * Llama/Qwen checkpoint's tensors are this model's parameters as they are.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { type GPTConfig, type LlamaArchConfig, validateConfig, countParameters, isLlamaArch, toLlamaConfig } from './config.ts';
import { expectedLlamaTensors, ropeInverseFrequencies } from './import/llama-config.ts';
import { linearOutIn, repeatKv, rmsNorm, rope, ropeTables, swiglu } from './ops.ts';
import { Random } from './random.ts';
import { SeededDropout, splitHeads, mergeHeads, type BlockWeights, type ForwardOps, type ForwardOptions, type KVCache, type LayerCache, type Params, type PassOps, type ProjectionHook, type ProjectionSite } from './forward-ops.ts';
import { PORTABLE_FORWARD_OPS } from './portable-forward-ops.ts';
import { NATIVE_FORWARD_OPS } from './native/forward-ops.ts';

export type { ForwardOptions, KVCache, LayerCache, Params, ProjectionHook, ProjectionHookContext, ProjectionSite } from './forward-ops.ts';

export interface ParamSpec {
  name: string;
  shape: number[];
  /** Weight decay applies to matrices and embeddings, not to biases and norms. */
  decay: boolean;
  init: 'normal' | 'residual' | 'zeros' | 'ones';
}

/** The parameters of a configuration, in a stable order. */
export function parameterSpecs(config: GPTConfig): ParamSpec[] {
  if (isLlamaArch(config)) return llamaParameterSpecs(config);
  const { vocabSize: V, blockSize, nLayer, nEmbd: C, bias } = config;
  const specs: ParamSpec[] = [
    { name: 'transformer.wte.weight', shape: [V, C], decay: true, init: 'normal' },
    { name: 'transformer.wpe.weight', shape: [blockSize, C], decay: true, init: 'normal' },
  ];
  const norm = (name: string) => {
    specs.push({ name: `${name}.weight`, shape: [C], decay: false, init: 'ones' });
    if (bias) specs.push({ name: `${name}.bias`, shape: [C], decay: false, init: 'zeros' });
  };
  const lin = (name: string, nIn: number, nOut: number, residual = false) => {
    specs.push({ name: `${name}.weight`, shape: [nIn, nOut], decay: true, init: residual ? 'residual' : 'normal' });
    if (bias) specs.push({ name: `${name}.bias`, shape: [nOut], decay: false, init: 'zeros' });
  };
  for (let i = 0; i < nLayer; i++) {
    const p = `transformer.h.${i}`;
    norm(`${p}.ln_1`);
    lin(`${p}.attn.c_attn`, C, 3 * C);
    lin(`${p}.attn.c_proj`, C, C, true);
    norm(`${p}.ln_2`);
    lin(`${p}.mlp.c_fc`, C, 4 * C);
    lin(`${p}.mlp.c_proj`, 4 * C, C, true);
  }
  norm('transformer.ln_f');
  return specs;
}

/**
 * The llama family's parameters are the imported models' tensor table (llama-config.ts), so the
 * two cannot drift apart; the projections into the residual stream get GPT-2's scaled init.
 */
function llamaParameterSpecs(config: LlamaArchConfig): ParamSpec[] {
  return [...expectedLlamaTensors(toLlamaConfig(config))].map(([name, shape]) => {
    if (shape.length === 2) return { name, shape, decay: true, init: /\.(o_proj|down_proj)\.weight$/.test(name) ? 'residual' : 'normal' };
    return { name, shape, decay: false, init: name.endsWith('.bias') ? 'zeros' : 'ones' };
  });
}

/** Where each family keeps the tensors the shared layer loop reads. */
interface Names {
  embed: string;
  layer(i: number): string;
  norm1: string;
  norm2: string;
  finalNorm: string;
  /** The untied output head; undefined: the embedding table. */
  head?: string;
}

const GPT_NAMES: Names = { embed: 'transformer.wte.weight', layer: (i) => `transformer.h.${i}`, norm1: 'ln_1', norm2: 'ln_2', finalNorm: 'transformer.ln_f' };
const LLAMA_NAMES: Names = { embed: 'model.embed_tokens.weight', layer: (i) => `model.layers.${i}`, norm1: 'input_layernorm', norm2: 'post_attention_layernorm', finalNorm: 'model.norm' };

/** One forward pass's context, handed to the pieces of the layer loop. */
interface Step {
  ops: ForwardOps;
  p: Params;
  pass: PassOps;
  hook: ProjectionHook | undefined;
  /** Layer i's linear projection at `site` (its adapter applied). */
  project(layer: number, site: ProjectionSite, x: Tensor): Tensor;
  cache: CacheStep | undefined;
  /** RoPE's cos and sin for this pass's positions (llama). */
  rotary: { cos: Tensor; sin: Tensor } | undefined;
}

export class GPT {
  readonly config: GPTConfig;
  readonly specs: ParamSpec[];
  params: Params;
  /** Optional adapter on the linear projections (LoRA); unset, the model is the plain GPT. */
  projectionHook: ProjectionHook | undefined;
  /**
   * On the native backend, run the native op set (default) or the portable one on the native
   * kernels (false: for the benchmarks' side-by-side rows and the tests that compare the two).
   */
  fusedOnNative = true;

  /** Where this family keeps its tensors. */
  private readonly names: Names;
  /** RoPE's inverse frequencies, scaling applied (llama; the inference engine's own function). */
  private readonly invFreq: Float64Array | undefined;

  constructor(config: GPTConfig, params: Params) {
    this.config = validateConfig(config);
    this.specs = parameterSpecs(this.config);
    const c = this.config;
    this.names = !isLlamaArch(c) ? GPT_NAMES : c.tiedHead ? LLAMA_NAMES : { ...LLAMA_NAMES, head: 'lm_head.weight' };
    this.invFreq = isLlamaArch(c) ? ropeInverseFrequencies(c) : undefined;
    for (const s of this.specs) {
      const t = params.get(s.name);
      if (!t) throw new Error(`Missing parameter ${s.name}`);
      if (t.shape.join('x') !== s.shape.join('x')) {
        throw new Error(`Parameter ${s.name} has shape [${t.shape}], expected [${s.shape}]`);
      }
    }
    this.params = params;
    this.projectionHook = undefined;
  }

  /** A freshly initialised model: N(0, 0.02), residual projections N(0, 0.02/√(2·nLayer)). */
  static create(config: GPTConfig, seed = 1337): GPT {
    const c = validateConfig(config);
    const rng = new Random(seed);
    const params: Params = new Map();
    for (const s of parameterSpecs(c)) {
      const size = s.shape.reduce((a, b) => a * b, 1);
      let data: Float32Array;
      if (s.init === 'zeros') data = new Float32Array(size);
      else if (s.init === 'ones') data = new Float32Array(size).fill(1);
      else data = rng.normalArray(size, s.init === 'residual' ? 0.02 / Math.sqrt(2 * c.nLayer) : 0.02);
      params.set(s.name, tf.keep(tf.tensor(data, s.shape, 'float32')));
    }
    return new GPT(c, params);
  }

  get numParameters(): number {
    return countParameters(this.config);
  }

  /** Parameter names in a stable order (the order of `paramList`). */
  get paramNames(): string[] {
    return this.specs.map((s) => s.name);
  }

  paramList(): Tensor[] {
    return this.specs.map((s) => this.params.get(s.name)!);
  }

  /** Replaces the parameters (disposing the old tensors that are not reused). */
  setParams(next: Params): void {
    for (const [name, t] of this.params) if (next.get(name) !== t) t.dispose();
    this.params = next;
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
  }

  /**
   * Logits [B, T, V] for token ids [B, T] (int32). `params` defaults to the model's own; pass a
   * list in `paramNames` order to differentiate with respect to it.
   */
  forward(idx: Tensor, options: ForwardOptions = {}, params?: Params | Tensor[]): Tensor {
    const [B, T] = idx.shape as [number, number];
    this.checkLength(T);
    const ops = this.ops;
    const p = this.resolve(params);
    return tf.reshape(this.head(ops, p, this.trunk(ops, p, idx, options)), [B, T, this.config.vocabSize]);
  }

  /**
   * The final hidden states [B, T, C] (after the last LayerNorm, before the tied output
   * projection), for heads other than the language-model head (reward, value); differentiable
   * with respect to `params`. Always on the portable ops: the reward and value models were
   * trained and gated on their numerics, and the fused kernels would shift them on native.
   */
  hidden(idx: Tensor, options: ForwardOptions = {}, params?: Params | Tensor[]): Tensor {
    this.checkLength(idx.shape[1]!);
    return this.trunk(PORTABLE_FORWARD_OPS, this.resolve(params), idx, options);
  }

  /** Mean cross-entropy of next-token `targets` [B, T] (int32; -1 = ignore). */
  loss(idx: Tensor, targets: Tensor, options: ForwardOptions = {}, params?: Params | Tensor[]): tf.Scalar {
    const ops = this.ops;
    const p = this.resolve(params);
    return ops.crossEntropy(this.head(ops, p, this.trunk(ops, p, idx, options)), tf.reshape(targets, [-1]));
  }

  /**
   * The op set, chosen by backend: the native kernels on 'native' (unless `fusedOnNative` is
   * off), the portable ops everywhere else. In training with dropout the model's own masks on
   * native are that backend's (a hash of the step seed), not tf.dropout's.
   */
  private get ops(): ForwardOps {
    return this.fusedOnNative && tf.getBackend() === 'native' ? NATIVE_FORWARD_OPS : PORTABLE_FORWARD_OPS;
  }

  /** An empty KV cache. */
  emptyCache(): KVCache {
    return { length: 0, layers: [] };
  }

  /**
   * Runs new tokens [B, n] through the model, appending their keys and values to `cache`, and
   * returns the logits of the last position [B, V]. The caller owns (and disposes) the cache.
   */
  forwardCached(idx: Tensor, cache: KVCache): Tensor {
    const n = idx.shape[1]!;
    if (cache.length + n > this.config.blockSize) {
      throw new Error(`KV cache overflow: ${cache.length} + ${n} > block size ${this.config.blockSize}`);
    }
    const ops = this.ops;
    const p = this.params;
    return advanceCache(cache, n, (next) => {
      const x = this.trunk(ops, p, idx, {}, { length: cache.length, past: cache.layers, out: next });
      const [B, T, C] = x.shape as [number, number, number];
      const last = T === 1 ? tf.reshape(x, [B, C]) : tf.reshape(tf.slice(x, [0, T - 1, 0], [B, 1, C]), [B, C]);
      return this.head(ops, p, last);
    });
  }

  static disposeCache(cache: KVCache): void {
    for (const l of cache.layers) {
      l.kT.dispose();
      l.v.dispose();
    }
    cache.layers = [];
    cache.length = 0;
  }

  private checkLength(T: number): void {
    if (T > this.config.blockSize) {
      throw new Error(`Cannot forward a sequence of length ${T}, block size is only ${this.config.blockSize}`);
    }
  }

  private resolve(params?: Params | Tensor[]): Params {
    if (!params) return this.params;
    if (params instanceof Map) return params;
    const m: Params = new Map();
    this.specs.forEach((s, i) => m.set(s.name, params[i]!));
    return m;
  }

  /**
   * Embeddings + blocks + final norm: [B, T, C]. The one layer loop of both families and every
   * backend; it leaves the op set's generic path only for the native kernels that do a whole GPT
   * block at once, and only where nothing has to see inside the block (an adapter hook, the cache
   * being written).
   */
  private trunk(ops: ForwardOps, p: Params, idx: Tensor, options: ForwardOptions, cache?: CacheStep): Tensor {
    const { nLayer, nHead } = this.config;
    const [B, T] = idx.shape as [number, number];
    const past = cache?.length ?? 0;
    const training = options.training ?? false;
    const seed = options.dropoutSeed ?? 0;
    const pass = ops.pass(nHead, training ? this.config.dropout : 0, seed);
    const hook = this.projectionHook;
    // Adapters' own stream, so attaching one leaves the model's masks as they were.
    const adapterMasks = new SeededDropout(seed * 1000 + 500);
    const adapterDropout = (x: Tensor, rate: number) => (training ? adapterMasks.apply(x, rate) : x);
    const llama = isLlamaArch(this.config);
    // llama's matrices are [out, in] (Hugging Face's layout), gpt's [in, out].
    const linear = llama ? linearOutIn : ops.linear;
    const project = (layer: number, site: ProjectionSite, x: Tensor): Tensor => {
      const h = this.names.layer(layer);
      const y = linear(x, p.get(`${h}.${site}.weight`)!, p.get(`${h}.${site}.bias`));
      return hook ? hook(x, y, { layer, site, params: p, training, dropout: adapterDropout }) : y;
    };
    const s: Step = { ops, p, pass, hook, project, cache, rotary: llama ? ropeTables(this.invFreq!, past, T) : undefined };
    // The native whole-block kernels are GPT blocks.
    const gpt = !llama;
    const decode = gpt && ops.decodeLayer && cache && B === 1 && T === 1 && past > 0 && cache.past.length === nLayer && !hook;
    let x = pass.dropEmbeddings(this.embed(p, idx, past));
    for (let i = 0; i < nLayer; i++) {
      if (decode) {
        const [y, kT, v] = ops.decodeLayer!(x, cache.past[i]!.kT, cache.past[i]!.v, blockWeights(p, i));
        cache.out[i] = { kT, v };
        x = y;
        continue;
      }
      const fused = gpt && !cache && !hook ? pass.block?.(x, blockWeights(p, i), i) : undefined;
      if (fused) {
        x = fused;
        continue;
      }
      const layer = this.names.layer(i);
      x = tf.add(x, pass.dropResidual(this.attention(s, i, this.norm(s, x, `${layer}.${this.names.norm1}`)), i, 'attention'));
      x = tf.add(x, pass.dropResidual(this.mlp(s, i, this.norm(s, x, `${layer}.${this.names.norm2}`)), i, 'mlp'));
    }
    return this.norm(s, x, this.names.finalNorm);
  }

  /** Token embeddings, plus learned positions (gpt; llama's positions are RoPE's, in attention). */
  private embed(p: Params, idx: Tensor, past: number): Tensor {
    const tok = tf.gather(p.get(this.names.embed)!, idx); // [B, T, C]
    if (isLlamaArch(this.config)) return tok;
    const pos = tf.slice(p.get('transformer.wpe.weight')!, [past, 0], [idx.shape[1]!, -1]); // [T, C]
    return tf.add(tok, pos);
  }

  /** LayerNorm (gpt) or RMSNorm (llama) with the weights under `name`. */
  private norm(s: Step, x: Tensor, name: string): Tensor {
    const w = s.p.get(`${name}.weight`)!;
    const c = this.config;
    return isLlamaArch(c) ? rmsNorm(x, w, c.normEps) : s.ops.layerNorm(x, w, s.p.get(`${name}.bias`));
  }

  /** Causal self-attention of layer i over the normed stream h [B, T, C], output projection included. */
  private attention(s: Step, i: number, h: Tensor): Tensor {
    const llama = isLlamaArch(this.config);
    const qkv = llama ? this.llamaQkv(s, i, h) : s.project(i, 'attn.c_attn', h);
    const attended = s.cache ? cachedAttention(s.ops, qkv, this.config.nHead, i, s.cache) : s.pass.selfAttention(qkv, i);
    return s.project(i, llama ? 'self_attn.o_proj' : 'attn.c_proj', attended);
  }

  /**
   * Llama's queries, keys and values in GPT's fused layout [B, T, 3·H·d]: q/k/v projections,
   * per-head q/k RMSNorm (Qwen3), RoPE at this pass's positions, and each key/value head repeated
   * for its query heads (grouped-query attention), so attention and the KV cache are shared.
   */
  private llamaQkv(s: Step, i: number, h: Tensor): Tensor {
    const c = this.config as LlamaArchConfig;
    const [B, T] = h.shape as [number, number];
    const { nHead: H, nKvHead: G, headDim: d } = c;
    const { cos, sin } = s.rotary!;
    const positioned = (site: ProjectionSite, heads: number, norm: string) => {
      let y = tf.reshape(s.project(i, site, h), [B, T, heads, d]);
      if (c.qkNorm) y = rmsNorm(y, s.p.get(`${this.names.layer(i)}.self_attn.${norm}.weight`)!, c.normEps);
      return tf.reshape(rope(y, cos, sin), [B, T, heads * d]);
    };
    const q = positioned('self_attn.q_proj', H, 'q_norm');
    const k = positioned('self_attn.k_proj', G, 'k_norm');
    const v = s.project(i, 'self_attn.v_proj', h);
    return tf.concat([q, repeatKv(k, G, H / G), repeatKv(v, G, H / G)], 2);
  }

  /** Layer i's MLP: GELU (gpt) or SwiGLU (llama). */
  private mlp(s: Step, i: number, m: Tensor): Tensor {
    if (isLlamaArch(this.config)) {
      return s.project(i, 'mlp.down_proj', swiglu(s.project(i, 'mlp.gate_proj', m), s.project(i, 'mlp.up_proj', m)));
    }
    // An adapter on c_fc must see its output before GELU: no fused up-projection then.
    const w = `${this.names.layer(i)}.mlp.c_fc`;
    const up = s.hook ? s.ops.gelu(s.project(i, 'mlp.c_fc', m)) : s.ops.linearGelu(m, s.p.get(`${w}.weight`)!, s.p.get(`${w}.bias`));
    return s.project(i, 'mlp.c_proj', up);
  }

  /** The output projection of x [.., C] (the embedding table when tied): logits [N, V]. */
  private head(ops: ForwardOps, p: Params, x: Tensor): Tensor {
    return ops.head(tf.reshape(x, [-1, this.config.nEmbd]), p.get(this.names.head ?? this.names.embed)!);
  }
}

/** A cached forward's view of the cache: positions already in it, their layers, the layers it writes. */
interface CacheStep {
  length: number;
  past: LayerCache[];
  out: LayerCache[];
}

/** Attention of the new positions over the cached ones and themselves; appends their keys and values. */
function cachedAttention(ops: ForwardOps, qkv: Tensor, nHead: number, layer: number, cache: CacheStep): Tensor {
  let { q, kT, v } = splitHeads(qkv, nHead);
  const prev = cache.past[layer];
  if (prev) {
    kT = tf.concat([prev.kT, kT], 3);
    v = tf.concat([prev.v, v], 2);
  }
  cache.out[layer] = { kT, v };
  return mergeHeads(ops.causalAttention(q, kT, v, cache.length));
}

/** Block i's weights by their GPT-2 names. */
function blockWeights(p: Params, i: number): BlockWeights {
  const get = (name: string) => p.get(`transformer.h.${i}.${name}`);
  return {
    ln1w: get('ln_1.weight')!,
    ln1b: get('ln_1.bias'),
    attnw: get('attn.c_attn.weight')!,
    attnb: get('attn.c_attn.bias'),
    projw: get('attn.c_proj.weight')!,
    projb: get('attn.c_proj.bias'),
    ln2w: get('ln_2.weight')!,
    ln2b: get('ln_2.bias'),
    fcw: get('mlp.c_fc.weight')!,
    fcb: get('mlp.c_fc.bias'),
    fc2w: get('mlp.c_proj.weight')!,
    fc2b: get('mlp.c_proj.bias'),
  };
}

/**
 * Runs `step` (which fills `next` with every layer's longer keys and values and returns the last
 * position's logits) in a tidy scope, then swaps `cache` to the new layers and frees the old ones.
 */
function advanceCache(cache: KVCache, n: number, step: (next: LayerCache[]) => Tensor): Tensor {
  const next: LayerCache[] = [];
  const logits = tf.tidy(() => {
    const out = step(next);
    for (const l of next) {
      tf.keep(l.kT);
      tf.keep(l.v);
    }
    return out;
  });
  for (const l of cache.layers) {
    l.kT.dispose();
    l.v.dispose();
  }
  cache.layers = next;
  cache.length += n;
  return logits;
}
