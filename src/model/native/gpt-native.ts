/**
 * GPT's forward pass written with the native fused ops: the same parameters, names and math as
 * src/model/gpt.ts (`loss`, `forwardCached`), for the 'native' backend.
 *
 * This is what gpt.ts computes once it dispatches to ./ops.ts on the native backend (see
 * docs/benchmarks-native.md, "Wiring"); the parity tests check it against GPT on the cpu backend,
 * and the benchmarks measure it. Adapter hooks (LoRA) see every projection as in gpt.ts. The
 * model's own dropout masks are the native backend's (the same in the block kernel and the per-op
 * path); adapters' dropout is tf.dropout with gpt.ts's seeds.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { advanceCache, DropoutState, type ForwardOptions, type GPT, type KVCache, type LayerCache, type Params, type ProjectionSite } from '../gpt.ts';
import { block, blockFits, causalAttention, crossEntropy, decodeLayer, dropout, DROPOUT_SITE, gelu, layerNorm, linear, linearGelu, NO_DROPOUT, selfAttention, type BlockWeights, type NativeDropout } from './ops.ts';

function resolve(model: GPT, params?: Params | Tensor[]): Params {
  if (!params) return model.params;
  if (params instanceof Map) return params;
  const m: Params = new Map();
  model.paramNames.forEach((n, i) => m.set(n, params[i]!));
  return m;
}

/** Dropout settings of one training forward pass: the model's rate, a seed for this step. */
function dropoutOf(model: GPT, options: ForwardOptions): NativeDropout {
  return options.training && model.config.dropout > 0 ? { rate: model.config.dropout, seed: options.dropoutSeed ?? 0 } : NO_DROPOUT;
}

/** The seed of layer i's masks (the embeddings' mask uses the step's seed itself). */
const layerSeed = (seed: number, layer: number) => (Math.imul(seed >>> 0, 0x9e3779b1) + layer + 1) >>> 0;

function trunk(
  model: GPT,
  p: Params,
  idx: Tensor,
  past: number,
  cache?: { past: LayerCache[]; out: LayerCache[] },
  drop: NativeDropout = NO_DROPOUT,
  options: ForwardOptions = {},
): Tensor {
  const { nLayer, nHead } = model.config;
  const T = idx.shape[1]!;
  const get = (name: string) => p.get(name);
  const hook = model.projectionHook;
  // Adapters' dropout, drawn in the same order and with the same seeds as gpt.ts draws it.
  const adapterDropout = new DropoutState(0, options.dropoutSeed ?? 0, options.training ?? false);
  /** x · W (+ b) of one projection, through the adapter hook when one is set (as gpt.ts's project). */
  const project = (layer: number, site: ProjectionSite, x: Tensor): Tensor => {
    const h = `transformer.h.${layer}`;
    const y = linear(x, get(`${h}.${site}.weight`)!, get(`${h}.${site}.bias`));
    if (!hook) return y;
    return hook(x, y, { layer, site, params: p, training: adapterDropout.training, dropout: (t, rate) => adapterDropout.applyAdapter(t, rate) });
  };
  const tok = tf.gather(get('transformer.wte.weight')!, idx);
  const pos = tf.slice(get('transformer.wpe.weight')!, [past, 0], [T, -1]);
  let x = dropout(tf.add(tok, pos), drop, DROPOUT_SITE.embeddings);
  for (let i = 0; i < nLayer; i++) {
    const h = `transformer.h.${i}`;
    const w = blockWeights(p, h);
    // The layer's masks: the same in the block kernel and in the per-op path below.
    const layerDrop = { rate: drop.rate, seed: layerSeed(drop.seed, i) };
    if (!cache && !hook && blockFits(w)) {
      x = block(x, w, nHead, 1e-5, layerDrop);
      continue;
    }
    const a = layerNorm(x, w.ln1w, w.ln1b);
    const qkv = project(i, 'attn.c_attn', a);
    if (!cache) {
      // Training and uncached forward: attention straight from qkv, heads merged in place.
      const merged = selfAttention(qkv, nHead, undefined, layerDrop);
      x = tf.add(x, dropout(project(i, 'attn.c_proj', merged), layerDrop, DROPOUT_SITE.residualAttention));
    } else {
      if (drop.rate > 0) throw new Error('the KV-cache forward does not train: no dropout there');
      x = tf.add(x, cachedAttention(model, qkv, i, past, cache, project));
    }
    const m = layerNorm(x, w.ln2w, w.ln2b);
    // With a hook, c_fc's output must pass through it before GELU: no fused GELU then.
    const up = hook ? gelu(project(i, 'mlp.c_fc', m)) : linearGelu(m, w.fcw, w.fcb);
    x = tf.add(x, dropout(project(i, 'mlp.c_proj', up), layerDrop, DROPOUT_SITE.residualMlp));
  }
  return layerNorm(x, get('transformer.ln_f.weight')!, get('transformer.ln_f.bias'));
}

/** Attention with a KV cache (gpt.ts's layout: keys stored transposed [B, H, hs, S]). */
function cachedAttention(
  model: GPT,
  qkv: Tensor,
  i: number,
  past: number,
  cache: { past: LayerCache[]; out: LayerCache[] },
  project: (layer: number, site: ProjectionSite, x: Tensor) => Tensor,
): Tensor {
  const { nHead, nEmbd: C } = model.config;
  const [B, T] = qkv.shape as [number, number, number];
  const hs = C / nHead;
  const [q0, k0, v0] = tf.split(qkv, 3, 2) as [Tensor, Tensor, Tensor];
  const q = tf.transpose(tf.reshape(q0, [B, T, nHead, hs]), [0, 2, 1, 3]);
  let kT = tf.transpose(tf.reshape(k0, [B, T, nHead, hs]), [0, 2, 3, 1]);
  let v = tf.transpose(tf.reshape(v0, [B, T, nHead, hs]), [0, 2, 1, 3]);
  const prev = cache.past[i];
  if (prev) {
    kT = tf.concat([prev.kT, kT], 3);
    v = tf.concat([prev.v, v], 2);
  }
  cache.out[i] = { kT, v };
  const y = causalAttention(q, kT, v, past);
  const merged = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [B, T, C]);
  return project(i, 'attn.c_proj', merged);
}

/** Block i's weights by gpt.ts's parameter names (h = `transformer.h.${i}`). */
function blockWeights(p: Params, h: string): BlockWeights {
  const get = (name: string) => p.get(`${h}.${name}`);
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

/** The trunk for one token after the prompt: one fused kernel per block. */
function decodeTrunk(model: GPT, idx: Tensor, cache: KVCache, out: LayerCache[]): Tensor {
  const p = model.params;
  const get = (name: string) => p.get(name);
  const tok = tf.gather(get('transformer.wte.weight')!, idx);
  const pos = tf.slice(get('transformer.wpe.weight')!, [cache.length, 0], [1, -1]);
  let x = tf.add(tok, pos);
  for (let i = 0; i < model.config.nLayer; i++) {
    const h = `transformer.h.${i}`;
    const layer = cache.layers[i]!;
    const [y, kT, v] = decodeLayer(x, layer.kT, layer.v, blockWeights(p, h));
    out[i] = { kT, v };
    x = y;
  }
  return layerNorm(x, get('transformer.ln_f.weight')!, get('transformer.ln_f.bias'));
}

/** Tied output projection x · wteᵀ, with the transpose as a flag of the product. */
function head(model: GPT, p: Params, x: Tensor): Tensor {
  const C = model.config.nEmbd;
  return tf.matMul(tf.reshape(x, [-1, C]) as tf.Tensor2D, p.get('transformer.wte.weight')! as tf.Tensor2D, false, true);
}

/**
 * Same as GPT.loss. With dropout in training (bias-free models only), the masks are the native
 * backend's own (see `dropout` in ./ops.ts), not tf.dropout's.
 */
export function nativeLoss(model: GPT, idx: Tensor, targets: Tensor, params?: Params | Tensor[], options: ForwardOptions = {}): tf.Scalar {
  const p = resolve(model, params);
  const x = trunk(model, p, idx, 0, undefined, dropoutOf(model, options), options);
  return crossEntropy(head(model, p, x), tf.reshape(targets, [-1]));
}

/** Same as GPT.forward: logits [B, T, V]. */
export function nativeForward(model: GPT, idx: Tensor, params?: Params | Tensor[], options: ForwardOptions = {}): Tensor {
  const p = resolve(model, params);
  const [B, T] = idx.shape as [number, number];
  return tf.reshape(head(model, p, trunk(model, p, idx, 0, undefined, dropoutOf(model, options), options)), [B, T, model.config.vocabSize]);
}

/** Same as GPT.forwardCached: logits of the last position [B, V]; updates the cache. */
export function nativeForwardCached(model: GPT, idx: Tensor, cache: KVCache): Tensor {
  const n = idx.shape[1]!;
  if (cache.length + n > model.config.blockSize) {
    throw new Error(`KV cache overflow: ${cache.length} + ${n} > block size ${model.config.blockSize}`);
  }
  return advanceCache(cache, n, (next) => {
    // One kernel per block for a single new token, unless an adapter must see the projections.
    const single = idx.shape[0] === 1 && n === 1 && cache.length > 0 && cache.layers.length === model.config.nLayer && !model.projectionHook;
    const x = single ? decodeTrunk(model, idx, cache, next) : trunk(model, model.params, idx, cache.length, { past: cache.layers, out: next });
    const [B, T, C] = x.shape as [number, number, number];
    const last = T === 1 ? tf.reshape(x, [B, C]) : tf.reshape(tf.slice(x, [0, T - 1, 0], [B, 1, C]), [B, C]);
    return head(model, model.params, last);
  });
}
