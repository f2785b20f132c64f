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
import { defaultFrozenKernels, frozenEmbedding, frozenLinear, frozenLoraLinear, type FrozenKernels } from './frozen-linear.ts';
import { dequantize, type WeightMatrix } from './import/weights.ts';

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
  /** Logits made at once by the loss, at most (past that, chunks of rows; 2^25 floats = 128 MB). */
  lossChunkElements = 2 ** 25;

  /** Where this family keeps its tensors. */
  private readonly names: Names;
  /** RoPE's inverse frequencies, scaling applied (llama; the inference engine's own function). */
  private readonly invFreq: Float64Array | undefined;

  /**
   * Matrices held frozen in their stored dtype instead of as tensors (LoRA on an imported base:
   * src/model/lora/imported-base.ts). Their products run the serving kernels (./frozen-linear.ts);
   * they get no gradient, and `params` has no entry for them.
   */
  readonly frozen: ReadonlyMap<string, WeightMatrix>;
  /** Which kernels the frozen matrices' products run. */
  frozenKernels: FrozenKernels;

  constructor(config: GPTConfig, params: Params, frozen?: ReadonlyMap<string, WeightMatrix>) {
    this.config = validateConfig(config);
    this.specs = parameterSpecs(this.config);
    const c = this.config;
    this.names = !isLlamaArch(c) ? GPT_NAMES : c.tiedHead ? LLAMA_NAMES : { ...LLAMA_NAMES, head: 'lm_head.weight' };
    this.invFreq = isLlamaArch(c) ? ropeInverseFrequencies(c) : undefined;
    this.frozen = frozen ?? new Map();
    if (this.frozen.size && !isLlamaArch(c)) throw new Error('frozen matrices are [out, in]: only the llama family holds them');
    this.frozenKernels = defaultFrozenKernels();
    for (const s of this.specs) {
      const f = this.frozen.get(s.name);
      if (f) {
        if (params.has(s.name)) throw new Error(`Parameter ${s.name} is both a tensor and a frozen matrix`);
        if (s.shape.length !== 2 || f.rows !== s.shape[0] || f.cols !== s.shape[1]) throw new Error(`Frozen matrix ${s.name} is [${f.rows}, ${f.cols}], expected [${s.shape}]`);
        continue;
      }
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

  /** Parameter names in a stable order (the order of `paramList`); frozen matrices are not parameters. */
  get paramNames(): string[] {
    return this.specs.filter((s) => !this.frozen.has(s.name)).map((s) => s.name);
  }

  /** A weight's float32 values, tensor or frozen matrix (widened exactly): fingerprints, tests. */
  weightValues(name: string): Float32Array {
    const f = this.frozen.get(name);
    if (f) return dequantize(f);
    const t = this.params.get(name);
    if (!t) throw new Error(`the model has no weight ${name}`);
    return t.dataSync() as Float32Array;
  }

  paramList(): Tensor[] {
    return this.paramNames.map((n) => this.params.get(n)!);
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
    return this.headLoss(ops, p, tf.reshape(this.trunk(ops, p, idx, options), [-1, this.config.nEmbd]), tf.reshape(targets, [-1]));
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
    this.paramNames.forEach((n, i) => m.set(n, params[i]!));
    return m;
  }

  /**
   * Embeddings + blocks + final norm: [B, T, C]. The one layer loop of both families and every
   * backend; it leaves the op set's generic path only for the native kernels that do a whole GPT
   * block at once, and only where nothing has to see inside the block (an adapter hook, the cache
   * being written).
   */
  private trunk(ops: ForwardOps, p: Params, idx: Tensor, options: ForwardOptions, cache?: CacheStep): Tensor {
    const { nLayer } = this.config;
    const [B, T] = idx.shape as [number, number];
    const past = cache?.length ?? 0;
    const s = this.step(ops, p, options, T, cache);
    // The native whole-block kernels are GPT blocks.
    const decode = !isLlamaArch(this.config) && ops.decodeLayer && cache && B === 1 && T === 1 && past > 0 && cache.past.length === nLayer && !s.hook;
    let x = s.pass.dropEmbeddings(this.embed(p, idx, past));
    for (let i = 0; i < nLayer; i++) {
      if (decode) {
        const [y, kT, v] = ops.decodeLayer!(x, cache.past[i]!.kT, cache.past[i]!.v, blockWeights(p, i));
        cache.out[i] = { kT, v };
        x = y;
        continue;
      }
      // Without a tape nothing needs a layer's intermediates afterwards: free them as it ends
      // (a forward of a long batch otherwise holds every layer's until the caller's scope ends).
      const xi = x;
      // (Not with a cache: the layer writes its keys and values there.)
      x = recording() || cache ? this.layer(s, i, xi) : tf.tidy(() => this.layer(s, i, xi));
    }
    return this.norm(s, x, this.names.finalNorm);
  }

  /**
   * One pass's context. Adapters' dropout draws from a stream of its own per layer (so attaching
   * one leaves the model's masks as they were, and a layer recomputed alone, in `lossAndGrads`,
   * draws the masks it drew in the whole pass).
   */
  private step(ops: ForwardOps, p: Params, options: ForwardOptions, T: number, cache?: CacheStep, rotary?: { cos: Tensor; sin: Tensor }): Step {
    const past = cache?.length ?? 0;
    const training = options.training ?? false;
    const seed = options.dropoutSeed ?? 0;
    const pass = ops.pass(this.config.nHead, training ? this.config.dropout : 0, seed);
    const hook = this.projectionHook;
    const streams = new Map<number, SeededDropout>();
    const adapterDropout = (layer: number) => (x: Tensor, rate: number) => {
      if (!training) return x;
      let st = streams.get(layer);
      if (!st) {
        st = new SeededDropout(seed * 1000 + 500 + 7919 * layer);
        streams.set(layer, st);
      }
      return st.apply(x, rate);
    };
    const llama = isLlamaArch(this.config);
    // llama's matrices are [out, in] (Hugging Face's layout), gpt's [in, out].
    const linear = llama ? linearOutIn : ops.linear;
    const project = (layer: number, site: ProjectionSite, x: Tensor): Tensor => {
      const h = this.names.layer(layer);
      const name = `${h}.${site}.weight`;
      const bias = p.get(`${h}.${site}.bias`);
      const w = p.get(name);
      const ctx = hook && { layer, site, params: p, training, dropout: adapterDropout(layer) };
      if (!w && hook?.lowRank) {
        // LoRA on a frozen projection, in one kernel each way where the backend has one.
        const update = hook.lowRank(ctx!);
        const y = update && frozenLoraLinear(x, this.frozenMatrix(name), this.frozenKernels, update, bias);
        if (y) return y;
      }
      const y = w ? linear(x, w, bias) : frozenLinear(x, this.frozenMatrix(name), this.frozenKernels, bias);
      return hook ? hook(x, y, ctx!) : y;
    };
    return { ops, p, pass, hook, project, cache, rotary: llama ? rotary ?? ropeTables(this.invFreq!, past, T) : undefined };
  }

  /** Layer i on x [B, T, C] (no KV cache written unless the step has one). */
  private layer(s: Step, i: number, x: Tensor): Tensor {
    const gpt = !isLlamaArch(this.config);
    const fused = gpt && !s.cache && !s.hook ? s.pass.block?.(x, blockWeights(s.p, i), i) : undefined;
    if (fused) return fused;
    const layer = this.names.layer(i);
    const x1 = tf.add(x, s.pass.dropResidual(this.attention(s, i, this.norm(s, x, `${layer}.${this.names.norm1}`)), i, 'attention'));
    return tf.add(x1, s.pass.dropResidual(this.mlp(s, i, this.norm(s, x1, `${layer}.${this.names.norm2}`)), i, 'mlp'));
  }

  private frozenMatrix(name: string): WeightMatrix {
    const f = this.frozen.get(name);
    if (!f) throw new Error(`the model has no weight ${name}`);
    return f;
  }

  /** Token embeddings, plus learned positions (gpt; llama's positions are RoPE's, in attention). */
  private embed(p: Params, idx: Tensor, past: number): Tensor {
    const table = p.get(this.names.embed);
    const tok = table ? tf.gather(table, idx) : frozenEmbedding(this.frozenMatrix(this.names.embed), idx); // [B, T, C]
    if (isLlamaArch(this.config)) return tok;
    const pos = tf.slice(p.get('transformer.wpe.weight')!, [past, 0], [idx.shape[1]!, -1]); // [T, C]
    return tf.add(tok, pos);
  }

  /** LayerNorm (gpt) or RMSNorm (llama) with the weights under `name`. */
  private norm(s: Step, x: Tensor, name: string): Tensor {
    const w = s.p.get(`${name}.weight`)!;
    const c = this.config;
    return isLlamaArch(c) ? (s.ops.rmsNorm ?? rmsNorm)(x, w, c.normEps) : s.ops.layerNorm(x, w, s.p.get(`${name}.bias`));
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
      if (c.qkNorm) y = (s.ops.rmsNorm ?? rmsNorm)(y, s.p.get(`${this.names.layer(i)}.self_attn.${norm}.weight`)!, c.normEps);
      return tf.reshape((s.ops.rope ?? rope)(y, cos, sin), [B, T, heads * d]);
    };
    const q = positioned('self_attn.q_proj', H, 'q_norm');
    const k = positioned('self_attn.k_proj', G, 'k_norm');
    const v = s.project(i, 'self_attn.v_proj', h);
    return tf.concat([q, repeatKv(k, G, H / G), repeatKv(v, G, H / G)], 2);
  }

  /** Layer i's MLP: GELU (gpt) or SwiGLU (llama). */
  private mlp(s: Step, i: number, m: Tensor): Tensor {
    if (isLlamaArch(this.config)) {
      return s.project(i, 'mlp.down_proj', (s.ops.swiglu ?? swiglu)(s.project(i, 'mlp.gate_proj', m), s.project(i, 'mlp.up_proj', m)));
    }
    // An adapter on c_fc must see its output before GELU: no fused up-projection then.
    const w = `${this.names.layer(i)}.mlp.c_fc`;
    const up = s.hook ? s.ops.gelu(s.project(i, 'mlp.c_fc', m)) : s.ops.linearGelu(m, s.p.get(`${w}.weight`)!, s.p.get(`${w}.bias`));
    return s.project(i, 'mlp.c_proj', up);
  }

  /** The output projection of x [.., C] (the embedding table when tied): logits [N, V]. */
  private head(ops: ForwardOps, p: Params, x: Tensor): Tensor {
    const name = this.names.head ?? this.names.embed;
    const x2 = tf.reshape(x, [-1, this.config.nEmbd]);
    const w = p.get(name);
    return w ? ops.head(x2, w) : frozenLinear(x2, this.frozenMatrix(name), this.frozenKernels);
  }

  /**
   * Mean cross-entropy of x2 [N, C]'s next tokens t1 [N] (-1 = ignore). Past `lossChunkElements`
   * logits, in chunks of rows: each chunk's mean weighted by its share of the counted targets, so
   * no [N, vocab] tensor is made at once (Qwen's vocabulary is 151,936: 2,048 rows of it are 1.2 GB).
   */
  private headLoss(ops: ForwardOps, p: Params, x2: Tensor, t1: Tensor): tf.Scalar {
    const N = x2.shape[0]!;
    const rows = this.lossChunkRows();
    if (N <= rows) return ops.crossEntropy(this.head(ops, p, x2), t1);
    const counts = chunkCounts(t1.dataSync() as Int32Array, rows);
    const total = counts.reduce((a, b) => a + b, 0);
    if (total === 0) return ops.crossEntropy(this.head(ops, p, tf.slice(x2, [0, 0], [rows, -1])), tf.slice(t1, [0], [rows]));
    let sum: tf.Scalar | undefined;
    counts.forEach((count, c) => {
      if (count === 0) return;
      const r0 = c * rows;
      const r = Math.min(rows, N - r0);
      const chunk = () => tf.mul(ops.crossEntropy(this.head(ops, p, tf.slice(x2, [r0, 0], [r, -1])), tf.slice(t1, [r0], [r])), count / total) as tf.Scalar;
      const part = recording() ? chunk() : tf.tidy(chunk);
      sum = sum ? (tf.add(sum, part) as tf.Scalar) : part;
    });
    return sum!;
  }

  /** Rows of logits per chunk of the loss. */
  private lossChunkRows(): number {
    return Math.max(1, Math.floor(this.lossChunkElements / this.config.vocabSize));
  }

  /**
   * The loss and its gradients with respect to `trainable` (name -> tensor: an adapter's, or any
   * of the model's own), grads in `trainable`'s order, for `scale`·loss (1/accumulation steps).
   *
   * With `checkpoint` (the default), activation recomputation: a first pass without a tape keeps
   * only each block's input [B, T, C]; the loss's logits are made and differentiated a chunk of
   * rows at a time; then each block, last to first, runs again under a tape of its own and
   * hands its input's gradient to the block before. Memory: the blocks' inputs plus one block's
   * activations and one chunk of logits, for one more forward pass of compute. Gradients equal
   * the taped pass's (the same ops on the same values; dropout masks are per layer and
   * stateless on 'native'). Without it, or where the model's own dropout draws its masks in call
   * order (the portable ops with config.dropout > 0 in training), one taped pass.
   */
  lossAndGrads(idx: Tensor, targets: Tensor, trainable: Params, options: ForwardOptions & { checkpoint?: boolean; scale?: number } = {}): { value: tf.Scalar; grads: Tensor[] } {
    const names = [...trainable.keys()];
    const scale = options.scale ?? 1;
    const ops = this.ops;
    const statefulDropout = (options.training ?? false) && this.config.dropout > 0 && ops !== NATIVE_FORWARD_OPS;
    if (!(options.checkpoint ?? true) || statefulDropout) {
      const f = tf.valueAndGrads((...ts: Tensor[]) => {
        const q = new Map(this.params);
        names.forEach((n, i) => q.set(n, ts[i]!));
        const l = this.loss(idx, targets, options, q);
        return scale !== 1 ? tf.mul(l, scale) : l;
      });
      return tf.tidy(() => f(names.map((n) => trainable.get(n)!))) as { value: tf.Scalar; grads: Tensor[] };
    }
    return this.checkpointedLossAndGrads(ops, idx, targets, trainable, options, scale);
  }

  private checkpointedLossAndGrads(ops: ForwardOps, idx: Tensor, targets: Tensor, trainable: Params, options: ForwardOptions, scale: number): { value: tf.Scalar; grads: Tensor[] } {
    const [B, T] = idx.shape as [number, number];
    this.checkLength(T);
    const { nLayer, nEmbd: C } = this.config;
    const p: Params = new Map([...this.params, ...trainable]);
    // Each trainable tensor goes to the segment that uses it: its layer's block, or (embeddings,
    // final norm, head) the ends.
    const byLayer = new Map<number, string[]>();
    for (const n of trainable.keys()) {
      const m = /^(?:model\.layers|transformer\.h)\.(\d+)\./.exec(n);
      const layer = m ? Number(m[1]) : -1;
      byLayer.set(layer, [...(byLayer.get(layer) ?? []), n]);
    }
    const grads = new Map<string, Tensor>();
    const accumulate = (ns: string[], gs: (Tensor | undefined)[]) =>
      ns.forEach((n, i) => {
        const g = gs[i];
        if (!g) return;
        const prev = grads.get(n);
        grads.set(n, prev ? tf.keep(tf.add(prev, g)) : tf.keep(g));
        if (prev) {
          prev.dispose();
          g.dispose();
        }
      });
    const taped = (f: () => Tensor, xs: Tensor[], dy?: Tensor) => tf.engine().gradients(f, xs, dy, true) as { value: Tensor; grads: (Tensor | undefined)[] };
    const rotary = isLlamaArch(this.config) ? ropeTables(this.invFreq!, 0, T) : undefined;
    const fresh = () => this.step(ops, p, options, T, undefined, rotary);
    const ends = byLayer.get(-1) ?? [];
    const endTensors = ends.map((n) => p.get(n)!);

    // 1. Forward without a tape: each block's input.
    const inputs: Tensor[] = [];
    const s0 = fresh();
    let x = tf.tidy(() => s0.pass.dropEmbeddings(this.embed(p, idx, 0)));
    for (let i = 0; i < nLayer; i++) {
      inputs.push(x);
      const xi = x;
      x = tf.tidy(() => this.layer(s0, i, xi));
    }
    const xL = x;

    // 2. The loss, a chunk of rows at a time: ∂loss/∂(normed rows), then through the final norm.
    const h = tf.tidy(() => tf.reshape(this.norm(fresh(), xL, this.names.finalNorm), [B * T, C]));
    const t1 = tf.reshape(targets, [-1]);
    const rows = this.lossChunkRows();
    const counts = chunkCounts(t1.dataSync() as Int32Array, rows);
    const total = Math.max(1, counts.reduce((a, b) => a + b, 0));
    let loss = 0;
    const dh: Tensor[] = [];
    counts.forEach((count, c) => {
      const r0 = c * rows;
      const r = Math.min(rows, B * T - r0);
      if (count === 0) {
        dh.push(tf.zeros([r, C]));
        return;
      }
      const hc = tf.slice(h, [r0, 0], [r, C]);
      const tc = tf.slice(t1, [r0], [r]);
      const weight = (scale * count) / total;
      const { value, grads: g } = taped(() => tf.mul(ops.crossEntropy(this.head(ops, p, hc), tc), weight), [hc, ...endTensors]);
      loss += value.dataSync()[0]!;
      value.dispose();
      dh.push(g[0]!);
      accumulate(ends, g.slice(1));
      hc.dispose();
      tc.dispose();
    });
    h.dispose();
    t1.dispose();
    const dhAll = tf.reshape(dh.length === 1 ? dh[0]! : tf.concat(dh, 0), [B, T, C]);
    if (dh.length > 1) dh.forEach((t) => t.dispose());
    const fin = taped(() => this.norm(fresh(), xL, this.names.finalNorm), [xL, ...endTensors], dhAll);
    fin.value.dispose();
    dhAll.dispose();
    xL.dispose();
    let dx = fin.grads[0]!;
    accumulate(ends, fin.grads.slice(1));

    // 3. The blocks, last to first, each recomputed under its own tape.
    for (let i = nLayer - 1; i >= 0; i--) {
      const xi = inputs[i]!;
      const ns = byLayer.get(i) ?? [];
      const s = fresh();
      const { value, grads: g } = taped(() => this.layer(s, i, xi), [xi, ...ns.map((n) => p.get(n)!)], dx);
      value.dispose();
      dx.dispose();
      xi.dispose();
      dx = g[0]!;
      accumulate(ns, g.slice(1));
    }

    // 4. A trainable embedding table (not LoRA's case).
    if (ends.length) {
      const emb = taped(() => fresh().pass.dropEmbeddings(this.embed(p, idx, 0)), endTensors, dx);
      emb.value.dispose();
      accumulate(ends, emb.grads);
    }
    dx.dispose();
    rotary?.cos.dispose();
    rotary?.sin.dispose();
    return { value: tf.scalar(loss), grads: [...trainable.keys()].map((n) => grads.get(n) ?? tf.zerosLike(trainable.get(n)!)) };
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

/** True while a gradient is being recorded (tf.grads & co.). */
function recording(): boolean {
  const engine = tf.engine() as unknown as { isTapeOn?: () => boolean };
  return typeof engine.isTapeOn === 'function' ? engine.isTapeOn() : true;
}

/** Counted targets (>= 0) in each chunk of `rows` of t. */
function chunkCounts(t: Int32Array, rows: number): number[] {
  const counts: number[] = [];
  for (let r0 = 0; r0 < t.length; r0 += rows) {
    let n = 0;
    for (let i = r0; i < Math.min(t.length, r0 + rows); i++) if (t[i]! >= 0) n++;
    counts.push(n);
  }
  return counts;
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
