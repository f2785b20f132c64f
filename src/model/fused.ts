/**
 * Fused JavaScript kernels (registered for the wasm and cpu backends): LayerNorm, GELU and the
 * causal softmax of attention, forward and backward, each one kernel call instead of 5-10 tfjs
 * ops. ops.ts uses them where they are faster (see fusedAvailable) and composed tf ops elsewhere.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelBackend, NamedAttrMap, NamedTensorInfoMap, Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { jsKernel } from './kernels.ts';

type KernelArgs = { inputs: NamedTensorInfoMap; backend: KernelBackend; attrs?: NamedAttrMap };

const LN_FWD = 'TeamllmLayerNorm';
const LN_BWD = 'TeamllmLayerNormGrad';
const GELU_FWD = 'TeamllmGelu';
const GELU_BWD = 'TeamllmGeluGrad';
const SOFTMAX_FWD = 'TeamllmCausalSoftmax';
const SOFTMAX_BWD = 'TeamllmCausalSoftmaxGrad';

/** erfc with fractional error < 1.2e-7 (Numerical Recipes' Chebyshev fit). */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

const INV_SQRT2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

function layerNormKernel(args: KernelArgs): TensorInfo[] {
  const { x, weight, bias } = args.inputs as Record<string, TensorInfo>;
  const eps = Number(args.attrs?.eps ?? 1e-5);
  const C = x!.shape[x!.shape.length - 1]!;
  const N = x!.shape.reduce((a, b) => a * b, 1) / C;
  const ins = bias ? [x!, weight!, bias] : [x!, weight!];
  return jsKernel(
    args.backend,
    ins,
    [
      { shape: x!.shape, dtype: 'float32' },
      { shape: [N], dtype: 'float32' },
      { shape: [N], dtype: 'float32' },
    ],
    ([xv, wv, bv], [yv, mv, rv]) => {
      const X = xv as Float32Array;
      const W = wv as Float32Array;
      const Bi = bv as Float32Array | undefined;
      const Y = yv as Float32Array;
      for (let n = 0; n < N; n++) {
        const o = n * C;
        let mean = 0;
        for (let c = 0; c < C; c++) mean += X[o + c]!;
        mean /= C;
        let v = 0;
        for (let c = 0; c < C; c++) {
          const d = X[o + c]! - mean;
          v += d * d;
        }
        const rstd = 1 / Math.sqrt(v / C + eps);
        mv![n] = mean;
        rv![n] = rstd;
        if (Bi) for (let c = 0; c < C; c++) Y[o + c] = (X[o + c]! - mean) * rstd * W[c]! + Bi[c]!;
        else for (let c = 0; c < C; c++) Y[o + c] = (X[o + c]! - mean) * rstd * W[c]!;
      }
    },
  );
}

function layerNormGradKernel(args: KernelArgs): TensorInfo[] {
  const { dy, x, weight, mean, rstd } = args.inputs as Record<string, TensorInfo>;
  const C = x!.shape[x!.shape.length - 1]!;
  const N = x!.shape.reduce((a, b) => a * b, 1) / C;
  return jsKernel(
    args.backend,
    [dy!, x!, weight!, mean!, rstd!],
    [
      { shape: x!.shape, dtype: 'float32' },
      { shape: [C], dtype: 'float32' },
      { shape: [C], dtype: 'float32' },
    ],
    ([dyv, xv, wv, mv, rv], [dxv, dwv, dbv]) => {
      const DY = dyv as Float32Array;
      const X = xv as Float32Array;
      const W = wv as Float32Array;
      const DX = dxv as Float32Array;
      const DW = dwv as Float32Array;
      const DB = dbv as Float32Array;
      DW.fill(0);
      DB.fill(0);
      for (let n = 0; n < N; n++) {
        const o = n * C;
        const mu = mv![n]!;
        const rs = rv![n]!;
        let sumG = 0;
        let sumGX = 0;
        for (let c = 0; c < C; c++) {
          const xhat = (X[o + c]! - mu) * rs;
          const dyc = DY[o + c]!;
          const g = dyc * W[c]!;
          sumG += g;
          sumGX += g * xhat;
          DW[c] = DW[c]! + dyc * xhat;
          DB[c] = DB[c]! + dyc;
        }
        sumG /= C;
        sumGX /= C;
        for (let c = 0; c < C; c++) {
          const xhat = (X[o + c]! - mu) * rs;
          DX[o + c] = rs * (DY[o + c]! * W[c]! - sumG - xhat * sumGX);
        }
      }
    },
  );
}

function geluKernel(args: KernelArgs): TensorInfo {
  const x = args.inputs.x!;
  return jsKernel(args.backend, [x], [{ shape: x.shape, dtype: 'float32' }], ([xv], [yv]) => {
    const X = xv as Float32Array;
    const Y = yv as Float32Array;
    for (let i = 0; i < X.length; i++) {
      const v = X[i]!;
      Y[i] = 0.5 * v * erfc(-v * INV_SQRT2);
    }
  })[0]!;
}

function geluGradKernel(args: KernelArgs): TensorInfo {
  const { dy, x } = args.inputs as Record<string, TensorInfo>;
  return jsKernel(args.backend, [dy!, x!], [{ shape: x!.shape, dtype: 'float32' }], ([dyv, xv], [dxv]) => {
    const DY = dyv as Float32Array;
    const X = xv as Float32Array;
    const DX = dxv as Float32Array;
    for (let i = 0; i < X.length; i++) {
      const v = X[i]!;
      const cdf = 0.5 * erfc(-v * INV_SQRT2);
      const pdf = Math.exp(-0.5 * v * v) * INV_SQRT_2PI;
      DX[i] = DY[i]! * (cdf + v * pdf);
    }
  })[0]!;
}

/** softmax(scale · s) over the last axis, query i (at position past + i) seeing keys 0..past + i. */
function causalSoftmaxKernel(args: KernelArgs): TensorInfo {
  const s = args.inputs.scores!;
  const scale = Number(args.attrs!.scale);
  const past = Number(args.attrs!.past);
  const S = s.shape[s.shape.length - 1]!;
  const T = s.shape[s.shape.length - 2]!;
  const rows = s.shape.reduce((a, b) => a * b, 1) / S;
  return jsKernel(args.backend, [s], [{ shape: s.shape, dtype: 'float32' }], ([sv], [yv]) => {
    const X = sv as Float32Array;
    const Y = yv as Float32Array;
    for (let r = 0; r < rows; r++) {
      const o = r * S;
      const visible = Math.min(S, past + (r % T) + 1);
      let max = -Infinity;
      for (let j = 0; j < visible; j++) max = Math.max(max, X[o + j]! * scale);
      let sum = 0;
      for (let j = 0; j < visible; j++) {
        const e = Math.exp(X[o + j]! * scale - max);
        Y[o + j] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let j = 0; j < visible; j++) Y[o + j] = Y[o + j]! * inv;
      for (let j = visible; j < S; j++) Y[o + j] = 0;
    }
  })[0]!;
}

function causalSoftmaxGradKernel(args: KernelArgs): TensorInfo {
  const { dy, y } = args.inputs as Record<string, TensorInfo>;
  const scale = Number(args.attrs!.scale);
  const S = y!.shape[y!.shape.length - 1]!;
  const rows = y!.shape.reduce((a, b) => a * b, 1) / S;
  return jsKernel(args.backend, [dy!, y!], [{ shape: y!.shape, dtype: 'float32' }], ([dyv, yv], [dxv]) => {
    const DY = dyv as Float32Array;
    const Y = yv as Float32Array;
    const DX = dxv as Float32Array;
    for (let r = 0; r < rows; r++) {
      const o = r * S;
      let dot = 0;
      for (let j = 0; j < S; j++) dot += DY[o + j]! * Y[o + j]!;
      for (let j = 0; j < S; j++) DX[o + j] = scale * Y[o + j]! * (DY[o + j]! - dot);
    }
  })[0]!;
}

const KERNELS: [string, (args: KernelArgs) => TensorInfo | TensorInfo[]][] = [
  [LN_FWD, layerNormKernel],
  [LN_BWD, layerNormGradKernel],
  [GELU_FWD, geluKernel],
  [GELU_BWD, geluGradKernel],
  [SOFTMAX_FWD, causalSoftmaxKernel],
  [SOFTMAX_BWD, causalSoftmaxGradKernel],
];

for (const backendName of ['wasm', 'cpu']) {
  for (const [kernelName, fn] of KERNELS) {
    if (!tf.getKernel(kernelName, backendName)) {
      tf.registerKernel({ kernelName, backendName, kernelFunc: fn as unknown as tf.KernelFunc });
    }
  }
}

/**
 * Whether ops.ts should use the fused kernels for a tensor of `size` elements on the current
 * backend: always on cpu (5-10x faster than its own ops). On wasm the composed ops win on large
 * tensors (XNNPACK's SIMD softmax, erf... beat scalar JavaScript 2-5x), the fused ones on small.
 */
export function fusedAvailable(size = Infinity): boolean {
  const b = tf.getBackend();
  if (tf.getKernel(LN_FWD, b) === undefined) return false;
  // Small tensors (one token during generation): one kernel call beats several tfjs ops.
  return b === 'cpu' || size <= FUSED_MAX_SIZE_ON_WASM;
}

/** Up to this many elements the fused kernels are used on wasm too. */
export const FUSED_MAX_SIZE_ON_WASM = 8192;

const run = (name: string, inputs: Record<string, Tensor>, attrs: Record<string, number> = {}) =>
  tf.engine().runKernel(name, inputs, attrs as unknown as NamedAttrMap) as unknown as Tensor | Tensor[];

type Grad = (dy: Tensor, saved: Tensor[]) => Tensor | Tensor[];
const customGrad = (f: (...args: never[]) => { value: Tensor; gradFunc: Grad }) =>
  tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (...args: Tensor[]) => Tensor;

const layerNormBias = customGrad((x: Tensor, w: Tensor, b: Tensor, save: tf.GradSaveFunc) => {
  const [y, mean, rstd] = run(LN_FWD, { x, weight: w, bias: b }) as Tensor[];
  save([x, w, mean!, rstd!]);
  return {
    value: y!,
    gradFunc: (dy, saved) => {
      const [sx, sw, sm, sr] = saved as Tensor[];
      return run(LN_BWD, { dy, x: sx!, weight: sw!, mean: sm!, rstd: sr! }) as Tensor[];
    },
  };
});

const layerNormNoBias = customGrad((x: Tensor, w: Tensor, save: tf.GradSaveFunc) => {
  const [y, mean, rstd] = run(LN_FWD, { x, weight: w }) as Tensor[];
  save([x, w, mean!, rstd!]);
  return {
    value: y!,
    gradFunc: (dy, saved) => {
      const [sx, sw, sm, sr] = saved as Tensor[];
      const [dx, dw, db] = run(LN_BWD, { dy, x: sx!, weight: sw!, mean: sm!, rstd: sr! }) as Tensor[];
      db!.dispose();
      return [dx!, dw!];
    },
  };
});

export function fusedLayerNorm(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  return bias ? layerNormBias(x, weight, bias) : layerNormNoBias(x, weight);
}

export const fusedGelu = customGrad((x: Tensor, save: tf.GradSaveFunc) => {
  save([x]);
  return {
    value: run(GELU_FWD, { x }) as Tensor,
    gradFunc: (dy, saved) => [run(GELU_BWD, { dy, x: saved[0]! }) as Tensor],
  };
});

/** softmax(scale · scores + causal mask) for scores [..., T, past + T]. */
export function fusedCausalSoftmax(scores: Tensor, scale: number, past: number): Tensor {
  const f = customGrad((s: Tensor, save: tf.GradSaveFunc) => {
    const y = run(SOFTMAX_FWD, { scores: s }, { scale, past }) as Tensor;
    save([y]);
    return {
      value: y,
      gradFunc: (dy, saved) => [run(SOFTMAX_BWD, { dy, y: saved[0]! }, { scale }) as Tensor],
    };
  });
  return f(scores);
}
