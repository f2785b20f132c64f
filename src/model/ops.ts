/**
 * The tensor operations the transformer is built from, each with a gradient that runs well on
 * every backend:
 *
 * - matMul never asks the backend for `transposeA`/`transposeB`: on wasm those fall off XNNPACK's
 *   fast path (10-20x slower), and autodiff's own matmul gradient sets them. We transpose
 *   explicitly, in the forward pass and in the gradient.
 * - embedding is `tf.gather`, whose gradient needs UnsortedSegmentSum (registered for wasm in
 *   kernels.ts).
 * - crossEntropy fuses log-softmax and the negative log-likelihood, ignores targets < 0 and has a
 *   closed-form gradient (softmax - onehot).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { SLICED_MATMUL, slicedMatMulAvailable } from './kernels.ts';
import { fusedAvailable, fusedCausalSoftmax, fusedGelu, fusedLayerNorm } from './fused.ts';

/** tf.customGrad with the argument list typed the way we call it. */
function customGrad(f: (...args: never[]) => { value: Tensor; gradFunc: (dy: Tensor, saved: Tensor[]) => Tensor | Tensor[] }) {
  return tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]);
}

/** Swaps the last two axes. */
export function transposeLast2(x: Tensor): Tensor {
  const r = x.rank;
  if (r < 2) throw new Error(`transposeLast2 needs rank >= 2, got ${r}`);
  const perm = [...Array(r).keys()];
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return tf.transpose(x, perm);
}

/** Plain batched matmul (equal batch dims, or b of rank 2), no transpose flags anywhere. */
function rawMatMul(a: Tensor, b: Tensor): Tensor {
  if (b.rank === 2 && a.rank > 2) {
    const lead = a.shape.slice(0, -1);
    const k = a.shape[a.rank - 1]!;
    const y = tf.matMul(tf.reshape(a, [-1, k]) as tf.Tensor2D, b as tf.Tensor2D);
    return tf.reshape(y, [...lead, b.shape[1]!]);
  }
  if (a.rank > 2 && slicedMatMulAvailable()) {
    const batch = a.shape.slice(0, -2);
    const size = batch.reduce((x, y) => x * y, 1);
    if (size > 1 && b.shape.slice(0, -2).join() === batch.join()) {
      const [m, k] = a.shape.slice(-2) as [number, number];
      const n = b.shape[b.rank - 1]!;
      const y = tf.engine().runKernel(SLICED_MATMUL, {
        a: tf.reshape(a, [size, m, k]),
        b: tf.reshape(b, [size, k, n]),
      }) as Tensor;
      return tf.reshape(y, [...batch, m, n]);
    }
  }
  return tf.matMul(a, b);
}

/** Sums `g` down to `shape` over leading broadcast axes (for b of rank 2 used with batched a). */
function reduceToRank2(g: Tensor, targetRank: number): Tensor {
  if (g.rank === targetRank) return g;
  const k = g.shape[g.rank - 2]!;
  const n = g.shape[g.rank - 1]!;
  return tf.sum(tf.reshape(g, [-1, k, n]), 0);
}

const matMulWithGrad = customGrad((a: Tensor, b: Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: rawMatMul(a, b),
    gradFunc: (dy: Tensor, saved: Tensor[]) => {
      const [sa, sb] = saved as [Tensor, Tensor];
      // dA = dY · Bᵀ
      const da = rawMatMul(dy, transposeLast2(sb));
      // dB = Aᵀ · dY; with a rank-2 B and batched A, flatten the batch into the rows first.
      let db: Tensor;
      if (sb.rank === 2 && sa.rank > 2) {
        const k = sa.shape[sa.rank - 1]!;
        const n = dy.shape[dy.rank - 1]!;
        db = tf.matMul(
          tf.transpose(tf.reshape(sa, [-1, k])) as tf.Tensor2D,
          tf.reshape(dy, [-1, n]) as tf.Tensor2D,
        );
      } else {
        db = reduceToRank2(rawMatMul(transposeLast2(sa), dy), sb.rank);
      }
      return [da, db];
    },
  };
}) as unknown as (a: Tensor, b: Tensor) => Tensor;

/** True while a gradient is being recorded (tf.grad & co.); false in plain inference. */
function recordingGradients(): boolean {
  const engine = tf.engine() as unknown as { isTapeOn?: () => boolean };
  return typeof engine.isTapeOn === 'function' ? engine.isTapeOn() : true;
}

/** a · b for a of shape [..., m, k] and b of shape [k, n] or [..., k, n] (same batch dims). */
export function matMul(a: Tensor, b: Tensor): Tensor {
  // Outside gradient recording the custom-gradient wrapper is pure overhead (generation).
  return recordingGradients() ? matMulWithGrad(a, b) : rawMatMul(a, b);
}

/** x · W (+ bias): W is stored [in, out], like GPT-2's Conv1D. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const y = matMul(x, weight);
  return bias ? tf.add(y, bias) : y;
}

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

const geluWithGrad = customGrad((x: Tensor, save: tf.GradSaveFunc) => {
  // Φ(x) = 0.5·(1 + erf(x/√2)), kept for the gradient so erf runs once.
  const cdf = tf.tidy(() => tf.mul(tf.add(tf.erf(tf.mul(x, SQRT1_2)), 1), 0.5));
  save([x, cdf]);
  return {
    // x·Φ(x): the exact GELU, as torch.nn.GELU() computes it.
    value: tf.mul(x, cdf),
    gradFunc: (dy: Tensor, saved: Tensor[]) =>
      tf.tidy(() => {
        const [sx, scdf] = saved as [Tensor, Tensor];
        const pdf = tf.mul(tf.exp(tf.mul(tf.square(sx), -0.5)), INV_SQRT_2PI);
        return [tf.mul(dy, tf.add(scdf, tf.mul(sx, pdf)))];
      }),
  };
}) as unknown as (x: Tensor) => Tensor;

/** GELU (exact, erf form). */
export function gelu(x: Tensor): Tensor {
  return fusedAvailable(x.size) ? fusedGelu(x) : geluWithGrad(x);
}

/** LayerNorm over the last axis, with an optional bias (nanoGPT's `bias=False` drops it). */
export function layerNorm(x: Tensor, weight: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  if (fusedAvailable(x.size) && eps === 1e-5) return fusedLayerNorm(x, weight, bias);
  return composedLayerNorm(x, weight, bias, eps);
}

function composedLayerNorm(x: Tensor, weight: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
    const scaled = tf.mul(normed, weight);
    return bias ? tf.add(scaled, bias) : scaled;
  });
}

/**
 * RMSNorm over the last axis (the Llama family's norm): x / √(mean(x²) + eps) · weight, in float32
 * as transformers' LlamaRMSNorm computes it. Composed tf ops: autodiff gives its gradient.
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), weight));
}

/** x · Wᵀ (+ bias) for W stored [out, in], as PyTorch's nn.Linear and Hugging Face checkpoints hold it. */
export function linearOutIn(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  return linear(x, tf.transpose(weight), bias);
}

/** SwiGLU: silu(gate) · up, silu(g) = g · σ(g). */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  return tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
}

/**
 * RoPE's rotation for positions past..past+T of heads `invFreq.length` · 2 wide: cos and sin
 * [T, 1, d], each frequency's value repeated over the head's two halves (transformers' layout).
 * Angles in float64, as the inference engine computes them.
 */
export function ropeTables(invFreq: Float64Array, past: number, T: number): { cos: Tensor; sin: Tensor } {
  const half = invFreq.length;
  const d = 2 * half;
  const cos = new Float32Array(T * d);
  const sin = new Float32Array(T * d);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const angle = (past + t) * invFreq[i]!;
      cos[t * d + i] = cos[t * d + i + half] = Math.cos(angle);
      sin[t * d + i] = sin[t * d + i + half] = Math.sin(angle);
    }
  }
  return { cos: tf.tensor3d(cos, [T, 1, d]), sin: tf.tensor3d(sin, [T, 1, d]) };
}

/** RoPE on x [B, T, H, d]: x·cos + rotate_half(x)·sin, rotate_half(x) = [-x₂, x₁] over the two halves. */
export function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  return tf.tidy(() => {
    const [x1, x2] = tf.split(x, 2, -1) as [Tensor, Tensor];
    return tf.add(tf.mul(x, cos), tf.mul(tf.concat([tf.neg(x2), x1], -1), sin));
  });
}

/**
 * Grouped-query attention's keys or values for every query head: x [B, T, kvHeads · d] ->
 * [B, T, kvHeads · group · d], each key/value head repeated for its `group` query heads
 * (transformers' repeat_kv, before the heads are split).
 */
export function repeatKv(x: Tensor, kvHeads: number, group: number): Tensor {
  if (group === 1) return x;
  const [B, T, width] = x.shape as [number, number, number];
  // A broadcasting product with ones rather than tf.tile: the native backend has no Tile kernel
  // of its own (the cpu backend's JavaScript one took 6% of a 0.5B model's LoRA step), and the
  // product's gradient is a sum over the copies, as tile's is. Exact (x·1).
  return tf.reshape(tf.mul(tf.reshape(x, [B * T * kvHeads, 1, width / kvHeads]), tf.ones([1, group, 1])), [B, T, width * group]);
}

const maskCache = new Map<string, Tensor>();

/** Additive causal mask [n, past + n]: query i (at position past + i) sees keys 0..past + i. */
function causalMask(past: number, n: number): Tensor {
  const key = `${tf.getBackend()}:${past}:${n}`;
  let m = maskCache.get(key);
  if (!m) {
    const total = past + n;
    const data = new Float32Array(n * total);
    for (let i = 0; i < n; i++) for (let j = past + i + 1; j < total; j++) data[i * total + j] = -1e9;
    m = tf.keep(tf.tensor2d(data, [n, total]));
    if (maskCache.size > 256) {
      for (const t of maskCache.values()) t.dispose();
      maskCache.clear();
    }
    maskCache.set(key, m);
  }
  return m;
}

/**
 * Attention weights: softmax over the last axis of scale · scores [..., T, past + T], where query
 * i (at position past + i) only sees keys 0..past + i.
 */
export function causalSoftmax(scores: Tensor, scale: number, past: number): Tensor {
  if (fusedAvailable(scores.size)) return fusedCausalSoftmax(scores, scale, past);
  return composedCausalSoftmax(scores, scale, past);
}

function composedCausalSoftmax(scores: Tensor, scale: number, past: number): Tensor {
  const T = scores.shape[scores.rank - 2]!;
  const scaled = tf.mul(scores, scale);
  return tf.softmax(T > 1 ? tf.add(scaled, causalMask(past, T)) : scaled);
}

/** Rows of `table` picked by integer `ids` (any shape); the gradient scatters back into the table. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  return tf.gather(table, ids);
}

const crossEntropyWithGrad = customGrad((logits: Tensor, targets: Tensor, save: tf.GradSaveFunc) => {
  const vocab = logits.shape[1]!;
  const oneHot = tf.cast(tf.oneHot(targets as tf.Tensor1D, vocab), 'float32'); // rows of zeros where target < 0
  const count = tf.maximum(tf.sum(oneHot), 1);
  const logProbs = tf.logSoftmax(logits);
  const loss = tf.div(tf.neg(tf.sum(tf.mul(logProbs, oneHot))), count);
  save([logProbs, oneHot, count]);
  return {
    value: loss,
    gradFunc: (dy: Tensor, saved: Tensor[]) => {
      const [lp, oh, n] = saved as [Tensor, Tensor, Tensor];
      const valid = tf.sum(oh, 1, true); // 1 for counted rows, 0 for ignored ones
      const g = tf.mul(tf.sub(tf.mul(tf.exp(lp), valid), oh), tf.div(dy, n));
      return [g, tf.zerosLike(targets)];
    },
  };
}) as unknown as (logits: Tensor, targets: Tensor) => Tensor;

/**
 * Mean negative log-likelihood of `targets` (int32, shape [N]) under `logits` ([N, V]).
 * Targets < 0 are ignored (masked positions); the mean is over the counted ones.
 */
export function crossEntropy(logits: Tensor, targets: Tensor): tf.Scalar {
  const l2 = logits.rank === 2 ? logits : tf.reshape(logits, [-1, logits.shape[logits.rank - 1]!]);
  const t1 = targets.rank === 1 ? targets : tf.reshape(targets, [-1]);
  return crossEntropyWithGrad(l2, t1) as tf.Scalar;
}

/** The composed-op versions used where the fused kernels are not available (tfjs-node); for tests. */
export const composedOps = {
  gelu: (x: Tensor) => geluWithGrad(x),
  layerNorm: composedLayerNorm,
  causalSoftmax: composedCausalSoftmax,
};
