/**
 * A decoder-only transformer that reads like nanoGPT's model.py: a config object, pre-norm blocks
 * of causal self-attention and an MLP, learned positions, tied input/output embeddings, GPT-2
 * style initialisation, dropout.
 *
 * The model is functional: parameters live in a name -> tensor map (names follow GPT-2's
 * checkpoints, weights stored [in, out] like GPT-2's Conv1D), and `forward` takes that map, so
 * gradients are taken with respect to plain tensors and optimizers swap tensors in and out.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { type GPTConfig, validateConfig, countParameters } from './config.ts';
import { causalSoftmax, embedding, gelu, layerNorm, linear, matMul, crossEntropy } from './ops.ts';
import { Random } from './random.ts';
import { nativeForward, nativeForwardCached, nativeLoss } from './native/gpt-native.ts';

export type Params = Map<string, Tensor>;

/** Per-layer attention keys (stored transposed, [B, H, hs, T]) and values ([B, H, T, hs]). */
export interface LayerCache {
  kT: Tensor;
  v: Tensor;
}

/** The KV cache of one generation: positions already processed and their keys and values. */
export interface KVCache {
  length: number;
  layers: LayerCache[];
}

export interface ForwardOptions {
  /** Training mode applies dropout. */
  training?: boolean;
  /** Seed for dropout masks (derive it from the step for reproducible runs). */
  dropoutSeed?: number;
}

/** The linear projections of a block, by the names of their weights (`transformer.h.<i>.<site>.weight`). */
export type ProjectionSite = 'attn.c_attn' | 'attn.c_proj' | 'mlp.c_fc' | 'mlp.c_proj';

export interface ProjectionHookContext {
  layer: number;
  site: ProjectionSite;
  /** The parameters of this forward pass (adapters read their own tensors from here when present). */
  params: Params;
  training: boolean;
  /** Seeded dropout for an adapter's input (a separate stream from the model's own dropout). */
  dropout(x: Tensor, rate: number): Tensor;
}

/**
 * Adapters (LoRA, src/model/lora/adapter.ts) see every linear projection: `x` its input [.., in], `y` the
 * base output x·W (+ b) [.., out]; the hook returns the output to use (y itself to change nothing).
 */
export type ProjectionHook = (x: Tensor, y: Tensor, ctx: ProjectionHookContext) => Tensor;

export interface ParamSpec {
  name: string;
  shape: number[];
  /** Weight decay applies to matrices and embeddings, not to biases and norms. */
  decay: boolean;
  init: 'normal' | 'residual' | 'zeros' | 'ones';
}

/** The parameters of a configuration, in a stable order. */
export function parameterSpecs(config: GPTConfig): ParamSpec[] {
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

export class GPT {
  readonly config: GPTConfig;
  readonly specs: ParamSpec[];
  params: Params;
  /** Optional adapter on the linear projections (LoRA); unset, the model is the plain GPT. */
  projectionHook: ProjectionHook | undefined;
  /**
   * On the native backend, run the fused kernels (default) or this file's own ops on the native
   * kernels (false: for the benchmarks' side-by-side rows and the tests that compare the two).
   */
  fusedOnNative = true;

  constructor(config: GPTConfig, params: Params) {
    this.config = validateConfig(config);
    this.specs = parameterSpecs(this.config);
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
    if (this.fusedNative) return nativeForward(this, idx, params, options);
    const p = this.resolve(params);
    const [B, T] = idx.shape as [number, number];
    if (T > this.config.blockSize) {
      throw new Error(`Cannot forward a sequence of length ${T}, block size is only ${this.config.blockSize}`);
    }
    const x = this.trunk(p, idx, 0, undefined, options);
    const logits = this.head(p, x);
    return tf.reshape(logits, [B, T, this.config.vocabSize]);
  }

  /**
   * The final hidden states [B, T, C] (after the last LayerNorm, before the tied output
   * projection), for heads other than the language-model head (reward, value). Always the
   * composed path, so adapter hooks apply; differentiable with respect to `params`.
   */
  hidden(idx: Tensor, options: ForwardOptions = {}, params?: Params | Tensor[]): Tensor {
    const T = idx.shape[1]!;
    if (T > this.config.blockSize) {
      throw new Error(`Cannot forward a sequence of length ${T}, block size is only ${this.config.blockSize}`);
    }
    return this.trunk(this.resolve(params), idx, 0, undefined, options);
  }

  /** Mean cross-entropy of next-token `targets` [B, T] (int32; -1 = ignore). */
  loss(idx: Tensor, targets: Tensor, options: ForwardOptions = {}, params?: Params | Tensor[]): tf.Scalar {
    if (this.fusedNative) return nativeLoss(this, idx, targets, params, options);
    const p = this.resolve(params);
    const x = this.trunk(p, idx, 0, undefined, options);
    const logits = this.head(p, x);
    return crossEntropy(tf.reshape(logits, [-1, this.config.vocabSize]), tf.reshape(targets, [-1]));
  }

  /**
   * On the native backend the whole trunk runs as fused kernels (src/model/native/gpt-native.ts,
   * parity-tested against this file), adapter hooks included. In training with dropout the
   * model's own masks there are the native backend's (a hash of the step seed), not tf.dropout's;
   * adapters' dropout is drawn exactly as here.
   */
  private get fusedNative(): boolean {
    return tf.getBackend() === 'native' && this.fusedOnNative;
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
    if (this.fusedNative) return nativeForwardCached(this, idx, cache);
    const n = idx.shape[1]!;
    if (cache.length + n > this.config.blockSize) {
      throw new Error(`KV cache overflow: ${cache.length} + ${n} > block size ${this.config.blockSize}`);
    }
    const p = this.params;
    return advanceCache(cache, n, (next) => {
      const x = this.trunk(p, idx, cache.length, { past: cache.layers, out: next }, {});
      const [B, T, C] = x.shape as [number, number, number];
      return this.head(p, tf.reshape(tf.slice(x, [0, T - 1, 0], [B, 1, C]), [B, C]));
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

  private resolve(params?: Params | Tensor[]): Params {
    if (!params) return this.params;
    if (params instanceof Map) return params;
    const m: Params = new Map();
    this.specs.forEach((s, i) => m.set(s.name, params[i]!));
    return m;
  }

  /** Embeddings + blocks + final norm: [B, T, C]. */
  private trunk(
    p: Params,
    idx: Tensor,
    past: number,
    cache: { past: LayerCache[]; out: LayerCache[] } | undefined,
    options: ForwardOptions,
  ): Tensor {
    const { nLayer } = this.config;
    const T = idx.shape[1]!;
    const get = (name: string) => p.get(name);
    const tokEmb = embedding(get('transformer.wte.weight')!, idx); // [B, T, C]
    const posEmb = tf.slice(get('transformer.wpe.weight')!, [past, 0], [T, -1]); // [T, C]
    const dropout = new DropoutState(options.training ? this.config.dropout : 0, options.dropoutSeed ?? 0, options.training ?? false);
    let x = dropout.apply(tf.add(tokEmb, posEmb));
    for (let i = 0; i < nLayer; i++) {
      const h = `transformer.h.${i}`;
      const a = layerNorm(x, get(`${h}.ln_1.weight`)!, get(`${h}.ln_1.bias`));
      x = tf.add(x, this.attention(p, h, a, past, cache, i, dropout));
      const m = layerNorm(x, get(`${h}.ln_2.weight`)!, get(`${h}.ln_2.bias`));
      x = tf.add(x, this.mlp(p, h, m, dropout, i));
    }
    return layerNorm(x, get('transformer.ln_f.weight')!, get('transformer.ln_f.bias'));
  }

  /** Tied output projection: x · wteᵀ. */
  private head(p: Params, x: Tensor): Tensor {
    const C = this.config.nEmbd;
    return matMul(tf.reshape(x, [-1, C]), tf.transpose(p.get('transformer.wte.weight')!));
  }

  private attention(
    p: Params,
    h: string,
    x: Tensor,
    past: number,
    cache: { past: LayerCache[]; out: LayerCache[] } | undefined,
    layer: number,
    dropout: DropoutState,
  ): Tensor {
    const { nHead, nEmbd: C } = this.config;
    const [B, T] = x.shape as [number, number, number];
    const hs = C / nHead;
    const qkv = this.project(p, h, layer, 'attn.c_attn', x, dropout); // [B, T, 3C]
    const [q0, k0, v0] = tf.split(qkv, 3, 2) as [Tensor, Tensor, Tensor];
    // [B, T, C] -> [B, H, T, hs]; keys go straight to [B, H, hs, T] for q · kᵀ.
    const q = tf.transpose(tf.reshape(q0, [B, T, nHead, hs]), [0, 2, 1, 3]);
    let kT = tf.transpose(tf.reshape(k0, [B, T, nHead, hs]), [0, 2, 3, 1]);
    let v = tf.transpose(tf.reshape(v0, [B, T, nHead, hs]), [0, 2, 1, 3]);
    if (cache) {
      const prev = cache.past[layer];
      if (prev) {
        kT = tf.concat([prev.kT, kT], 3);
        v = tf.concat([prev.v, v], 2);
      }
      cache.out[layer] = { kT, v };
    }
    const att = dropout.apply(causalSoftmax(matMul(q, kT), 1 / Math.sqrt(hs), past)); // [B, H, T, past + T]
    const y = matMul(att, v); // [B, H, T, hs]
    const merged = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [B, T, C]);
    return dropout.apply(this.project(p, h, layer, 'attn.c_proj', merged, dropout));
  }

  private mlp(p: Params, h: string, x: Tensor, dropout: DropoutState, layer: number): Tensor {
    const up = gelu(this.project(p, h, layer, 'mlp.c_fc', x, dropout));
    return dropout.apply(this.project(p, h, layer, 'mlp.c_proj', up, dropout));
  }

  /** x · W (+ b) of one projection, through the adapter hook when one is set. */
  private project(p: Params, h: string, layer: number, site: ProjectionSite, x: Tensor, dropout: DropoutState): Tensor {
    const y = linear(x, p.get(`${h}.${site}.weight`)!, p.get(`${h}.${site}.bias`));
    const hook = this.projectionHook;
    if (!hook) return y;
    return hook(x, y, { layer, site, params: p, training: dropout.training, dropout: (t, rate) => dropout.applyAdapter(t, rate) });
  }
}

/**
 * Runs `step` (which fills `next` with every layer's longer keys and values and returns the last
 * position's logits) in a tidy scope, then swaps `cache` to the new layers and frees the old ones.
 * The one way both GPT and the native path advance a KV cache by `n` tokens.
 */
export function advanceCache(cache: KVCache, n: number, step: (next: LayerCache[]) => Tensor): Tensor {
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

/**
 * Hands out dropout seeds in call order so a forward pass is reproducible from one seed. Exported
 * for the native fused path, which draws the adapters' dropout exactly as here.
 */
export class DropoutState {
  private counter = 0;
  private adapterCounter = 0;
  constructor(
    private readonly rate: number,
    private readonly seed: number,
    /** Training mode (adapter dropout applies only then, whatever the model's own rate). */
    readonly training = false,
  ) {}
  apply(x: Tensor): Tensor {
    if (this.rate <= 0) return x;
    this.counter += 1;
    return tf.dropout(x, this.rate, undefined, this.seed * 1000 + this.counter);
  }
  /** Dropout of an adapter's input: its own seed stream, so the model's masks stay as they were. */
  applyAdapter(x: Tensor, rate: number): Tensor {
    if (!this.training || rate <= 0) return x;
    this.adapterCounter += 1;
    return tf.dropout(x, rate, undefined, this.seed * 1000 + 500 + this.adapterCounter);
  }
}

