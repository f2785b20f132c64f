/**
 * LoRA on an imported chat model (src/model/import/): the inference engine's weights as the
 * trainable model's parameters, and an adapter merged back into the engine's weights to serve.
 *
 * Training runs on the weights as they are served. With `{ frozen: true }` (SFT's choice) the
 * matrices stay frozen in their stored dtype (bf16, f16, int8, f32), the very arrays the engine
 * holds (no copy: the gate's engine and the trainable model share them), and their products run
 * the serving kernels forward and the transposed kernel backward (../frozen-linear.ts); norms
 * and biases become float32 tensors. Without it every matrix is widened exactly to a float32
 * tensor (4 bytes a parameter; what code that reads `model.params` directly needs, and the
 * reference the frozen path is tested against).
 *
 * Serving merges W' = W + (alpha/r)·B·A into the matrices an adapter touches, kept in float32
 * (a bf16 or int8 rounding of W' would swallow most of a small update); every other matrix stays
 * in its stored dtype. Plain arrays throughout: this runs in the serving worker, which has no
 * tensor backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { GPT, parameterSpecs } from '../gpt.ts';
import { fromLlamaConfig } from '../config.ts';
import { LlamaModel } from '../import/llama.ts';
import { dequantize, f32Matrix, type WeightMatrix } from '../import/weights.ts';
import type { PeftLora } from './peft.ts';

/** The imported model's weights as a trainable llama-arch GPT (context: the model's own). */
export function trainableFromChatModel(model: LlamaModel, options: { frozen?: boolean } = {}): GPT {
  const frozen = options.frozen ?? false;
  const config = fromLlamaConfig(model.config);
  const weights = model.weights();
  const params = new Map<string, tf.Tensor>();
  const matrices = new Map<string, WeightMatrix>();
  for (const s of parameterSpecs(config)) {
    const w = weights.get(s.name);
    if (!w) throw new Error(`the imported model has no ${s.name}`);
    if (frozen && !(w instanceof Float32Array)) matrices.set(s.name, w);
    else params.set(s.name, tf.keep(tf.tensor(w instanceof Float32Array ? w : dequantize(w), s.shape, 'float32')));
  }
  const gpt = new GPT(config, params, matrices);
  // The engine's own kernel choice (e.g. 'portable' in tests) for the frozen products.
  if (model.kernels.quant) gpt.frozenKernels = { quant: model.kernels.quant };
  return gpt;
}

/** (alpha/r)·B·A [out, in] of one projection, added into `w` (its float32 values, [out, in]). */
function addLowRank(w: Float32Array, a: Float32Array, b: Float32Array, out: number, inp: number, r: number, scale: number): void {
  for (let o = 0; o < out; o++) {
    const row = o * inp;
    for (let k = 0; k < r; k++) {
      const s = scale * b[o * r + k]!;
      if (s === 0) continue;
      const ak = k * inp;
      for (let i = 0; i < inp; i++) w[row + i]! += s * a[ak + i]!;
    }
  }
}

/**
 * A new engine with the adapter merged into its weights: the touched matrices in float32, the
 * others shared with `model` as they are (do not mutate either).
 */
export function mergeLoraIntoChatModel(model: LlamaModel, lora: PeftLora): LlamaModel {
  const weights = model.weights();
  const r = lora.config.rank;
  const scale = lora.config.alpha / r;
  for (const [name, a] of lora.tensors) {
    if (!name.endsWith('.lora_A')) continue;
    const site = name.slice(0, -'.lora_A'.length);
    const b = lora.tensors.get(`${site}.lora_B`);
    const w = weights.get(`${site}.weight`);
    if (!b) throw new Error(`the adapter has ${site}.lora_A but no lora_B`);
    if (!w || w instanceof Float32Array) throw new Error(`the model has no projection ${site}.weight for the adapter`);
    const [out, inp] = [w.rows, w.cols];
    if (a.shape[1] !== inp || b.shape[0] !== out) throw new Error(`${site}: the adapter is [${b.shape[0]}×${r}]·[${r}×${a.shape[1]}], the model's projection [${out}×${inp}]: it was trained on another model`);
    const merged = w.dtype === 'f32' ? Float32Array.from(w.data) : dequantize(w);
    addLowRank(merged, a.data as Float32Array, b.data as Float32Array, out, inp, r, scale);
    weights.set(`${site}.weight`, f32Matrix(merged, out, inp));
  }
  return new LlamaModel(model.config, weights, { kernels: model.kernels, invFreq: model.invFreq });
}
