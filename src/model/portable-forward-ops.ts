/**
 * GPT's op set on every backend (./ops.ts: wasm-friendly products, fused elementwise kernels
 * where registered), with tf.dropout masks drawn in call order from the step's seed.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { causalSoftmax, crossEntropy, gelu, layerNorm, linear, matMul } from './ops.ts';
import { mergeHeads, SeededDropout, splitHeads, type ForwardOps, type PassOps } from './forward-ops.ts';

/** softmax(q·kT·scale, causal from `past`), with `drop` on the probabilities, times v. */
function attend(q: Tensor, kT: Tensor, v: Tensor, past: number, drop: (p: Tensor) => Tensor): Tensor {
  const hs = q.shape[q.rank - 1]!;
  return matMul(drop(causalSoftmax(matMul(q, kT), 1 / Math.sqrt(hs), past)), v);
}

export const PORTABLE_FORWARD_OPS: ForwardOps = {
  layerNorm,
  linear,
  gelu,
  linearGelu: (x, weight, bias) => gelu(linear(x, weight, bias)),
  causalAttention: (q, kT, v, past) => attend(q, kT, v, past, (p) => p),
  // Explicit transpose: on wasm a transposed operand falls off XNNPACK's fast path (./ops.ts).
  head: (x, wte) => matMul(x, tf.transpose(wte)),
  crossEntropy,
  pass(nHead: number, rate: number, seed: number): PassOps {
    // One stream for the whole pass: the masks follow the order the forward applies them in.
    const masks = new SeededDropout(seed * 1000);
    const drop = (x: Tensor) => masks.apply(x, rate);
    return {
      dropEmbeddings: drop,
      selfAttention(qkv) {
        const { q, kT, v } = splitHeads(qkv, nHead);
        return mergeHeads(attend(q, kT, v, 0, drop));
      },
      dropResidual: drop,
    };
  },
};
