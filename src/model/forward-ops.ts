/**
 * The contract between GPT's one forward pass (gpt.ts) and the op sets it runs on: the portable
 * set (./portable-forward-ops.ts, every backend) and the native set (./native/forward-ops.ts, the
 * fused kernels). Both op sets depend on this file, never on gpt.ts, so neither can form a cycle
 * with the model.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import type { BlockWeights } from './native/ops.ts';

export type { BlockWeights } from './native/ops.ts';

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

/**
 * The linear projections of a block, by the names of their weights: `transformer.h.<i>.<site>.weight`
 * (gpt) or `model.layers.<i>.<site>.weight` (llama).
 */
export type ProjectionSite = GptProjectionSite | LlamaProjectionSite;
export type GptProjectionSite = 'attn.c_attn' | 'attn.c_proj' | 'mlp.c_fc' | 'mlp.c_proj';
export type LlamaProjectionSite =
  | 'self_attn.q_proj'
  | 'self_attn.k_proj'
  | 'self_attn.v_proj'
  | 'self_attn.o_proj'
  | 'mlp.gate_proj'
  | 'mlp.up_proj'
  | 'mlp.down_proj';

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
export type ProjectionHook = ((x: Tensor, y: Tensor, ctx: ProjectionHookContext) => Tensor) & {
  /**
   * Where the hook's change is a plain low-rank update y + scale·(x·aᵀ)·bᵀ (LoRA without dropout on
   * its input), that update, so that a frozen projection can add it in its own kernel
   * (frozen-linear.ts, frozenLoraLinear); undefined: call the hook.
   */
  lowRank?(ctx: ProjectionHookContext): { a: Tensor; b: Tensor; scale: number } | undefined;
};

/** The branch of a block whose output the model's dropout masks before the residual add. */
export type ResidualBranch = 'attention' | 'mlp';

/**
 * The ops of one forward pass that depend on its dropout. The two backends draw the model's
 * masks differently (tf.dropout's random stream in call order, or a stateless hash per layer and
 * site that the native backward recomputes), so the masks are the op set's business.
 */
export interface PassOps {
  dropEmbeddings(x: Tensor): Tensor;
  /** Uncached causal self-attention, qkv [B, T, 3C] -> [B, T, C] heads merged, dropout on the probabilities. */
  selfAttention(qkv: Tensor, layer: number): Tensor;
  dropResidual(x: Tensor, layer: number, branch: ResidualBranch): Tensor;
  /** A whole block in one kernel, or undefined where the backend has none for these weights. */
  block?(x: Tensor, w: BlockWeights, layer: number): Tensor | undefined;
}

/** What differs between backends in GPT's forward; the layer loop itself is written once, in gpt.ts. */
export interface ForwardOps {
  layerNorm(x: Tensor, weight: Tensor, bias?: Tensor): Tensor;
  linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor;
  gelu(x: Tensor): Tensor;
  /** GELU(x · W (+ b)), the MLP's up-projection. */
  linearGelu(x: Tensor, weight: Tensor, bias?: Tensor): Tensor;
  /** softmax(q·kT/√hs, causal from `past`)·v for the KV-cache layout (q [B, H, T, hs], kT [B, H, hs, S]); never trains. */
  causalAttention(q: Tensor, kT: Tensor, v: Tensor, past: number): Tensor;
  /** The output projection x [N, C] · wteᵀ -> [N, V] for a [V, C] table (tied embeddings, or llama's lm_head). */
  head(x: Tensor, wte: Tensor): Tensor;
  crossEntropy(logits: Tensor, targets: Tensor): tf.Scalar;
  /** Llama's RMSNorm, SwiGLU and RoPE as fused kernels; absent where the backend has none (ops.ts composes them). */
  rmsNorm?(x: Tensor, weight: Tensor, eps: number): Tensor;
  swiglu?(gate: Tensor, up: Tensor): Tensor;
  /** RoPE on x [B, T, H, d] with cos, sin [T, 1, d] (ops.ts's rope). */
  rope?(x: Tensor, cos: Tensor, sin: Tensor): Tensor;
  /** The pass's ops with the model's dropout at `rate` (0: none), masks reproducible from `seed`. */
  pass(nHead: number, rate: number, seed: number): PassOps;
  /**
   * One block for one new token of batch 1 against a full cache, in one kernel: [x, kT, v] with
   * the cache one position longer. Absent where the backend has no such kernel.
   */
  decodeLayer?(x: Tensor, kT: Tensor, v: Tensor, w: BlockWeights): [Tensor, Tensor, Tensor];
}

/** qkv [B, T, 3C] -> q [B, H, T, hs], keys transposed kT [B, H, hs, T], v [B, H, T, hs]. */
export function splitHeads(qkv: Tensor, nHead: number): { q: Tensor; kT: Tensor; v: Tensor } {
  const [B, T, C3] = qkv.shape as [number, number, number];
  const hs = C3 / 3 / nHead;
  const [q0, k0, v0] = tf.split(qkv, 3, 2) as [Tensor, Tensor, Tensor];
  return {
    q: tf.transpose(tf.reshape(q0, [B, T, nHead, hs]), [0, 2, 1, 3]),
    kT: tf.transpose(tf.reshape(k0, [B, T, nHead, hs]), [0, 2, 3, 1]),
    v: tf.transpose(tf.reshape(v0, [B, T, nHead, hs]), [0, 2, 1, 3]),
  };
}

/** y [B, H, T, hs] -> [B, T, C], ready for c_proj. */
export function mergeHeads(y: Tensor): Tensor {
  const [B, H, T, hs] = y.shape as [number, number, number, number];
  return tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [B, T, H * hs]);
}

/**
 * tf.dropout with seeds handed out in call order from `base`, so a pass is reproducible from one
 * seed (adapters' dropout on every backend, the model's own on the portable ops).
 */
export class SeededDropout {
  private counter = 0;
  constructor(private readonly base: number) {}
  apply(x: Tensor, rate: number): Tensor {
    if (rate <= 0) return x;
    this.counter += 1;
    return tf.dropout(x, rate, undefined, this.base + this.counter);
  }
}
