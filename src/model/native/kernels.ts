/**
 * Kernels of the 'native' backend.
 *
 * Every kernel of the cpu backend is registered for 'native' too (same storage, so they just
 * work); the hot ones are then replaced by calls into the addon. Each replacement handles the
 * common float32 cases and hands anything else (other dtypes, rank > 8, exotic broadcasting) to
 * the cpu kernel it replaced, so results never depend on which path ran.
 *
 * Besides TensorFlow.js's own kernel names, this registers:
 * - `TeamllmAdamW` (the name src/training/adamw.ts dispatches to when the active backend has it),
 * - `TeamllmNative*` fused kernels used by the ops in ./ops.ts (layer norm, GELU, attention,
 *   self-attention from qkv, cross-entropy, each with a backward kernel; and one-token decoding
 *   of a whole block, inference only).
 */
import * as tf from '@tensorflow/tfjs-core';
import { backend_util, slice_util, util } from '@tensorflow/tfjs-core';
import type { KernelBackend, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { NativeAddon } from './addon.ts';
import { NativeBackend } from './backend.ts';
import { profiler } from './profile.ts';

export const NATIVE_BACKEND = 'native';

interface Args {
  inputs: NamedTensorInfoMap;
  backend: KernelBackend;
  attrs?: NamedAttrMap;
}
type Impl = (args: Args, nb: NativeBackend, fallback: KernelFunc) => TensorInfo | TensorInfo[];

// Op codes shared with native/src/kernels.h.
const UNARY = {
  Exp: 0,
  Log: 1,
  Neg: 2,
  Sqrt: 3,
  Rsqrt: 4,
  Square: 5,
  Erf: 6,
  Tanh: 7,
  Sigmoid: 8,
  Relu: 9,
  Abs: 10,
  Reciprocal: 11,
} as const;
export const UNARY_GELU = 12;
const BINARY = {
  Add: 0,
  Sub: 1,
  Multiply: 2,
  RealDiv: 3,
  Maximum: 4,
  Minimum: 5,
  SquaredDifference: 6,
  Pow: 7,
} as const;
const REDUCE = { Sum: 0, Max: 1, Min: 2, Mean: 3, Prod: 4 } as const;
const ACTIVATION: Record<string, number> = { linear: 0, relu: 1, relu6: 2, sigmoid: 3, leakyrelu: 4, elu: 5 };

/** A frozen weight matrix as src/model/import/weights.ts holds it (not imported: this layer stays below the import code). */
type FrozenMatrix =
  | { dtype: 'f32'; rows: number; cols: number; data: Float32Array; scales?: undefined; group?: undefined }
  | { dtype: 'bf16' | 'f16'; rows: number; cols: number; data: Uint16Array; scales?: undefined; group?: undefined }
  | { dtype: 'int8'; rows: number; cols: number; data: Int8Array; scales: Float32Array; group: number };

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** A tensor's values as a Float32Array (a few cpu kernels store plain arrays: those are copied). */
function f32(nb: NativeBackend, t: TensorInfo): Float32Array {
  const v = nb.values(t);
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

function i32(nb: NativeBackend, t: TensorInfo): Int32Array {
  const v = nb.values(t);
  return v instanceof Int32Array ? v : Int32Array.from(v as ArrayLike<number>);
}

function allFloat(...ts: (TensorInfo | undefined)[]): boolean {
  return ts.every((t) => t === undefined || t.dtype === 'float32');
}

/** Output of a kernel: a fresh (pooled) float32 tensor filled by `fill`. */
function produce(nb: NativeBackend, shape: number[], fill: (out: Float32Array) => void): TensorInfo {
  const out = nb.alloc(size(shape));
  fill(out);
  return nb.output(shape, 'float32', out);
}

// ---- matrix products ---------------------------------------------------------------------------

function matmulShapes(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean) {
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) return undefined;
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (k !== kb) return undefined;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = size(outerA);
  const batchB = size(outerB);
  let outer: number[];
  try {
    outer = backend_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return undefined;
  }
  const batch = Math.max(batchA, batchB);
  if (size(outer) !== batch || !(batchA === batchB || batchA === 1 || batchB === 1)) return undefined;
  if (batchA === 0 || batchB === 0) return undefined;
  return { m, n, k, batchA, batchB, outShape: [...outer, m, n] };
}

function makeBatchMatMul(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const transposeA = Boolean(attrs?.transposeA);
    const transposeB = Boolean(attrs?.transposeB);
    const s = allFloat(a, b) ? matmulShapes(a, b, transposeA, transposeB) : undefined;
    if (!s) return fallback({ inputs, backend: nb, attrs });
    return produce(nb, s.outShape, (out) =>
      addon.matmul(f32(nb, a), f32(nb, b), out, s.batchA, s.batchB, s.m, s.n, s.k, transposeA, transposeB, null, 0, 0),
    );
  };
}

function makeFusedMatMul(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const { a, b, bias, preluActivationWeights } = inputs as Record<string, TensorInfo | undefined>;
    const transposeA = Boolean(attrs?.transposeA);
    const transposeB = Boolean(attrs?.transposeB);
    const act = ACTIVATION[String(attrs?.activation ?? 'linear')];
    const s = allFloat(a, b, bias) ? matmulShapes(a!, b!, transposeA, transposeB) : undefined;
    const biasSize = bias ? size(bias.shape) : 0;
    const biasOk = !bias || biasSize === 1 || (biasSize === s?.n && bias.shape[bias.shape.length - 1] === s.n);
    if (!s || act === undefined || preluActivationWeights || !biasOk) return fallback({ inputs, backend: nb, attrs });
    const alpha = Number(attrs?.leakyreluAlpha ?? 0.2);
    return produce(nb, s.outShape, (out) =>
      addon.matmul(
        f32(nb, a!),
        f32(nb, b!),
        out,
        s.batchA,
        s.batchB,
        s.m,
        s.n,
        s.k,
        transposeA,
        transposeB,
        bias ? f32(nb, bias) : null,
        act,
        alpha,
      ),
    );
  };
}

// ---- elementwise -------------------------------------------------------------------------------

function makeUnary(addon: NativeAddon, op: number): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const x = inputs.x as TensorInfo;
    if (x.dtype !== 'float32') return fallback({ inputs, backend: nb, attrs });
    return produce(nb, [...x.shape], (out) => addon.unary(op, f32(nb, x), out));
  };
}

function alignShape(shape: readonly number[], rank: number): number[] {
  return [...Array(rank - shape.length).fill(1), ...shape];
}

function makeBinary(addon: NativeAddon, op: number): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    if (!allFloat(a, b)) return fallback({ inputs, backend: nb, attrs });
    const outShape = backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const rank = outShape.length;
    if (rank > 8) return fallback({ inputs, backend: nb, attrs });
    return produce(nb, outShape, (out) =>
      addon.binary(op, f32(nb, a), alignShape(a.shape, rank), f32(nb, b), alignShape(b.shape, rank), out, outShape),
    );
  };
}

function makeAddN(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const list = inputs as unknown as TensorInfo[];
    const first = list[0];
    if (!first || list.length < 2 || !list.every((t) => t.dtype === 'float32' && util.arraysEqual(t.shape, first.shape))) {
      return fallback({ inputs, backend: nb, attrs });
    }
    return produce(nb, [...first.shape], (out) =>
      addon.addN(
        list.map((t) => f32(nb, t)),
        out,
      ),
    );
  };
}

function makeTranspose(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const x = inputs.x as TensorInfo;
    const perm = (attrs?.perm as number[] | undefined) ?? [];
    if (x.dtype !== 'float32' || x.shape.length > 8 || perm.length !== x.shape.length) {
      return fallback({ inputs, backend: nb, attrs });
    }
    const outShape = perm.map((p) => x.shape[p]!);
    return produce(nb, outShape, (out) => addon.transpose(f32(nb, x), [...x.shape], perm, out));
  };
}

function makeReduce(addon: NativeAddon, op: number, axisAttr: 'axis' | 'reductionIndices'): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const x = inputs.x as TensorInfo;
    if (x.dtype !== 'float32') return fallback({ inputs, backend: nb, attrs });
    const rank = x.shape.length;
    const axes = [...new Set(util.parseAxisParam(attrs?.[axisAttr] as number | number[], x.shape))].sort((p, q) => p - q);
    // The addon reduces one contiguous run of axes; others (rare) take the cpu path.
    const contiguous = axes.length > 0 && axes[axes.length - 1]! - axes[0]! === axes.length - 1;
    if (!contiguous || size(x.shape) === 0) return fallback({ inputs, backend: nb, attrs });
    const first = axes[0]!;
    const last = axes[axes.length - 1]!;
    const outer = size(x.shape.slice(0, first));
    const mid = size(x.shape.slice(first, last + 1));
    const inner = size(x.shape.slice(last + 1));
    const keepDims = Boolean(attrs?.keepDims);
    const outShape: number[] = [];
    for (let i = 0; i < rank; i++) {
      if (i < first || i > last) outShape.push(x.shape[i]!);
      else if (keepDims) outShape.push(1);
    }
    return produce(nb, outShape, (out) => addon.reduce(op, f32(nb, x), out, outer, mid, inner));
  };
}

function makeSoftmax(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const logits = inputs.logits as TensorInfo;
    const rank = logits.shape.length;
    const dim = Number(attrs?.dim ?? -1);
    if (logits.dtype !== 'float32' || rank === 0 || (dim !== -1 && dim !== rank - 1)) {
      return fallback({ inputs, backend: nb, attrs });
    }
    const cols = logits.shape[rank - 1]!;
    const rows = size(logits.shape) / Math.max(cols, 1);
    return produce(nb, [...logits.shape], (out) => addon.softmax(f32(nb, logits), out, rows, cols));
  };
}

// ---- copies: split, concat, slice -------------------------------------------------------------

/** x viewed as [outer, dim, inner] around `axis`. */
function around(shape: readonly number[], axis: number): { outer: number; dim: number; inner: number } {
  return { outer: size(shape.slice(0, axis)), dim: shape[axis]!, inner: size(shape.slice(axis + 1)) };
}

function makeSplitV(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const x = inputs.x as TensorInfo;
    if (x.dtype !== 'float32') return fallback({ inputs, backend: nb, attrs });
    const axis = util.parseAxisParam(attrs?.axis as number, x.shape)[0]!;
    const sizes = backend_util.prepareSplitSize(x, attrs?.numOrSizeSplits as number | number[], axis);
    const { outer, dim, inner } = around(x.shape, axis);
    const xv = f32(nb, x);
    let start = 0;
    return sizes.map((s) => {
      const shape = [...x.shape];
      shape[axis] = s;
      const begin = start;
      start += s;
      return produce(nb, shape, (out) => addon.copyBlock(xv, begin * inner, dim * inner, out, 0, s * inner, outer, s * inner));
    });
  };
}

function makeConcat(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const list = inputs as unknown as TensorInfo[];
    if (list.length < 2 || !list.every((t) => t.dtype === 'float32')) return fallback({ inputs, backend: nb, attrs });
    const axis = util.parseAxisParam(attrs?.axis as number, list[0]!.shape)[0]!;
    backend_util.assertParamsConsistent(
      list.map((t) => t.shape),
      axis,
    );
    const outShape = backend_util.computeOutShape(
      list.map((t) => t.shape),
      axis,
    );
    const { outer, dim, inner } = around(outShape, axis);
    return produce(nb, outShape, (out) => {
      let start = 0;
      for (const t of list) {
        const d = t.shape[axis]!;
        if (d > 0 && outer > 0) addon.copyBlock(f32(nb, t), 0, d * inner, out, start * inner, dim * inner, outer, d * inner);
        start += d;
      }
    });
  };
}

function makeSlice(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const x = inputs.x as TensorInfo;
    const [begin, sz] = slice_util.parseSliceParams(x, attrs?.begin as number[], attrs?.size as number[]) as [number[], number[]];
    // Contiguous slices: the cpu kernel returns a view (no copy), which is better still.
    if (x.dtype !== 'float32' || x.shape.length > 8 || slice_util.isSliceContinous(x.shape, begin, sz)) {
      return fallback({ inputs, backend: nb, attrs });
    }
    slice_util.assertParamsValid(x, begin, sz);
    return produce(nb, sz, (out) => addon.slice(f32(nb, x), [...x.shape], begin, sz, out));
  };
}

function makePadV2(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const x = inputs.x as TensorInfo;
    const paddings = attrs?.paddings as [number, number][] | undefined;
    if (x.dtype !== 'float32' || !paddings || paddings.length !== x.shape.length || x.shape.length > 8) {
      return fallback({ inputs, backend: nb, attrs });
    }
    const outShape = x.shape.map((d, i) => paddings[i]![0] + d + paddings[i]![1]);
    const before = paddings.map((p) => p[0]);
    return produce(nb, outShape, (out) => addon.pad(f32(nb, x), [...x.shape], before, outShape, Number(attrs?.constantValue ?? 0), out));
  };
}

// ---- embeddings --------------------------------------------------------------------------------

function makeGather(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const { x, indices } = inputs as { x: TensorInfo; indices: TensorInfo };
    const axis = Number(attrs?.axis ?? 0);
    const batchDims = Number(attrs?.batchDims ?? 0);
    if (x.dtype !== 'float32' || indices.dtype !== 'int32' || (axis !== 0 && axis !== -x.shape.length) || batchDims !== 0 || x.shape.length < 1) {
      return fallback({ inputs, backend: nb, attrs });
    }
    const ids = i32(nb, indices);
    const rows = x.shape[0]!;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id < 0 || id >= rows) throw new Error(`GatherV2: the index value ${id} is not in [0, ${rows - 1}]`);
    }
    const inner = size(x.shape.slice(1));
    const outShape = [...indices.shape, ...x.shape.slice(1)];
    return produce(nb, outShape, (out) => addon.gatherRows(f32(nb, x), rows, inner, ids, ids.length, out));
  };
}

function makeUnsortedSegmentSum(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb, fallback) => {
    const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
    const numSegments = Number(attrs?.numSegments);
    const idsRank = segmentIds.shape.length;
    if (x.dtype !== 'float32' || segmentIds.dtype !== 'int32' || !util.arraysEqual(x.shape.slice(0, idsRank), segmentIds.shape)) {
      return fallback({ inputs, backend: nb, attrs });
    }
    const inner = size(x.shape.slice(idsRank));
    const count = size(segmentIds.shape);
    const outShape = [numSegments, ...x.shape.slice(idsRank)];
    return produce(nb, outShape, (out) => addon.scatterAddRows(f32(nb, x), i32(nb, segmentIds), count, inner, out, numSegments));
  };
}

// ---- optimizer -----------------------------------------------------------------------------------

/** Same inputs, attributes and outputs as the JavaScript kernel in src/training/adamw.ts. */
function makeAdamW(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb) => {
    const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', TensorInfo>;
    const a = attrs as Record<string, number>;
    const n = size(p.shape);
    const po = nb.alloc(n);
    const mo = nb.alloc(n);
    const vo = nb.alloc(n);
    addon.adamw(f32(nb, p), f32(nb, g), f32(nb, m), f32(nb, v), po, mo, vo, a.lr!, a.beta1!, a.beta2!, a.eps!, a.weightDecay!, a.bc1!, a.bc2!, a.gradScale!);
    const shape = [...p.shape];
    return [nb.output(shape, 'float32', po), nb.output(shape, 'float32', mo), nb.output(shape, 'float32', vo)];
  };
}

/**
 * `TeamllmAdamWMulti`: the AdamW update of every parameter in one call. Inputs p0, g0, m0, v0,
 * p1, ...; attrs as TeamllmAdamW plus `weightDecays` (one per parameter). Outputs p, m, v per
 * parameter, in input order. Same arithmetic per element as TeamllmAdamW.
 */
function makeAdamWMulti(addon: NativeAddon): Impl {
  return ({ inputs, attrs }, nb) => {
    const a = attrs as Record<string, number> & { weightDecays: number[] };
    const count = a.weightDecays.length;
    const arrays: Float32Array[] = [];
    const outs: TensorInfo[] = [];
    for (let i = 0; i < count; i++) {
      const [p, g, m, v] = (['p', 'g', 'm', 'v'] as const).map((k) => inputs[`${k}${i}`] as TensorInfo);
      const n = size(p!.shape);
      const po = nb.alloc(n);
      const mo = nb.alloc(n);
      const vo = nb.alloc(n);
      arrays.push(f32(nb, p!), f32(nb, g!), f32(nb, m!), f32(nb, v!), po, mo, vo);
      const shape = [...p!.shape];
      outs.push(nb.output(shape, 'float32', po), nb.output(shape, 'float32', mo), nb.output(shape, 'float32', vo));
    }
    addon.adamwMulti(arrays, a.weightDecays, a.lr!, a.beta1!, a.beta2!, a.eps!, a.bc1!, a.bc2!, a.gradScale!);
    return outs;
  };
}

/** `TeamllmSumSquares`: inputs x0, x1, ... -> scalar Σ x² over all of them (gradient clipping). */
function makeSumSquares(addon: NativeAddon): Impl {
  return ({ inputs }, nb) => {
    const list = Object.values(inputs) as TensorInfo[];
    return nb.output([], 'float32', Float32Array.of(addon.sumSquares(list.map((t) => f32(nb, t)))));
  };
}

// ---- fused kernels (used by ./ops.ts) --------------------------------------------------------------

export const FUSED = {
  gelu: 'TeamllmNativeGelu',
  geluGrad: 'TeamllmNativeGeluGrad',
  layerNorm: 'TeamllmNativeLayerNorm',
  layerNormGrad: 'TeamllmNativeLayerNormGrad',
  attention: 'TeamllmNativeAttention',
  attentionGrad: 'TeamllmNativeAttentionGrad',
  selfAttention: 'TeamllmNativeSelfAttention',
  selfAttentionGrad: 'TeamllmNativeSelfAttentionGrad',
  decodeLayer: 'TeamllmNativeDecodeLayer',
  crossEntropy: 'TeamllmNativeCrossEntropy',
  crossEntropyGrad: 'TeamllmNativeCrossEntropyGrad',
  linearGrad: 'TeamllmNativeLinearGrad',
  linearGelu: 'TeamllmNativeLinearGelu',
  block: 'TeamllmNativeBlock',
  blockGrad: 'TeamllmNativeBlockGrad',
  dropout: 'TeamllmNativeDropout',
  frozenLinear: 'TeamllmNativeFrozenLinear',
  frozenLinearT: 'TeamllmNativeFrozenLinearT',
  frozenLoraLinear: 'TeamllmNativeFrozenLoraLinear',
  frozenLoraLinearGrad: 'TeamllmNativeFrozenLoraLinearGrad',
  rmsNorm: 'TeamllmNativeRmsNorm',
  rmsNormGrad: 'TeamllmNativeRmsNormGrad',
  rope: 'TeamllmNativeRope',
  swiglu: 'TeamllmNativeSwiglu',
  swigluGrad: 'TeamllmNativeSwigluGrad',
} as const;

/** The block kernels' weight inputs, in the addon's order. */
export const BLOCK_WEIGHTS = ['ln1', 'attn', 'proj', 'ln2', 'fc', 'fc2'] as const;

/** y [m, n] = x [m, k] · Wᵀ for a frozen W [n, k] in its stored dtype. */
function frozenProduct(addon: NativeAddon, x: Float32Array, w: FrozenMatrix, mode: number, y: Float32Array): void {
  const m = x.length / w.cols;
  const { rows: n, cols: k } = w;
  if (w.dtype === 'f32') addon.matmul(x, w.data, y, 1, 1, m, n, k, false, true, null, 0, 0);
  else if (w.dtype === 'int8') addon.linearInt8!(x, w.data, w.scales, w.group, null, y, m, n, k, mode);
  else addon.linear16!(w.dtype === 'bf16' ? 0 : 1, x, w.data, null, y, m, n, k, mode);
}

/** dx [m, k] = dy [m, n] · W for a frozen W [n, k]: frozenProduct's input gradient. */
function frozenProductT(addon: NativeAddon, dy: Float32Array, w: FrozenMatrix, mode: number, dx: Float32Array): void {
  const m = dy.length / w.rows;
  const { rows: n, cols: k } = w;
  if (w.dtype === 'f32') addon.matmul(dy, w.data, dx, 1, 1, m, k, n, false, false, null, 0, 0);
  else if (w.dtype === 'int8') addon.linearInt8T!(dy, w.data, w.scales, w.group, dx, m, n, k, mode);
  else addon.linear16T!(w.dtype === 'bf16' ? 0 : 1, dy, w.data, dx, m, n, k, mode);
}

function fusedKernels(addon: NativeAddon): Record<string, Impl> {
  return {
    [FUSED.gelu]: ({ inputs }, nb) => {
      const x = inputs.x as TensorInfo;
      return produce(nb, [...x.shape], (out) => addon.unary(UNARY_GELU, f32(nb, x), out));
    },
    [FUSED.geluGrad]: ({ inputs }, nb) => {
      const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
      return produce(nb, [...x.shape], (out) => addon.geluGrad(f32(nb, x), f32(nb, dy), out));
    },
    [FUSED.layerNorm]: ({ inputs, attrs }, nb) => {
      const { x, w, b } = inputs as { x: TensorInfo; w: TensorInfo; b?: TensorInfo };
      const cols = x.shape[x.shape.length - 1]!;
      const rows = size(x.shape) / cols;
      const y = nb.alloc(size(x.shape));
      const mean = nb.alloc(rows);
      const rstd = nb.alloc(rows);
      addon.layerNorm(f32(nb, x), f32(nb, w), b ? f32(nb, b) : null, y, mean, rstd, rows, cols, Number(attrs?.eps ?? 1e-5));
      return [nb.output([...x.shape], 'float32', y), nb.output([rows], 'float32', mean), nb.output([rows], 'float32', rstd)];
    },
    [FUSED.layerNormGrad]: ({ inputs, attrs }, nb) => {
      const { x, w, mean, rstd, dy } = inputs as Record<string, TensorInfo>;
      const cols = x!.shape[x!.shape.length - 1]!;
      const rows = size(x!.shape) / cols;
      const dx = nb.alloc(size(x!.shape));
      const dw = nb.alloc(cols);
      const db = attrs?.hasBias ? nb.alloc(cols) : null;
      addon.layerNormGrad(f32(nb, x!), f32(nb, w!), f32(nb, mean!), f32(nb, rstd!), f32(nb, dy!), dx, dw, db, rows, cols);
      const outs = [nb.output([...x!.shape], 'float32', dx), nb.output([cols], 'float32', dw)];
      if (db) outs.push(nb.output([cols], 'float32', db));
      return outs;
    },
    [FUSED.attention]: ({ inputs, attrs }, nb) => {
      // q [..., t, d], kT [..., d, s], v [..., s, d] -> y [..., t, d], probabilities [..., t, s]
      const { q, kT, v } = inputs as Record<'q' | 'kT' | 'v', TensorInfo>;
      const r = q.shape.length;
      const t = q.shape[r - 2]!;
      const d = q.shape[r - 1]!;
      const s = kT.shape[r - 1]!;
      const bh = size(q.shape.slice(0, -2));
      const y = nb.alloc(bh * t * d);
      const p = nb.alloc(bh * t * s);
      addon.attention(f32(nb, q), f32(nb, kT), f32(nb, v), y, p, bh, t, s, d, Number(attrs?.past ?? 0), Number(attrs?.scale), Boolean(attrs?.causal));
      return [nb.output([...q.shape], 'float32', y), nb.output([...q.shape.slice(0, -1), s], 'float32', p)];
    },
    [FUSED.attentionGrad]: ({ inputs, attrs }, nb) => {
      const { q, kT, v, p, dy } = inputs as Record<'q' | 'kT' | 'v' | 'p' | 'dy', TensorInfo>;
      const r = q.shape.length;
      const t = q.shape[r - 2]!;
      const d = q.shape[r - 1]!;
      const s = kT.shape[r - 1]!;
      const bh = size(q.shape.slice(0, -2));
      const dq = nb.alloc(bh * t * d);
      const dkT = nb.alloc(bh * d * s);
      const dv = nb.alloc(bh * s * d);
      addon.attentionGrad(f32(nb, q), f32(nb, kT), f32(nb, v), f32(nb, p), f32(nb, dy), dq, dkT, dv, bh, t, s, d, Number(attrs?.scale));
      return [nb.output([...q.shape], 'float32', dq), nb.output([...kT.shape], 'float32', dkT), nb.output([...v.shape], 'float32', dv)];
    },
    [FUSED.selfAttention]: ({ inputs, attrs }, nb) => {
      // qkv [b, t, 3c] -> y [b, t, c], probabilities [b, heads, t, t]
      const qkv = inputs.qkv as TensorInfo;
      const [b, t, c3] = qkv.shape as [number, number, number];
      const heads = Number(attrs?.heads);
      const c = c3 / 3;
      const d = c / heads;
      const y = nb.alloc(b * t * c);
      const p = nb.alloc(b * heads * t * t);
      addon.selfAttention(f32(nb, qkv), y, p, b, t, heads, d, Number(attrs?.scale), Number(attrs?.dropRate ?? 0), Number(attrs?.dropSeed ?? 0));
      return [nb.output([b, t, c], 'float32', y), nb.output([b, heads, t, t], 'float32', p)];
    },
    [FUSED.selfAttentionGrad]: ({ inputs, attrs }, nb) => {
      const { qkv, p, dy } = inputs as Record<'qkv' | 'p' | 'dy', TensorInfo>;
      const [b, t, c3] = qkv.shape as [number, number, number];
      const heads = Number(attrs?.heads);
      const d = c3 / 3 / heads;
      return produce(nb, [b, t, c3], (out) =>
        addon.selfAttentionGrad(f32(nb, qkv), f32(nb, p), f32(nb, dy), out, b, t, heads, d, Number(attrs?.scale), Number(attrs?.dropRate ?? 0), Number(attrs?.dropSeed ?? 0)),
      );
    },
    [FUSED.decodeLayer]: ({ inputs, attrs }, nb) => {
      // x [1, 1, c], kT [1, heads, d, past], v [1, heads, past, d] + the block's weights
      // -> x [1, 1, c], kT [1, heads, d, past + 1], v [1, heads, past + 1, d]
      const t = inputs as Record<string, TensorInfo | undefined>;
      const [, heads, d, past] = t.kT!.shape as [number, number, number, number];
      const c = heads * d;
      const names = ['ln1w', 'ln1b', 'attnw', 'attnb', 'projw', 'projb', 'ln2w', 'ln2b', 'fcw', 'fcb', 'fc2w', 'fc2b'];
      const weights = names.map((n) => (t[n] ? f32(nb, t[n]) : null));
      const x = nb.alloc(c);
      const kT = nb.alloc(c * (past + 1));
      const v = nb.alloc(c * (past + 1));
      addon.decodeLayer(f32(nb, t.x!), f32(nb, t.kT!), f32(nb, t.v!), weights, x, kT, v, c, heads, past, Number(attrs?.eps ?? 1e-5));
      return [
        nb.output([1, 1, c], 'float32', x),
        nb.output([1, heads, d, past + 1], 'float32', kT),
        nb.output([1, heads, past + 1, d], 'float32', v),
      ];
    },
    [FUSED.crossEntropy]: ({ inputs }, nb) => {
      // logits [rows, vocab], targets int32 [rows] -> [mean loss, softmax probabilities, count]
      const { logits, targets } = inputs as { logits: TensorInfo; targets: TensorInfo };
      const [rows, vocab] = logits.shape as [number, number];
      const probs = nb.alloc(rows * vocab);
      const [loss, count] = addon.crossEntropy(f32(nb, logits), i32(nb, targets), probs, rows, vocab);
      return [
        nb.output([], 'float32', Float32Array.of(loss)),
        nb.output([rows, vocab], 'float32', probs),
        nb.output([], 'float32', Float32Array.of(count)),
      ];
    },
    [FUSED.linearGrad]: ({ inputs }, nb) => {
      // x [m, k], w [k, n], dy [m, n] (+ h [m, n] when a GELU followed) -> dx [m, k], dw [k, n]
      const { x, w, dy, h } = inputs as Record<'x' | 'w' | 'dy', TensorInfo> & { h?: TensorInfo };
      const [m, k] = x.shape as [number, number];
      const n = w.shape[1]!;
      const dx = nb.alloc(m * k);
      const dw = nb.alloc(k * n);
      addon.linearGrad(f32(nb, x), f32(nb, w), f32(nb, dy), dx, dw, m, k, n, h ? f32(nb, h) : null);
      return [nb.output([m, k], 'float32', dx), nb.output([k, n], 'float32', dw)];
    },
    [FUSED.frozenLinear]: ({ inputs, attrs }, nb) => {
      // x [m, k] · Wᵀ for a frozen W [n, k] in its stored dtype (src/model/frozen-linear.ts) -> [m, n]
      const x = inputs.x as TensorInfo;
      const w = attrs!.weight as unknown as FrozenMatrix;
      return produce(nb, [x.shape[0]!, w.rows], (y) => frozenProduct(addon, f32(nb, x), w, Number(attrs!.mode ?? 0), y));
    },
    [FUSED.frozenLinearT]: ({ inputs, attrs }, nb) => {
      // dy [m, n] · W for a frozen W [n, k] -> dx [m, k]: the input gradient of frozenLinear
      const dy = inputs.dy as TensorInfo;
      const w = attrs!.weight as unknown as FrozenMatrix;
      return produce(nb, [dy.shape[0]!, w.cols], (dx) => frozenProductT(addon, f32(nb, dy), w, Number(attrs!.mode ?? 0), dx));
    },
    [FUSED.frozenLoraLinear]: ({ inputs, attrs }, nb) => {
      // x [m, in], a [r, in], b [out, r] -> y = x·Wᵀ + s·(x·aᵀ)·bᵀ [m, out], t = s·x·aᵀ [m, r] (for the gradient)
      const { x, a, b } = inputs as Record<'x' | 'a' | 'b', TensorInfo>;
      const w = attrs!.weight as unknown as FrozenMatrix;
      const m = x.shape[0]!;
      const r = a.shape[0]!;
      const xv = f32(nb, x);
      const y = nb.alloc(m * w.rows);
      const t = nb.alloc(m * r);
      frozenProduct(addon, xv, w, Number(attrs!.mode ?? 0), y);
      addon.loraForward!(xv, f32(nb, a), f32(nb, b), y, t, m, w.cols, w.rows, r, Number(attrs!.scale));
      return [nb.output([m, w.rows], 'float32', y), nb.output([m, r], 'float32', t)];
    },
    [FUSED.frozenLoraLinearGrad]: ({ inputs, attrs }, nb) => {
      // dy [m, out], x, t, a, b -> dx [m, in], da [r, in], db [out, r]
      const { dy, x, t, a, b } = inputs as Record<'dy' | 'x' | 't' | 'a' | 'b', TensorInfo>;
      const w = attrs!.weight as unknown as FrozenMatrix;
      const m = dy.shape[0]!;
      const r = a.shape[0]!;
      const dyv = f32(nb, dy);
      const dx = nb.alloc(m * w.cols);
      const da = nb.alloc(r * w.cols);
      const db = nb.alloc(w.rows * r);
      frozenProductT(addon, dyv, w, Number(attrs!.mode ?? 0), dx);
      addon.loraBackward!(dyv, f32(nb, x), f32(nb, t), f32(nb, a), f32(nb, b), dx, da, db, m, w.cols, w.rows, r, Number(attrs!.scale));
      return [nb.output([m, w.cols], 'float32', dx), nb.output([r, w.cols], 'float32', da), nb.output([w.rows, r], 'float32', db)];
    },
    [FUSED.rmsNorm]: ({ inputs, attrs }, nb) => {
      // x [..., cols], w [cols] -> y (x's shape), rstd [rows]: Llama's RMSNorm, kept for the gradient
      const { x, w } = inputs as Record<'x' | 'w', TensorInfo>;
      const cols = x.shape[x.shape.length - 1]!;
      const rows = size(x.shape) / cols;
      const y = nb.alloc(rows * cols);
      const rstd = nb.alloc(rows);
      addon.rmsNormTrain!(f32(nb, x), f32(nb, w), y, rstd, rows, cols, Number(attrs?.eps));
      return [nb.output([...x.shape], 'float32', y), nb.output([rows], 'float32', rstd)];
    },
    [FUSED.rmsNormGrad]: ({ inputs }, nb) => {
      // x, w, rstd, dy -> dx (x's shape), dw [cols]
      const { x, w, rstd, dy } = inputs as Record<'x' | 'w' | 'rstd' | 'dy', TensorInfo>;
      const cols = x.shape[x.shape.length - 1]!;
      const rows = size(x.shape) / cols;
      const dx = nb.alloc(rows * cols);
      const dw = nb.alloc(cols);
      addon.rmsNormGrad!(f32(nb, x), f32(nb, w), f32(nb, rstd), f32(nb, dy), dx, dw, rows, cols);
      return [nb.output([...x.shape], 'float32', dx), nb.output([cols], 'float32', dw)];
    },
    [FUSED.rope]: ({ inputs, attrs }, nb) => {
      // x [B, T, H, d], cos, sin [T, 1, d] -> RoPE(x) (attrs.inverse: its gradient, x being dy)
      const { x, cos, sin } = inputs as Record<'x' | 'cos' | 'sin', TensorInfo>;
      const [b, t, heads, d] = x.shape as [number, number, number, number];
      return produce(nb, [...x.shape], (y) => addon.rope!(f32(nb, x), f32(nb, cos), f32(nb, sin), y, b, t, heads, d, Boolean(attrs?.inverse)));
    },
    [FUSED.swiglu]: ({ inputs }, nb) => {
      // gate, up (same shape) -> silu(gate)·up
      const { gate, up } = inputs as Record<'gate' | 'up', TensorInfo>;
      return produce(nb, [...gate.shape], (y) => addon.siluMul!(f32(nb, gate), f32(nb, up), y));
    },
    [FUSED.swigluGrad]: ({ inputs }, nb) => {
      // gate, up, dy -> dgate, dup
      const { gate, up, dy } = inputs as Record<'gate' | 'up' | 'dy', TensorInfo>;
      const n = size(gate.shape);
      const dgate = nb.alloc(n);
      const dup = nb.alloc(n);
      addon.siluMulGrad!(f32(nb, gate), f32(nb, up), f32(nb, dy), dgate, dup);
      return [nb.output([...gate.shape], 'float32', dgate), nb.output([...gate.shape], 'float32', dup)];
    },
    [FUSED.linearGelu]: ({ inputs }, nb) => {
      // x [m, k], w [k, n] -> y = GELU(x·w) [m, n], h = x·w [m, n]
      const { x, w } = inputs as Record<'x' | 'w', TensorInfo>;
      const [m, k] = x.shape as [number, number];
      const n = w.shape[1]!;
      const h = nb.alloc(m * n);
      const y = nb.alloc(m * n);
      addon.linearGelu(f32(nb, x), f32(nb, w), h, y, m, k, n);
      return [nb.output([m, n], 'float32', y), nb.output([m, n], 'float32', h)];
    },
    [FUSED.block]: ({ inputs, attrs }, nb) => {
      // x [b, t, c] + weights -> [x2, a, mean1, rstd1, qkv, y, p, x1, m, mean2, rstd2, h, g]
      const x = inputs.x as TensorInfo;
      const [b, t, c] = x.shape as [number, number, number];
      const heads = Number(attrs?.heads);
      const rows = b * t;
      const shapes = [[b, t, c], [rows], [rows], [b, t, 3 * c], [b, t, c], [b, heads, t, t], [b, t, c], [b, t, c], [rows], [rows], [b, t, 4 * c], [b, t, 4 * c]];
      const acts = shapes.map((s) => nb.alloc(size(s)));
      const x2 = nb.alloc(rows * c);
      const weights = BLOCK_WEIGHTS.map((n) => f32(nb, inputs[n] as TensorInfo));
      addon.blockForward(f32(nb, x), weights, acts, x2, b, t, c, heads, Number(attrs?.eps ?? 1e-5), Number(attrs?.dropRate ?? 0), Number(attrs?.dropSeed ?? 0));
      return [nb.output([b, t, c], 'float32', x2), ...acts.map((a, i) => nb.output(shapes[i]!, 'float32', a))];
    },
    [FUSED.blockGrad]: ({ inputs, attrs }, nb) => {
      // dy = ∂loss/∂x2, x, weights, s0..s11 (the forward's activations) -> [dx, one per weight]
      const x = inputs.x as TensorInfo;
      const [b, t, c] = x.shape as [number, number, number];
      const acts = Array.from({ length: 12 }, (_, i) => f32(nb, inputs[`s${i}`] as TensorInfo));
      const weightInfos = BLOCK_WEIGHTS.map((n) => inputs[n] as TensorInfo);
      const grads = weightInfos.map((w) => nb.alloc(size(w.shape)));
      const dx = nb.alloc(b * t * c);
      addon.blockBackward(
        f32(nb, inputs.dy as TensorInfo),
        f32(nb, x),
        weightInfos.map((w) => f32(nb, w)),
        acts,
        dx,
        grads,
        b,
        t,
        c,
        Number(attrs?.heads),
        Number(attrs?.dropRate ?? 0),
        Number(attrs?.dropSeed ?? 0),
      );
      return [nb.output([b, t, c], 'float32', dx), ...grads.map((g, i) => nb.output([...weightInfos[i]!.shape], 'float32', g))];
    },
    [FUSED.dropout]: ({ inputs, attrs }, nb) => {
      // x -> x · mask (0 or 1/(1 − rate)), the mask a hash of (seed, site, element index)
      const x = inputs.x as TensorInfo;
      return produce(nb, [...x.shape], (out) => addon.dropout(f32(nb, x), out, Number(attrs?.rate), Number(attrs?.seed), Number(attrs?.site)));
    },
    [FUSED.crossEntropyGrad]: ({ inputs }, nb) => {
      const { probs, targets, dy, count } = inputs as Record<string, TensorInfo>;
      const [rows, vocab] = probs!.shape as [number, number];
      const scale = f32(nb, dy!)[0]! / Math.max(f32(nb, count!)[0]!, 1);
      return produce(nb, [rows, vocab], (out) => addon.crossEntropyGrad(f32(nb, probs!), i32(nb, targets!), out, rows, vocab, scale));
    },
  };
}

// ---- registration ----------------------------------------------------------------------------------

function overrides(addon: NativeAddon): Record<string, Impl> {
  const table: Record<string, Impl> = {
    BatchMatMul: makeBatchMatMul(addon),
    _FusedMatMul: makeFusedMatMul(addon),
    Transpose: makeTranspose(addon),
    AddN: makeAddN(addon),
    SplitV: makeSplitV(addon),
    Concat: makeConcat(addon),
    Slice: makeSlice(addon),
    PadV2: makePadV2(addon),
    Softmax: makeSoftmax(addon),
    GatherV2: makeGather(addon),
    UnsortedSegmentSum: makeUnsortedSegmentSum(addon),
    Sum: makeReduce(addon, REDUCE.Sum, 'axis'),
    Mean: makeReduce(addon, REDUCE.Mean, 'axis'),
    Max: makeReduce(addon, REDUCE.Max, 'reductionIndices'),
    Min: makeReduce(addon, REDUCE.Min, 'axis'),
    Prod: makeReduce(addon, REDUCE.Prod, 'axis'),
    TeamllmAdamW: makeAdamW(addon),
    TeamllmAdamWMulti: makeAdamWMulti(addon),
    TeamllmSumSquares: makeSumSquares(addon),
    ...fusedKernels(addon),
  };
  for (const [name, op] of Object.entries(UNARY)) table[name] = makeUnary(addon, op);
  for (const [name, op] of Object.entries(BINARY)) table[name] = makeBinary(addon, op);
  return table;
}

/** Kernel names the addon implements (for tests and the benchmark's report). */
export function nativeKernelNames(addon: NativeAddon): string[] {
  return Object.keys(overrides(addon)).sort();
}

const noFallback: KernelFunc = () => {
  throw new Error('no cpu fallback for this kernel');
};

/**
 * Registers every cpu kernel under 'native', then the addon's replacements. Safe to call again
 * (kernels registered for 'cpu' since the last call are picked up).
 */
export function registerNativeKernels(addon: NativeAddon): void {
  const cpuKernels = new Map<string, KernelFunc>();
  for (const k of tf.getKernelsForBackend('cpu')) cpuKernels.set(k.kernelName, k.kernelFunc);
  const table = overrides(addon);
  for (const k of tf.getKernelsForBackend('cpu')) {
    if (table[k.kernelName] || tf.getKernel(k.kernelName, NATIVE_BACKEND)) continue;
    tf.registerKernel({ ...k, backendName: NATIVE_BACKEND, kernelFunc: profiler.wrap(k.kernelName, k.kernelFunc, false) });
  }
  for (const [name, impl] of Object.entries(table)) {
    if (tf.getKernel(name, NATIVE_BACKEND)) continue;
    const fallback = cpuKernels.get(name) ?? noFallback;
    const kernelFunc: KernelFunc = (args) => {
      const nb = args.backend;
      if (!(nb instanceof NativeBackend)) return fallback(args);
      return impl(args as Args, nb, fallback);
    };
    tf.registerKernel({ kernelName: name, backendName: NATIVE_BACKEND, kernelFunc: profiler.wrap(name, kernelFunc, true) });
  }
}
