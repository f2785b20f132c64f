/**
 * GPT's op set on the 'native' backend: the fused kernels of ./ops.ts, with the two fast paths
 * only this backend has (a whole training block in one kernel, a whole decode step per block in
 * one kernel). The model's dropout masks are the native backend's stateless hash (./ops.ts,
 * `dropout`), the same in the block kernel and in the per-op path; adapters' dropout is drawn
 * by gpt.ts as on every backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ForwardOps, PassOps, ResidualBranch } from '../forward-ops.ts';
import {
  block,
  blockFits,
  causalAttention,
  crossEntropy,
  decodeLayer,
  dropout,
  DROPOUT_SITE,
  gelu,
  layerNorm,
  linear,
  linearGelu,
  NO_DROPOUT,
  rmsNorm,
  rope,
  selfAttention,
  swiglu,
  type NativeDropout,
} from './ops.ts';

/** Layer i's masks have their own seed (the embeddings' mask uses the step's seed itself). */
const layerSeed = (seed: number, layer: number) => (Math.imul(seed >>> 0, 0x9e3779b1) + layer + 1) >>> 0;

const RESIDUAL_SITE: Record<ResidualBranch, number> = {
  attention: DROPOUT_SITE.residualAttention,
  mlp: DROPOUT_SITE.residualMlp,
};

export const NATIVE_FORWARD_OPS: ForwardOps = {
  layerNorm,
  linear,
  gelu,
  linearGelu,
  causalAttention,
  // The transpose is a flag of the product here: the native sgemm takes it at full speed.
  head: (x, wte) => tf.matMul(x as tf.Tensor2D, wte as tf.Tensor2D, false, true),
  crossEntropy,
  rmsNorm,
  rope,
  swiglu,
  pass(nHead: number, rate: number, seed: number): PassOps {
    const drop: NativeDropout = rate > 0 ? { rate, seed } : NO_DROPOUT;
    const layerDrops: NativeDropout[] = [];
    const ofLayer = (i: number) => (layerDrops[i] ??= { rate: drop.rate, seed: layerSeed(drop.seed, i) });
    return {
      dropEmbeddings: (x) => dropout(x, drop, DROPOUT_SITE.embeddings),
      selfAttention: (qkv, layer) => selfAttention(qkv, nHead, undefined, ofLayer(layer)),
      dropResidual: (x, layer, branch) => dropout(x, ofLayer(layer), RESIDUAL_SITE[branch]),
      block: (x, w, layer) => (blockFits(w) ? block(x, w, nHead, 1e-5, ofLayer(layer)) : undefined),
    };
  },
  decodeLayer,
};
