/**
 * Parity harness: run the same function on the cpu backend (the reference) and on 'native', with
 * the same inputs and the same upstream gradient, and compare outputs and input gradients.
 */
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { loadNativeBackend, type NativeLoadResult } from '../../src/model/native/index.ts';

export { tf };

let loaded: NativeLoadResult | undefined;

/**
 * Loads the addon once; tests skip (with the reason printed) when it is not built, except under
 * CI=true: CI installs the compiler and OpenBLAS (.ci/run), so there a missing addon fails the run.
 */
export async function nativeReady(): Promise<NativeLoadResult> {
  loaded ??= await loadNativeBackend();
  if (!loaded.ok) {
    if (process.env.CI === 'true') throw new Error(`CI=true and the native backend did not load, so its tests cannot run: ${loaded.reason}`);
    console.warn(`native tests skipped: ${loaded.reason}`);
  }
  return loaded;
}

export const nativeLoad = await nativeReady();
export const hasNative = nativeLoad.ok;

/** Deterministic pseudo-random numbers (mulberry32). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  array(n: number, scale = 1, offset = 0): Float32Array {
    return Float32Array.from({ length: n }, () => offset + scale * this.normal());
  }
}

export interface Input {
  shape: number[];
  dtype?: 'float32' | 'int32';
  data: Float32Array | Int32Array;
  /** Differentiate with respect to this input (default: float32 inputs). */
  grad?: boolean;
}

export const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export function floatInput(rng: Rng, shape: number[], scale = 1, offset = 0): Input {
  return { shape, data: rng.array(size(shape), scale, offset) };
}

export function intInput(shape: number[], data: Int32Array): Input {
  return { shape, dtype: 'int32', data };
}

interface Result {
  value: Float32Array;
  shape: number[];
  grads: Float32Array[];
}

function runOn(backend: string, f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: Input[], dySeed: number, withGrad: boolean): Result {
  const ok = tf.engine().registryFactory[backend] !== undefined;
  if (!ok) throw new Error(`backend ${backend} is not registered`);
  // setBackend is async only for the first initialisation; both are initialised in setup().
  tf.engine().setBackend(backend) as unknown;
  const run = (): Result => {
    const xs = inputs.map((i) => tf.tensor(i.data.slice(), i.shape, i.dtype ?? 'float32'));
    const y = f(...xs);
    const value = Float32Array.from(y.dataSync());
    const result: Result = { value, shape: y.shape, grads: [] };
    if (!withGrad) return result;
    const gi = inputs.map((i, k) => ((i.grad ?? (i.dtype ?? 'float32') === 'float32') ? k : -1)).filter((k) => k >= 0);
    if (gi.length === 0) return result;
    const rng = new Rng(dySeed);
    const dy = tf.tensor(rng.array(y.size), y.shape);
    const g = tf.grads((...ds: tf.Tensor[]) => {
      const all = xs.slice();
      gi.forEach((k, j) => (all[k] = ds[j]!));
      return f(...all);
    });
    result.grads = g(
      gi.map((k) => xs[k]!),
      dy,
    ).map((t) => Float32Array.from(t.dataSync()));
    return result;
  };
  // tidy() only tracks tensors: run inside a scope by hand so everything made here is disposed.
  tf.engine().startScope();
  try {
    return run();
  } finally {
    tf.engine().endScope();
  }
}

/** Both backends must be initialised before the synchronous switching in runOn. */
export async function setup(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
  if (hasNative) {
    await tf.setBackend('native');
    await tf.ready();
  }
}

export function expectClose(actual: Float32Array, expected: Float32Array, label: string, rtol = 1e-4, atol = 1e-5): void {
  expect(actual.length, `${label}: length`).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue; // also covers infinities
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= worst)) {
      worst = Number.isNaN(excess) ? Infinity : excess;
      at = i;
    }
  }
  if (at >= 0) {
    expect.fail(`${label}: element ${at} is ${actual[at]}, expected ${expected[at]} (rtol ${rtol}, atol ${atol})`);
  }
}

export interface ParityOptions {
  rtol?: number;
  atol?: number;
  grad?: boolean;
  /** Reference function (default: the same f) run on cpu. */
  reference?: (...xs: tf.Tensor[]) => tf.Tensor;
  seed?: number;
}

/** Runs f on cpu and native; compares value and gradients w.r.t. the float inputs. */
export function parity(label: string, f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: Input[], o: ParityOptions = {}): void {
  const withGrad = o.grad ?? true;
  const seed = o.seed ?? 1234;
  const ref = runOn('cpu', o.reference ?? f, inputs, seed, withGrad);
  const got = runOn('native', f, inputs, seed, withGrad);
  expect(got.shape, `${label}: shape`).toEqual(ref.shape);
  expectClose(got.value, ref.value, `${label}: value`, o.rtol, o.atol);
  expect(got.grads.length, `${label}: gradient count`).toBe(ref.grads.length);
  got.grads.forEach((g, i) => expectClose(g, ref.grads[i]!, `${label}: gradient ${i}`, o.rtol ?? 1e-4, (o.atol ?? 1e-5) * 10));
}

/** Sizes the issue asks for: 1, 3, 17, 65 and a couple of larger ones. */
export const ODD = [1, 3, 17, 65];
