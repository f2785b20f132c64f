/**
 * AdamW (decoupled weight decay, as torch.optim.AdamW) over a name -> tensor parameter map, with
 * global-norm gradient clipping. Weight decay applies only to the parameters marked for it
 * (matrices and embeddings). On wasm and cpu one fused JavaScript kernel updates a parameter and
 * both moments in a single pass; other backends use tf ops.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor, NamedTensorInfoMap, NamedTensorMap, NamedAttrMap, KernelBackend, TensorInfo } from '@tensorflow/tfjs-core';
import { jsKernel } from '../model/kernels.ts';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const DEFAULT_ADAMW: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

export interface AdamWState {
  step: number;
  m: Map<string, Tensor>;
  v: Map<string, Tensor>;
}

const KERNEL = 'TeamllmAdamW';
/** One call updating every parameter (the native backend has it): fewer kernel launches per step. */
const MULTI_KERNEL = 'TeamllmAdamWMulti';
/** Σ g² over every gradient in one call (the native backend has it). */
const SUM_SQUARES_KERNEL = 'TeamllmSumSquares';

function adamwKernel(args: { inputs: NamedTensorInfoMap; backend: KernelBackend; attrs?: NamedAttrMap }): TensorInfo[] {
  const { p, g, m, v } = args.inputs as Record<'p' | 'g' | 'm' | 'v', TensorInfo>;
  const a = args.attrs as Record<string, number>;
  const lr = a.lr!;
  const b1 = a.beta1!;
  const b2 = a.beta2!;
  const eps = a.eps!;
  const decay = 1 - lr * a.weightDecay!;
  const stepSize = lr / a.bc1!;
  const invSqrtBc2 = 1 / Math.sqrt(a.bc2!);
  const scale = a.gradScale!;
  const spec = { shape: p.shape, dtype: 'float32' as const };
  return jsKernel(args.backend, [p, g, m, v], [spec, spec, spec], ([pv, gv, mv, vv], [po, mo, vo]) => {
    const P = pv as Float32Array;
    const G = gv as Float32Array;
    const M = mv as Float32Array;
    const V = vv as Float32Array;
    const PO = po as Float32Array;
    const MO = mo as Float32Array;
    const VO = vo as Float32Array;
    for (let i = 0; i < P.length; i++) {
      const gi = G[i]! * scale;
      const mi = b1 * M[i]! + (1 - b1) * gi;
      const vi = b2 * V[i]! + (1 - b2) * gi * gi;
      MO[i] = mi;
      VO[i] = vi;
      PO[i] = P[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) * invSqrtBc2 + eps);
    }
  });
}

for (const backendName of ['wasm', 'cpu']) {
  if (!tf.getKernel(KERNEL, backendName)) {
    tf.registerKernel({ kernelName: KERNEL, backendName, kernelFunc: adamwKernel as unknown as tf.KernelFunc });
  }
}

export class AdamW {
  readonly options: AdamWOptions;
  step = 0;
  m = new Map<string, Tensor>();
  v = new Map<string, Tensor>();

  constructor(
    options: Partial<AdamWOptions>,
    /** Which parameters get weight decay. */
    private readonly decays: (name: string) => boolean,
    /** Use the fused kernel where the backend has it (default true). */
    private readonly useFused = true,
  ) {
    this.options = { ...DEFAULT_ADAMW, ...options };
  }

  /**
   * One update. `grads` are scaled by `gradScale` first (clipping). Returns the new parameter map;
   * old parameter, moment and gradient tensors are left to the caller (params) or disposed (moments).
   */
  apply(params: Map<string, Tensor>, grads: Map<string, Tensor>, lr: number, gradScale = 1): Map<string, Tensor> {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    if (this.useFused && tf.getKernel(MULTI_KERNEL, tf.getBackend()) !== undefined) return this.applyMulti(params, grads, lr, gradScale, bc1, bc2);
    const fused = this.useFused && tf.getKernel(KERNEL, tf.getBackend()) !== undefined;
    const next = new Map<string, Tensor>();
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) {
        next.set(name, p);
        continue;
      }
      const m = this.m.get(name) ?? tf.keep(tf.zerosLike(p));
      const v = this.v.get(name) ?? tf.keep(tf.zerosLike(p));
      const wd = this.decays(name) ? weightDecay : 0;
      let out: [Tensor, Tensor, Tensor];
      if (fused) {
        out = tf.engine().runKernel(KERNEL, { p, g, m, v }, {
          lr, beta1, beta2, eps, weightDecay: wd, bc1, bc2, gradScale,
        } as unknown as NamedAttrMap) as unknown as [Tensor, Tensor, Tensor];
      } else {
        out = tf.tidy(() => {
          const gs = tf.mul(g, gradScale);
          const m2 = tf.add(tf.mul(m, beta1), tf.mul(gs, 1 - beta1));
          const v2 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(gs), 1 - beta2));
          const denom = tf.add(tf.div(tf.sqrt(v2), Math.sqrt(bc2)), eps);
          const p2 = tf.sub(tf.mul(p, 1 - lr * wd), tf.mul(tf.div(m2, denom), lr / bc1));
          return [p2, m2, v2] as [Tensor, Tensor, Tensor];
        });
      }
      m.dispose();
      v.dispose();
      this.m.set(name, tf.keep(out[1]));
      this.v.set(name, tf.keep(out[2]));
      next.set(name, tf.keep(out[0]));
    }
    return next;
  }

  /** The same update as one kernel call for all parameters (backends with TeamllmAdamWMulti). */
  private applyMulti(params: Map<string, Tensor>, grads: Map<string, Tensor>, lr: number, gradScale: number, bc1: number, bc2: number): Map<string, Tensor> {
    const { beta1, beta2, eps, weightDecay } = this.options;
    const next = new Map<string, Tensor>();
    const inputs: Record<string, Tensor> = {};
    const names: string[] = [];
    const weightDecays: number[] = [];
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) {
        next.set(name, p);
        continue;
      }
      const i = names.length;
      names.push(name);
      weightDecays.push(this.decays(name) ? weightDecay : 0);
      inputs[`p${i}`] = p;
      inputs[`g${i}`] = g;
      inputs[`m${i}`] = this.m.get(name) ?? tf.keep(tf.zerosLike(p));
      inputs[`v${i}`] = this.v.get(name) ?? tf.keep(tf.zerosLike(p));
    }
    if (names.length === 0) return next;
    const out = tf.engine().runKernel(MULTI_KERNEL, inputs as NamedTensorMap, {
      lr, beta1, beta2, eps, bc1, bc2, gradScale, weightDecays,
    } as unknown as NamedAttrMap) as unknown as Tensor[];
    names.forEach((name, i) => {
      inputs[`m${i}`]!.dispose();
      inputs[`v${i}`]!.dispose();
      next.set(name, tf.keep(out[3 * i]!));
      this.m.set(name, tf.keep(out[3 * i + 1]!));
      this.v.set(name, tf.keep(out[3 * i + 2]!));
    });
    return next;
  }

  /** Moments as named arrays for a checkpoint ("m.<param>", "v.<param>"). */
  stateTensors(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [k, t] of this.m) out.set(`m.${k}`, t);
    for (const [k, t] of this.v) out.set(`v.${k}`, t);
    return out;
  }

  loadState(step: number, tensors: Map<string, Tensor>): void {
    this.dispose();
    this.step = step;
    for (const [k, t] of tensors) {
      if (k.startsWith('m.')) this.m.set(k.slice(2), tf.keep(t));
      else if (k.startsWith('v.')) this.v.set(k.slice(2), tf.keep(t));
    }
  }

  dispose(): void {
    for (const t of this.m.values()) t.dispose();
    for (const t of this.v.values()) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** sqrt(Σ‖g‖²) over all gradients (one read back from the backend). */
export function globalNorm(grads: Iterable<Tensor>): number {
  const list = [...grads];
  if (list.length === 0) return 0;
  if (tf.getKernel(SUM_SQUARES_KERNEL, tf.getBackend()) !== undefined) {
    const inputs = Object.fromEntries(list.map((g, i) => [`x${i}`, g]));
    const sq = tf.engine().runKernel(SUM_SQUARES_KERNEL, inputs as NamedTensorMap, {}) as Tensor;
    const v = sq.dataSync()[0]!;
    sq.dispose();
    return Math.sqrt(v);
  }
  const sq = tf.tidy(() => tf.addN(list.map((g) => tf.sum(tf.square(g)))));
  const v = sq.dataSync()[0]!;
  sq.dispose();
  return Math.sqrt(v);
}
