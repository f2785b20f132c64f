/**
 * The 'native' TensorFlow.js backend: the cpu backend's tensor storage (plain typed arrays in the
 * JavaScript heap, which the addon reads and writes in place) plus a pool of float32 buffers.
 *
 * Why a pool: a training step of the baby GPT makes ~100 MB of short-lived intermediate tensors.
 * `new Float32Array(n)` zero-fills and page-faults fresh memory (~0.2 ms per 1.5 MB here), which
 * adds up to more than the arithmetic. Shapes repeat every step, so recycling buffers of the same
 * length removes almost all of it.
 *
 * When is a buffer safe to recycle? Only when nothing can still see it. A buffer is recycled when
 * (1) a kernel made it (created through makeTensorInfo, as a whole Float32Array), (2) it never
 * left the backend through readSync/read (`tensor.dataSync()` hands out the backend's own array,
 * and callers may keep it), and (3) the last tensor holding it, or a view of it (the cpu backend's
 * slice returns subarrays), is disposed. Arrays a caller passed to `tf.tensor()` are never touched.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DataType, TensorInfo, backend_util } from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

type DataId = object;

interface BufferRecord {
  /** Live tensor entries that use this ArrayBuffer (whole or as a view). */
  refs: number;
  /** The whole-buffer array to recycle, or null when the buffer may be visible outside. */
  array: Float32Array | null;
}

/** Upper bound of memory held in the pool (bytes); $TEAMLLM_NATIVE_POOL_MB overrides it. */
function poolLimitBytes(): number {
  const mb = Number(process.env.TEAMLLM_NATIVE_POOL_MB);
  return (Number.isFinite(mb) && mb >= 0 ? mb : 512) * 1024 * 1024;
}

/** Sizes from here on are rounded up to a size class (so that growing tensors reuse buffers). */
const CLASS_FROM = 16 * 1024;

/**
 * The size class of n elements: n rounded up to one of 8 steps per power of two (at most 12.5%
 * unused). A KV cache grows by one position per generated token; with exact sizes no buffer would
 * ever be reused.
 */
export function sizeClass(n: number): number {
  if (n < CLASS_FROM) return n;
  const step = 2 ** (Math.floor(Math.log2(n)) - 3);
  return Math.ceil(n / step) * step;
}

export class NativeBackend extends MathBackendCPU {
  private readonly free = new Map<number, Float32Array[]>();
  private pooledBytes = 0;
  private readonly maxPooledBytes = poolLimitBytes();
  private readonly buffers = new Map<ArrayBufferLike, BufferRecord>();
  /** Whole arrays behind the buffers alloc() made (a tensor may hold a shorter view of one). */
  private readonly bases = new WeakMap<ArrayBufferLike, Float32Array>();
  private writingKernelOutput = false;
  /** Pool statistics (for benchmarks and tests). */
  readonly poolStats = { hits: 0, misses: 0, recycled: 0 };

  constructor() {
    super();
    // The cpu backend prints an advert for tfjs-node on first use; this backend is the fast path.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  /**
   * A float32 array of `size` elements for a kernel output. Contents are NOT zeroed. Large sizes
   * come as a view on a buffer of their size class.
   */
  alloc(size: number): Float32Array {
    const cls = sizeClass(size);
    const list = this.free.get(cls);
    let base = list?.pop();
    if (base) {
      this.pooledBytes -= base.byteLength;
      this.poolStats.hits++;
    } else {
      this.poolStats.misses++;
      base = new Float32Array(cls);
      this.bases.set(base.buffer, base);
    }
    return cls === size ? base : base.subarray(0, size);
  }

  /** A kernel output holding `values` (from alloc, or any array the kernel made). */
  output(shape: number[], dtype: DataType, values: backend_util.BackendValues): TensorInfo {
    return this.makeTensorInfo(shape, dtype, values);
  }

  /** The values of a tensor for use inside a kernel (does not count as leaving the backend). */
  values(info: TensorInfo): backend_util.BackendValues {
    return this.data.get(info.dataId)!.values!;
  }

  override makeTensorInfo(shape: number[], dtype: DataType, values?: backend_util.BackendValues | string[]): TensorInfo {
    this.writingKernelOutput = true;
    try {
      return super.makeTensorInfo(shape, dtype, values);
    } finally {
      this.writingKernelOutput = false;
    }
  }

  override write(values: backend_util.BackendValues, shape: number[], dtype: DataType): DataId {
    const id = super.write(values, shape, dtype);
    this.track(values, this.writingKernelOutput);
    return id;
  }

  override move(dataId: DataId, values: backend_util.BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    super.move(dataId, values, shape, dtype, refCount);
    this.track(values, false);
  }

  override readSync(dataId: DataId): backend_util.BackendValues {
    const entry = this.data.get(dataId);
    if (entry?.values) this.escape(entry.values);
    return super.readSync(dataId);
  }

  override async read(dataId: DataId): Promise<backend_util.BackendValues> {
    return this.readSync(dataId);
  }

  override disposeData(dataId: DataId, force = false): boolean {
    // has() first: DataStorage.get() of an unknown id would try to move it from another backend.
    const values = this.data.has(dataId) ? this.data.get(dataId)?.values : undefined;
    const released = super.disposeData(dataId, force);
    if (values && released && !this.data.has(dataId)) this.untrack(values);
    return released;
  }

  override dispose(): void {
    this.free.clear();
    this.pooledBytes = 0;
    this.buffers.clear();
    super.dispose();
  }

  /** Drops every pooled buffer (memory goes back to the garbage collector). */
  clearPool(): void {
    this.free.clear();
    this.pooledBytes = 0;
  }

  get pooledMegabytes(): number {
    return this.pooledBytes / (1024 * 1024);
  }

  private track(values: backend_util.BackendValues | undefined, kernelOutput: boolean): void {
    if (!ArrayBuffer.isView(values)) return;
    const buffer = values.buffer;
    const rec = this.buffers.get(buffer);
    if (rec) {
      rec.refs++;
      // The same buffer registered again from outside a kernel: never recycle it.
      if (!kernelOutput) rec.array = null;
      return;
    }
    let array: Float32Array | null = null;
    if (kernelOutput && values instanceof Float32Array && values.byteOffset === 0) {
      if (values.byteLength === buffer.byteLength) array = values;
      else array = this.bases.get(buffer) ?? null; // a view from alloc(): recycle its whole buffer
    }
    this.buffers.set(buffer, { refs: 1, array });
  }

  private escape(values: backend_util.BackendValues): void {
    if (!ArrayBuffer.isView(values)) return;
    const rec = this.buffers.get(values.buffer);
    if (rec) rec.array = null;
  }

  private untrack(values: backend_util.BackendValues): void {
    if (!ArrayBuffer.isView(values)) return;
    const buffer = values.buffer;
    const rec = this.buffers.get(buffer);
    if (!rec) return;
    if (--rec.refs > 0) return;
    this.buffers.delete(buffer);
    const array = rec.array;
    if (!array || array.byteLength > this.maxPooledBytes) return;
    // The map's order is the sizes' recency: re-inserting moves this size to the end.
    const list = this.free.get(array.length) ?? [];
    this.free.delete(array.length);
    this.free.set(array.length, list);
    list.push(array);
    this.pooledBytes += array.byteLength;
    this.poolStats.recycled++;
    // Over the cap: drop buffers of the least recently freed sizes (e.g. a KV cache's old sizes).
    for (const [len, old] of this.free) {
      if (this.pooledBytes <= this.maxPooledBytes) break;
      while (old.length > 0 && this.pooledBytes > this.maxPooledBytes) this.pooledBytes -= old.pop()!.byteLength;
      if (old.length === 0) this.free.delete(len);
    }
  }
}

/** The active backend as a NativeBackend, or undefined when another backend is active. */
export function activeNativeBackend(): NativeBackend | undefined {
  const b = tf.engine().backend;
  return b instanceof NativeBackend ? b : undefined;
}
