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

const patched = new Set<string>();

/** Registers, once per backend, the kernels that backend lacks and training needs. */
export function registerMissingKernels(backendName: string): void {
  if (patched.has(backendName)) return;
  patched.add(backendName);
  if (backendName === 'wasm' && !tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({
      kernelName: 'UnsortedSegmentSum',
      backendName: 'wasm',
      kernelFunc: unsortedSegmentSumKernel as unknown as tf.KernelFunc,
    });
  }
}
