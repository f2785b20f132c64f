/**
 * Frozen projections for LoRA on an imported base: the matrix stays in the dtype it is served in
 * (bf16, f16, int8 or float32, src/model/import/weights.ts) and is never a tensor, so training
 * takes the served model's bytes instead of 4 bytes a parameter, and shares them with the engine.
 *
 *   forward   y  = x · Wᵀ      the serving kernels (EncoderKernels.linearWeight: AMX or
 *                              AVX512_BF16 for bf16, AVX512-VNNI for int8, or the portable
 *                              widening kernel)
 *   backward  dx = dy · W      the transposed kernel (linearWeightT: AMX, or AVX512_BF16, for bf16
 *                              where the CPU has it, dy rounded to bf16 as the forward rounds x;
 *                              else the exact stored weights widened to float32, float32 sums)
 *
 * With a LoRA adapter (without dropout on its input) the update is fused in on the native backend
 * (frozenLoraLinear): one kernel each way computes the frozen product and adds s·(x·Aᵀ)·Bᵀ into it.
 *
 * W gets no gradient (it is frozen). On the 'native' backend both products are kernels of that
 * backend (src/model/native/kernels.ts: pooled buffers, the profiler sees them); elsewhere (wasm,
 * cpu) the activations are read out, multiplied by the same EncoderKernels (the addon when it
 * loads, else JavaScript) and put back as a tensor.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, NamedTensorMap, Tensor } from '@tensorflow/tfjs-core';
import { encoderKernels, type EncoderKernels, type QuantKernel } from './import/encoder-kernels.ts';
import { weightRow, type WeightMatrix } from './import/weights.ts';
import { FUSED } from './native/kernels.ts';

/** Which kernels a frozen base's products run (the serving choice: 'best', or 'portable' for exact weights × float32 activations). */
export interface FrozenKernels {
  quant: QuantKernel;
}

const kernelsByQuant = new Map<QuantKernel, EncoderKernels>();
function kernelsFor(quant: QuantKernel): EncoderKernels {
  let k = kernelsByQuant.get(quant);
  if (!k) {
    k = encoderKernels('native', { quant });
    kernelsByQuant.set(quant, k);
  }
  return k;
}

/** The serving default: $TEAMLLM_QUANT_KERNEL=portable, else the fastest kernel the CPU runs. */
export function defaultFrozenKernels(): FrozenKernels {
  return { quant: process.env.TEAMLLM_QUANT_KERNEL === 'portable' ? 'portable' : 'best' };
}

function onNative(): boolean {
  return tf.getBackend() === 'native';
}

function product(x2: Tensor, w: WeightMatrix, k: FrozenKernels): Tensor {
  const m = x2.shape[0]!;
  if (onNative()) {
    return tf.engine().runKernel(FUSED.frozenLinear, { x: x2 } as unknown as NamedTensorMap, { weight: w, mode: k.quant === 'portable' ? 1 : 0 } as unknown as NamedAttrMap) as Tensor;
  }
  const y = kernelsFor(k.quant).linearWeight(x2.dataSync() as Float32Array, w, null, m);
  return tf.tensor2d(y, [m, w.rows]);
}

function productT(dy2: Tensor, w: WeightMatrix, k: FrozenKernels): Tensor {
  const m = dy2.shape[0]!;
  if (onNative()) {
    return tf.engine().runKernel(FUSED.frozenLinearT, { dy: dy2 } as unknown as NamedTensorMap, { weight: w, mode: k.quant === 'portable' ? 1 : 0 } as unknown as NamedAttrMap) as Tensor;
  }
  const dx = kernelsFor(k.quant).linearWeightT(dy2.dataSync() as Float32Array, w, m);
  return tf.tensor2d(dx, [m, w.cols]);
}

/** True while a gradient is being recorded (tf.grads & co.). */
function recording(): boolean {
  const engine = tf.engine() as unknown as { isTapeOn?: () => boolean };
  return typeof engine.isTapeOn === 'function' ? engine.isTapeOn() : true;
}

/** x [.., w.cols] · Wᵀ (+ bias) -> [.., w.rows]; differentiable with respect to x (and the bias tensor). */
export function frozenLinear(x: Tensor, w: WeightMatrix, kernels: FrozenKernels, bias?: Tensor): Tensor {
  const k = x.shape[x.rank - 1]!;
  if (k !== w.cols) throw new Error(`frozen projection: input has ${k} columns, the matrix [${w.rows}, ${w.cols}] needs ${w.cols}`);
  const lead = x.shape.slice(0, -1);
  const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, k]);
  let y2: Tensor;
  if (!recording()) y2 = product(x2, w, kernels);
  else {
    const op = tf.customGrad(((xi: Tensor) => ({
      value: product(xi, w, kernels),
      gradFunc: (dy: Tensor) => productT(dy, w, kernels),
    })) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (t: Tensor) => Tensor;
    y2 = op(x2);
  }
  const y = x.rank === 2 ? y2 : tf.reshape(y2, [...lead, w.rows]);
  return bias ? tf.add(y, bias) : y;
}

/** A LoRA update of a projection: y += scale · (x·aᵀ)·bᵀ, a [r, in], b [out, r] (src/model/lora/adapter.ts). */
export interface LowRankUpdate {
  a: Tensor;
  b: Tensor;
  scale: number;
}

/**
 * frozenLinear(x, w) + scale·(x·aᵀ)·bᵀ in one kernel each way, on the 'native' backend only
 * (undefined elsewhere: the caller composes it): the update is added into the frozen product's
 * output, and its input gradient into the frozen one's (native/src/lora.cc). Differentiable with
 * respect to x, a and b (and the bias tensor).
 */
export function frozenLoraLinear(x: Tensor, w: WeightMatrix, kernels: FrozenKernels, update: LowRankUpdate, bias?: Tensor): Tensor | undefined {
  if (!onNative()) return undefined;
  const k = x.shape[x.rank - 1]!;
  if (k !== w.cols) throw new Error(`frozen projection: input has ${k} columns, the matrix [${w.rows}, ${w.cols}] needs ${w.cols}`);
  const attrs = { weight: w, mode: kernels.quant === 'portable' ? 1 : 0, scale: update.scale } as unknown as NamedAttrMap;
  const lead = x.shape.slice(0, -1);
  const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, k]);
  const op = tf.customGrad(((xi: Tensor, a: Tensor, b: Tensor, save: tf.GradSaveFunc) => {
    const [y, t] = tf.engine().runKernel(FUSED.frozenLoraLinear, { x: xi, a, b } as unknown as NamedTensorMap, attrs) as Tensor[];
    save([xi, t!, a, b]);
    return {
      value: y!,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [sx, st, sa, sb] = saved as [Tensor, Tensor, Tensor, Tensor];
        return tf.engine().runKernel(FUSED.frozenLoraLinearGrad, { dy, x: sx, t: st, a: sa, b: sb } as unknown as NamedTensorMap, attrs) as Tensor[];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: Tensor, a: Tensor, b: Tensor) => Tensor;
  const y2 = op(x2, update.a, update.b);
  const y = x.rank === 2 ? y2 : tf.reshape(y2, [...lead, w.rows]);
  return bias ? tf.add(y, bias) : y;
}

/** Rows `ids` (int32, any shape) of a frozen table [V, C] as float32 [..ids, C]; no gradient (the table is frozen). */
export function frozenEmbedding(table: WeightMatrix, ids: Tensor): Tensor {
  const v = ids.dataSync() as Int32Array;
  const C = table.cols;
  const out = new Float32Array(v.length * C);
  for (let i = 0; i < v.length; i++) {
    const id = v[i]!;
    if (id < 0 || id >= table.rows) throw new Error(`token id ${id} is outside the vocabulary of ${table.rows}`);
    weightRow(table, id, out.subarray(i * C, (i + 1) * C));
  }
  return tf.tensor(out, [...ids.shape, C], 'float32');
}
