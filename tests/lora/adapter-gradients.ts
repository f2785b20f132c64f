/**
 * The finite-difference check of an adapter's gradients, shared by the LoRA tests of both model
 * families and DPO's: for each adapter tensor, the analytic directional derivative of `lossOf`
 * along a random direction against the central difference at step `h`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import type { LoraAdapter } from '../../src/model/lora/adapter.ts';
import type { Random } from '../../src/model/random.ts';

/** Checks every adapter tensor's gradient; returns the loss at the adapter's own values. */
export function expectAdapterGradientsMatch(adapter: LoraAdapter, lossOf: (params: tf.Tensor[]) => tf.Scalar, options: { h: number; rng: Random; tolerance?: number }): number {
  return expectGradientsMatch(adapter.paramNames, adapter.paramList(), lossOf, options);
}

/** The same check for any trainable tensors (an adapter and a head, say), named for the messages. */
export function expectGradientsMatch(names: readonly string[], values: readonly tf.Tensor[], lossOf: (params: tf.Tensor[]) => tf.Scalar, options: { h: number; rng: Random; tolerance?: number }): number {
  const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => lossOf(ps))([...values]);
  expect(grads).toHaveLength(names.length);
  const { h, rng } = options;
  for (let i = 0; i < names.length; i++) {
    const p = values[i]!;
    const d = tf.tensor(rng.normalArray(p.size, 1), p.shape);
    const analytic = tf.sum(tf.mul(grads[i]!, d)).dataSync()[0]!;
    const shifted = (sign: number) => tf.tidy(() => lossOf(values.map((q, j) => (j === i ? tf.add(q, tf.mul(d, sign * h)) : q))).dataSync()[0]!);
    const numeric = (shifted(1) - shifted(-1)) / (2 * h);
    const err = Math.abs(analytic - numeric) / Math.max(1e-3, Math.abs(analytic) + Math.abs(numeric));
    expect(err, `${names[i]}: analytic ${analytic} numeric ${numeric}`).toBeLessThan(options.tolerance ?? 2e-2);
    expect(Math.abs(analytic)).toBeGreaterThan(0);
    d.dispose();
  }
  const loss = value.dataSync()[0]!;
  value.dispose();
  grads.forEach((g) => g.dispose());
  return loss;
}
