/**
 * Kernels that TensorFlow.js backends lack for training, registered at backend start-up, and the
 * small helpers to write a kernel in plain JavaScript that runs on the wasm and cpu backends.
 *
 * The wasm backend (4.22) has no `UnsortedSegmentSum`, which `tf.gather`'s gradient needs: without
 * it an embedding table cannot be trained on wasm. We register a JavaScript implementation that
 * reads the wasm heap directly (no copy), so `tf.gather` and its gradient work on every backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DataType, KernelBackend, TensorInfo, NamedAttrMap, NamedTensorInfoMap } from '@tensorflow/tfjs-core';

type TypedArray = Float32Array | Int32Array | Uint8Array;

/** Minimal view of the wasm backend API we rely on. */
interface WasmBackendLike extends KernelBackend {
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): TypedArray;
}

/** Minimal view of the cpu backend API we rely on. */
interface CpuBackendLike extends KernelBackend {
  makeTensorInfo(shape: number[], dtype: DataType, values?: TypedArray): TensorInfo;
}

function isWasm(backend: KernelBackend): backend is WasmBackendLike {
  return typeof (backend as Partial<WasmBackendLike>).typedArrayFromHeap === 'function';
}

/**
 * Runs `compute` with input arrays and freshly allocated output arrays, on wasm (views into the
 * heap, so no copies) or cpu (the backend's own arrays). Outputs are NOT zero-initialised.
 */
export function jsKernel(
  backend: KernelBackend,
  inputs: TensorInfo[],
  outputs: { shape: number[]; dtype: DataType }[],
  compute: (ins: TypedArray[], outs: TypedArray[]) => void,
): TensorInfo[] {
  if (isWasm(backend)) {
    // Allocate first: growing the heap detaches views made earlier.
    const infos = outputs.map((o) => backend.makeOutput(o.shape, o.dtype));
    const ins = inputs.map((t) => backend.typedArrayFromHeap(t));
    const outs = infos.map((t) => backend.typedArrayFromHeap(t));
    compute(ins, outs);
    return infos;
  }
  const cpu = backend as CpuBackendLike;
  const ins = inputs.map((t) => cpu.readSync(t.dataId) as TypedArray);
  const outs = outputs.map((o) => {
    const size = o.shape.reduce((a, b) => a * b, 1);
    return o.dtype === 'int32' ? new Int32Array(size) : new Float32Array(size);
  });
  compute(ins, outs);
  return outputs.map((o, i) => cpu.makeTensorInfo(o.shape, o.dtype, outs[i]!));
}

/** UnsortedSegmentSum for any backend that can run jsKernel (the gradient of tf.gather). */
function unsortedSegmentSumKernel(args: {
  inputs: NamedTensorInfoMap;
  backend: KernelBackend;
  attrs?: NamedAttrMap;
}): TensorInfo {
  const x = args.inputs.x!;
  const segmentIds = args.inputs.segmentIds!;
  const numSegments = Number(args.attrs?.numSegments);
  const idsRank = segmentIds.shape.length;
  const inner = x.shape.slice(idsRank).reduce((a, b) => a * b, 1);
  const count = segmentIds.shape.reduce((a, b) => a * b, 1);
  const outShape = [numSegments, ...x.shape.slice(idsRank)];
  const [out] = jsKernel(args.backend, [x, segmentIds], [{ shape: outShape, dtype: x.dtype }], ([xv, ids], [ov]) => {
    const o = ov!;
    o.fill(0);
    const xs = xv!;
    const is = ids!;
    for (let i = 0; i < count; i++) {
      const seg = is[i]!;
      if (seg < 0 || seg >= numSegments) continue;
      const src = i * inner;
      const dst = seg * inner;
      for (let j = 0; j < inner; j++) o[dst + j] = o[dst + j]! + xs[src + j]!;
    }
  });
  return out!;
}

/**
 * Batched matmul for wasm that runs each batch entry through XNNPACK's fast 2-D path.
 *
 * tfjs-backend-wasm 4.22 only takes XNNPACK for a batch of one; any larger batch (attention's
 * [B·H, T, hs] products) falls to a naive loop at ~2 GFLOP/s. We register views of each batch
 * slice as temporary tensors (no copies) and call the wasm BatchMatMul on them one by one: 5-10x
 * faster for attention shapes. Relies on the wasm backend's internals (pinned 4.22.0); when they
 * are not what we expect, `wasmSlicedMatMulAvailable` is false and callers use tf.matMul.
 */
interface WasmInternals extends WasmBackendLike {
  wasm: {
    cwrap: (name: string, ret: null, args: string[]) => (...args: unknown[]) => void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  dataIdNextNumber: number;
}

export const SLICED_MATMUL = 'TeamllmSlicedBatchMatMul';
let wasmBatchMatMulFn: ((...args: unknown[]) => void) | undefined;

function asWasmInternals(backend: KernelBackend): WasmInternals | undefined {
  const b = backend as Partial<WasmInternals>;
  if (!b.wasm?.tfjs?.registerTensor || !b.wasm.tfjs.disposeData || typeof b.wasm.cwrap !== 'function') return undefined;
  if (typeof b.dataIdNextNumber !== 'number' || !b.dataIdMap || typeof b.makeOutput !== 'function') return undefined;
  return b as WasmInternals;
}

function slicedBatchMatMulKernel(args: { inputs: NamedTensorInfoMap; backend: KernelBackend }): TensorInfo {
  const backend = asWasmInternals(args.backend)!;
  const a = args.inputs.a!;
  const b = args.inputs.b!;
  const [batch, m, k] = a.shape as [number, number, number];
  const n = b.shape[2]!;
  wasmBatchMatMulFn ??= backend.wasm.cwrap('BatchMatMul', null, [
    'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number',
  ]);
  const out = backend.makeOutput([batch, m, n], 'float32');
  const aOff = backend.dataIdMap.get(a.dataId)!.memoryOffset;
  const bOff = backend.dataIdMap.get(b.dataId)!.memoryOffset;
  const oOff = backend.dataIdMap.get(out.dataId)!.memoryOffset;
  const aShape = new Uint8Array(new Int32Array([1, m, k]).buffer);
  const bShape = new Uint8Array(new Int32Array([1, k, n]).buffer);
  const tfjs = backend.wasm.tfjs;
  for (let i = 0; i < batch; i++) {
    const ida = backend.dataIdNextNumber++;
    const idb = backend.dataIdNextNumber++;
    const ido = backend.dataIdNextNumber++;
    tfjs.registerTensor(ida, m * k, aOff + i * m * k * 4);
    tfjs.registerTensor(idb, k * n, bOff + i * k * n * 4);
    tfjs.registerTensor(ido, m * n, oOff + i * m * n * 4);
    try {
      wasmBatchMatMulFn(ida, aShape, 3, idb, bShape, 3, false, false, ido);
    } finally {
      // Unregistering also frees the XNNPACK operator cached for these ids.
      tfjs.disposeData(ida);
      tfjs.disposeData(idb);
      tfjs.disposeData(ido);
    }
  }
  return out;
}

/** Whether the current backend has the sliced batched matmul (wasm with the expected internals). */
export function slicedMatMulAvailable(): boolean {
  return tf.getBackend() === 'wasm' && tf.getKernel(SLICED_MATMUL, 'wasm') !== undefined;
}

const patched = new Set<string>();

/** Registers, once per backend, the kernels that backend lacks and training needs. */
export function registerMissingKernels(backendName: string): void {
  if (patched.has(backendName)) return;
  patched.add(backendName);
  if (backendName === 'wasm' && !tf.getKernel(SLICED_MATMUL, 'wasm') && asWasmInternals(tf.findBackend('wasm'))) {
    tf.registerKernel({
      kernelName: SLICED_MATMUL,
      backendName: 'wasm',
      kernelFunc: slicedBatchMatMulKernel as unknown as tf.KernelFunc,
    });
  }
  if (backendName === 'wasm' && !tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({
      kernelName: 'UnsortedSegmentSum',
      backendName: 'wasm',
      kernelFunc: unsortedSegmentSumKernel as unknown as tf.KernelFunc,
    });
  }
}
