/**
 * The transformer's ops as fused kernels of the 'native' backend, each with its own gradient.
 * Same signatures and semantics as src/model/ops.ts, so the model can call these instead when
 * `tf.getBackend() === 'native'`:
 *
 * - matMul / linear: the batch is folded into the rows (one large product instead of one per
 *   batch entry), and gradients use transposeA/transposeB, which the native product handles at
 *   full speed (no explicit transposes, unlike the wasm-friendly version); linear's two gradient
 *   products run side by side in one kernel.
 * - gelu, layerNorm, crossEntropy, and Llama's rmsNorm, rope and swiglu: one kernel forward and one
 *   backward, instead of 5-15 ops.
 * - causalAttention: scores, mask, softmax and the product with v in one kernel per (batch, head),
 *   with the probabilities saved for the backward kernel.
 *
 * They only run on the 'native' backend (the kernels exist nowhere else).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, NamedTensorMap, Tensor } from '@tensorflow/tfjs-core';
import { BLOCK_WEIGHTS, FUSED } from './kernels.ts';

type GradFn = (dy: Tensor, saved: Tensor[]) => Tensor | Tensor[];

/** tf.customGrad with the argument list typed the way we call it. */
function customGrad(f: (...args: never[]) => { value: Tensor; gradFunc: GradFn }) {
  return tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]);
}

function run(kernel: string, inputs: Record<string, Tensor>, attrs: Record<string, unknown> = {}): Tensor[] {
  const out = tf.engine().runKernel(kernel, inputs as unknown as NamedTensorMap, attrs as NamedAttrMap);
  return (Array.isArray(out) ? out : [out]) as Tensor[];
}

/** `op` on x [..., k] with the leading dimensions folded into rows ([rows, k] -> [rows, cols]), unfolded after. */
function onRows(x: Tensor, cols: number, op: (x2: Tensor) => Tensor): Tensor {
  if (x.rank === 2) return op(x);
  const y = op(tf.reshape(x, [-1, x.shape[x.rank - 1]!]));
  return tf.reshape(y, [...x.shape.slice(0, -1), cols]);
}

/** a · b for a [..., m, k] and b [k, n] or [..., k, n] (same batch dims). */
export function matMul(a: Tensor, b: Tensor): Tensor {
  if (b.rank === 2 && a.rank > 2) return onRows(a, b.shape[1]!, (a2) => tf.matMul(a2 as tf.Tensor2D, b as tf.Tensor2D));
  return tf.matMul(a, b);
}

/**
 * x2 [m, k] · w [k, n] whose gradient is one kernel computing dx and dw side by side (each on its
 * own core with two threads) instead of two products each cut in half.
 */
const linear2dOp = customGrad((x: Tensor, w: Tensor, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D),
    gradFunc: (dy, saved) => run(FUSED.linearGrad, { x: saved[0]!, w: saved[1]!, dy }),
  };
}) as unknown as (x: Tensor, w: Tensor) => Tensor;

const linearGeluOp = customGrad((x: Tensor, w: Tensor, save: tf.GradSaveFunc) => {
  const [y, h] = run(FUSED.linearGelu, { x, w }) as [Tensor, Tensor];
  save([x, w, h]);
  return {
    value: y,
    gradFunc: (dy, saved) => run(FUSED.linearGrad, { x: saved[0]!, w: saved[1]!, dy, h: saved[2]! }),
  };
}) as unknown as (x: Tensor, w: Tensor) => Tensor;

/**
 * GELU(x · W (+ bias)): the MLP's up-projection. Without a bias, one kernel forward (GELU applied
 * to each block of the product while it is in cache) and one backward.
 */
export function linearGelu(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  if (bias || weight.rank !== 2) return gelu(linear(x, weight, bias));
  return onRows(x, weight.shape[1]!, (x2) => linearGeluOp(x2, weight));
}

/** x · W (+ bias), W stored [in, out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const y = weight.rank === 2 ? onRows(x, weight.shape[1]!, (x2) => linear2dOp(x2, weight)) : matMul(x, weight);
  return bias ? tf.add(y, bias) : y;
}

const geluOp = customGrad((x: Tensor, save: tf.GradSaveFunc) => {
  save([x]);
  return {
    value: run(FUSED.gelu, { x })[0]!,
    gradFunc: (dy, saved) => run(FUSED.geluGrad, { x: saved[0]!, dy })[0]!,
  };
}) as unknown as (x: Tensor) => Tensor;

/** GELU, exact (erf) form. */
export function gelu(x: Tensor): Tensor {
  return geluOp(x);
}

const rmsNormOps = new Map<number, (x: Tensor, w: Tensor) => Tensor>();

/** Llama's RMSNorm over the last axis, x / √(mean(x²) + eps) · w: one kernel forward, one backward. */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  let op = rmsNormOps.get(eps);
  if (!op) {
    op = customGrad((xx: Tensor, w: Tensor, save: tf.GradSaveFunc) => {
      const [y, rstd] = run(FUSED.rmsNorm, { x: xx, w }, { eps }) as [Tensor, Tensor];
      save([xx, w, rstd]);
      return {
        value: y,
        gradFunc: (dy, saved) => {
          const [sx, sw, sr] = saved as [Tensor, Tensor, Tensor];
          return run(FUSED.rmsNormGrad, { x: sx, w: sw, rstd: sr, dy });
        },
      };
    }) as unknown as (x: Tensor, w: Tensor) => Tensor;
    rmsNormOps.set(eps, op);
  }
  return op(x, weight);
}

/**
 * RoPE on x [B, T, H, d] with cos, sin [T, 1, d] (ops.ts's rope: x·cos + rotate_half(x)·sin), one
 * kernel each way (the gradient is the rotation back). cos and sin are constants: no gradient.
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const op = customGrad((xx: Tensor, save: tf.GradSaveFunc) => {
    // Saved, so that the tape keeps them for the gradient (the caller may dispose its own).
    save([cos, sin]);
    return {
      value: run(FUSED.rope, { x: xx, cos, sin })[0]!,
      gradFunc: (dy, saved) => run(FUSED.rope, { x: dy, cos: saved[0]!, sin: saved[1]! }, { inverse: 1 }),
    };
  }) as unknown as (x: Tensor) => Tensor;
  return op(x);
}

/** SwiGLU, silu(gate) · up: one kernel forward, one for both gradients. */
export const swiglu = customGrad((gate: Tensor, up: Tensor, save: tf.GradSaveFunc) => {
  save([gate, up]);
  return {
    value: run(FUSED.swiglu, { gate, up })[0]!,
    gradFunc: (dy, saved) => run(FUSED.swigluGrad, { gate: saved[0]!, up: saved[1]!, dy }),
  };
}) as unknown as (gate: Tensor, up: Tensor) => Tensor;

function layerNormOp(eps: number, withBias: boolean) {
  return customGrad((...args: Tensor[]) => {
    const save = args.pop() as unknown as tf.GradSaveFunc;
    const [x, w, b] = args as [Tensor, Tensor, Tensor?];
    const [y, mean, rstd] = run(FUSED.layerNorm, withBias ? { x, w, b: b! } : { x, w }, { eps }) as [Tensor, Tensor, Tensor];
    save([x, w, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy, saved) => {
        const [sx, sw, sm, sr] = saved as [Tensor, Tensor, Tensor, Tensor];
        return run(FUSED.layerNormGrad, { x: sx, w: sw, mean: sm, rstd: sr, dy }, { hasBias: withBias });
      },
    };
  }) as unknown as (...t: Tensor[]) => Tensor;
}

const layerNormOps = new Map<string, (...t: Tensor[]) => Tensor>();

/** LayerNorm over the last axis, with an optional bias. */
export function layerNorm(x: Tensor, weight: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  const key = `${eps}:${bias ? 1 : 0}`;
  let op = layerNormOps.get(key);
  if (!op) {
    op = layerNormOp(eps, bias !== undefined);
    layerNormOps.set(key, op);
  }
  return bias ? op(x, weight, bias) : op(x, weight);
}

const crossEntropyOp = customGrad((logits: Tensor, targets: Tensor, save: tf.GradSaveFunc) => {
  const [loss, probs, count] = run(FUSED.crossEntropy, { logits, targets }) as [Tensor, Tensor, Tensor];
  save([probs, targets, count]);
  return {
    value: loss,
    gradFunc: (dy, saved) => {
      const [p, t, n] = saved as [Tensor, Tensor, Tensor];
      return [run(FUSED.crossEntropyGrad, { probs: p, targets: t, dy, count: n })[0]!, tf.zerosLike(t)];
    },
  };
}) as unknown as (logits: Tensor, targets: Tensor) => Tensor;

/**
 * Mean negative log-likelihood of `targets` (int32, [N]) under `logits` ([N, V]); targets < 0
 * are ignored and the mean is over the counted ones.
 */
export function crossEntropy(logits: Tensor, targets: Tensor): tf.Scalar {
  const l2 = logits.rank === 2 ? logits : tf.reshape(logits, [-1, logits.shape[logits.rank - 1]!]);
  const t1 = targets.rank === 1 ? targets : tf.reshape(targets, [-1]);
  return crossEntropyOp(l2, t1.dtype === 'int32' ? t1 : tf.cast(t1, 'int32')) as tf.Scalar;
}

const attentionOps = new Map<string, (q: Tensor, kT: Tensor, v: Tensor) => Tensor>();

function attentionOp(past: number, scale: number, causal: boolean) {
  return customGrad((q: Tensor, kT: Tensor, v: Tensor, save: tf.GradSaveFunc) => {
    const [y, p] = run(FUSED.attention, { q, kT, v }, { past, scale, causal }) as [Tensor, Tensor];
    save([q, kT, v, p]);
    return {
      value: y,
      gradFunc: (dy, saved) => {
        const [sq, sk, sv, sp] = saved as [Tensor, Tensor, Tensor, Tensor];
        return run(FUSED.attentionGrad, { q: sq, kT: sk, v: sv, p: sp, dy }, { scale });
      },
    };
  }) as unknown as (q: Tensor, kT: Tensor, v: Tensor) => Tensor;
}

/**
 * softmax(q·kT·scale + causal mask)·v, per (batch, head), in gpt.ts's layout: q [B, H, T, hs],
 * keys transposed kT [B, H, hs, S], v [B, H, S, hs]; query i sits at position past + i and sees
 * keys 0..past+i (S = past + T with a KV cache). `scale` defaults to 1/√hs. No dropout (it serves
 * the KV-cache path, which never trains).
 */
export function causalAttention(q: Tensor, kT: Tensor, v: Tensor, past = 0, scale?: number, causal = true): Tensor {
  const hs = q.shape[q.rank - 1]!;
  const s = scale ?? 1 / Math.sqrt(hs);
  const key = `${past}:${s}:${causal ? 1 : 0}`;
  let op = attentionOps.get(key);
  if (!op) {
    if (attentionOps.size > 1024) attentionOps.clear();
    op = attentionOp(past, s, causal);
    attentionOps.set(key, op);
  }
  return op(q, kT, v);
}

const selfAttentionOps = new Map<string, (qkv: Tensor) => Tensor>();

/**
 * Causal self-attention from the fused projection: qkv [B, T, 3C] (q, k, v side by side, as
 * nanoGPT's c_attn produces them) -> y [B, T, C] with the heads merged, ready for c_proj. Same
 * result as split + reshape/transpose per head + causalAttention + merge, without the copies.
 * With `drop.rate` > 0, dropout on the probabilities: the same mask as `block` draws from that seed.
 */
export function selfAttention(qkv: Tensor, nHead: number, scale?: number, drop: NativeDropout = NO_DROPOUT): Tensor {
  const c = qkv.shape[2]! / 3;
  const s = scale ?? 1 / Math.sqrt(c / nHead);
  const make = () => {
    const attrs = { heads: nHead, scale: s, dropRate: drop.rate, dropSeed: drop.seed >>> 0 };
    return customGrad((x: Tensor, save: tf.GradSaveFunc) => {
      const [y, p] = run(FUSED.selfAttention, { qkv: x }, attrs) as [Tensor, Tensor];
      save([x, p]);
      return {
        value: y,
        gradFunc: (dy, saved) => run(FUSED.selfAttentionGrad, { qkv: saved[0]!, p: saved[1]!, dy }, attrs)[0]!,
      };
    }) as unknown as (qkv: Tensor) => Tensor;
  };
  if (drop.rate > 0) return make()(qkv); // a fresh seed every step: not worth caching
  const key = `${nHead}:${s}`;
  let op = selfAttentionOps.get(key);
  if (!op) {
    op = make();
    selfAttentionOps.set(key, op);
  }
  return op(qkv);
}

/**
 * Dropout on the native backend. The mask is a hash of (seed, site, element index) rather than
 * tf.dropout's JavaScript random stream: the backward recomputes it instead of storing it, and
 * the block kernel draws its own masks the same way. So native training with dropout is as
 * random as elsewhere, but not the same random numbers as on wasm or cpu.
 */
export interface NativeDropout {
  rate: number;
  /** Any integer; taken modulo 2^32. */
  seed: number;
}

export const NO_DROPOUT: NativeDropout = { rate: 0, seed: 0 };

/** Mask sites shared with native/src/kernels.h (the block uses 0-2 internally). */
export const DROPOUT_SITE = { attention: 0, residualAttention: 1, residualMlp: 2, embeddings: 3 } as const;

/** x · mask with mask elements 0 (probability `rate`) or 1/(1 − rate). */
export function dropout(x: Tensor, d: NativeDropout, site: number): Tensor {
  if (!(d.rate > 0)) return x;
  const attrs = { rate: d.rate, seed: d.seed >>> 0, site };
  const op = customGrad((input: Tensor, _save: tf.GradSaveFunc) => ({
    value: run(FUSED.dropout, { x: input }, attrs)[0]!,
    gradFunc: (dy) => run(FUSED.dropout, { x: dy }, attrs)[0]!,
  })) as unknown as (x: Tensor) => Tensor;
  return op(x);
}

function blockOp(nHead: number, eps: number, drop: NativeDropout) {
  const attrs = { heads: nHead, eps, dropRate: drop.rate, dropSeed: drop.seed >>> 0 };
  return customGrad((...args: Tensor[]) => {
    const save = args.pop() as unknown as tf.GradSaveFunc;
    const [input, ...weights] = args as [Tensor, ...Tensor[]];
    const named = Object.fromEntries(BLOCK_WEIGHTS.map((n, i) => [n, weights[i]!]));
    const [x2, ...acts] = run(FUSED.block, { x: input, ...named }, attrs) as [Tensor, ...Tensor[]];
    save([input, ...weights, ...acts]);
    return {
      value: x2,
      gradFunc: (dy, saved) => {
        const [sx, ...rest] = saved as [Tensor, ...Tensor[]];
        const ws = Object.fromEntries(BLOCK_WEIGHTS.map((n, i) => [n, rest[i]!]));
        const as = Object.fromEntries(rest.slice(BLOCK_WEIGHTS.length).map((t, i) => [`s${i}`, t]));
        return run(FUSED.blockGrad, { dy, x: sx, ...ws, ...as }, attrs);
      },
    };
  }) as unknown as (...t: Tensor[]) => Tensor;
}

const blockOps = new Map<string, (...t: Tensor[]) => Tensor>();

/**
 * One transformer block for training and uncached forward passes, without biases:
 * x [B, T, C] -> x + attention(LN1(x)) then + MLP(LN2(.)), nanoGPT's block, with its dropouts
 * (attention probabilities, both residual branches) when `drop.rate` > 0. One kernel forward
 * (keeping what the backward needs) and one backward, instead of ~25 ops: same arithmetic as the
 * per-op path, fewer passes over memory (see native/src/block.cc).
 */
export function block(x: Tensor, w: BlockWeights, nHead: number, eps = 1e-5, drop: NativeDropout = NO_DROPOUT): Tensor {
  let op: (...t: Tensor[]) => Tensor;
  if (drop.rate > 0) {
    op = blockOp(nHead, eps, drop); // a fresh seed every step: not worth caching
  } else {
    const key = `${nHead}:${eps}`;
    op = blockOps.get(key) ?? blockOp(nHead, eps, drop);
    blockOps.set(key, op);
  }
  return op(x, w.ln1w, w.attnw, w.projw, w.ln2w, w.fcw, w.fc2w);
}

/** Whether `block` can run these weights (it has no biases). */
export function blockFits(w: BlockWeights): boolean {
  return !w.ln1b && !w.attnb && !w.projb && !w.ln2b && !w.fcb && !w.fc2b;
}

/** One transformer block's weights (biases optional), as named in gpt.ts. */
export interface BlockWeights {
  ln1w: Tensor;
  ln1b?: Tensor;
  attnw: Tensor;
  attnb?: Tensor;
  projw: Tensor;
  projb?: Tensor;
  ln2w: Tensor;
  ln2b?: Tensor;
  fcw: Tensor;
  fcb?: Tensor;
  fc2w: Tensor;
  fc2b?: Tensor;
}

/**
 * One block for one new token with a KV cache (batch 1, inference only, no gradient): x [1, 1, C]
 * and the cache in gpt.ts's layout (kT [1, H, hs, past], v [1, H, past, hs], past >= 1) ->
 * [x, kT, v] with the cache one position longer. Same result as the block in gpt.ts, in one kernel.
 */
export function decodeLayer(x: Tensor, kT: Tensor, v: Tensor, w: BlockWeights, eps = 1e-5): [Tensor, Tensor, Tensor] {
  const inputs: Record<string, Tensor> = { x, kT, v };
  for (const [k, t] of Object.entries(w)) if (t) inputs[k] = t;
  return run(FUSED.decodeLayer, inputs, { eps }) as [Tensor, Tensor, Tensor];
}
