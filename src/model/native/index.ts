/**
 * The native CPU backend: a TensorFlow.js backend named 'native' whose hot kernels (matrix
 * products on OpenBLAS, elementwise, reductions, softmax, transposes, the embedding gather and
 * its gradient, AdamW) and fused transformer ops (./ops.ts) run in a Node-API addon on all cores.
 *
 * Optional by design: the addon is built at install time by scripts/build-native.mjs when a C++
 * compiler and OpenBLAS are present. `loadNativeBackend()` says whether it can be used, and why
 * not; it never throws.
 *
 *     const r = await loadNativeBackend();
 *     if (r.ok) await tf.setBackend('native'); else console.warn(`teamllm: ${r.reason}`);
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadAddon } from './addon.ts';
import { NativeBackend } from './backend.ts';
import { NATIVE_BACKEND, registerNativeKernels } from './kernels.ts';

export { NATIVE_BACKEND } from './kernels.ts';
export { NativeBackend, activeNativeBackend } from './backend.ts';
export { profiler, formatProfile, type KernelStat } from './profile.ts';
export * as nativeOps from './ops.ts';

export type NativeLoadResult = { ok: true } | { ok: false; reason: string };

/**
 * Loads the addon and registers the TensorFlow.js backend 'native' (it does not activate it:
 * call `tf.setBackend('native')`). Resolves `{ ok: false, reason }` when the addon is missing or
 * cannot load here; the reason is one line, ready to log.
 */
export async function loadNativeBackend(): Promise<NativeLoadResult> {
  const loaded = loadAddon();
  if (!loaded.ok) return { ok: false, reason: loaded.reason };
  const { addon } = loaded;
  try {
    registerNativeKernels(addon);
    if (!tf.findBackendFactory(NATIVE_BACKEND)) {
      // Priority 0: never picked implicitly; teamllm selects it explicitly (src/model/backend.ts).
      tf.registerBackend(
        NATIVE_BACKEND,
        () => {
          registerNativeKernels(addon); // picks up kernels registered for 'cpu' since loading
          return new NativeBackend();
        },
        0,
      );
    }
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `registering the native backend failed: ${(err as Error).message}` };
  }
}

/** Whether the addon can load here (without registering anything). */
export function nativeAvailable(): NativeLoadResult {
  const loaded = loadAddon();
  return loaded.ok ? { ok: true } : { ok: false, reason: loaded.reason };
}

/** Threads, BLAS build and the addon's path, or undefined when it does not load. */
export function nativeInfo(): { threads: number; blas: string; gemm?: 'openblas' | 'own'; path: string } | undefined {
  const loaded = loadAddon();
  if (!loaded.ok) return undefined;
  return { ...loaded.addon.info(), path: loaded.path };
}

/**
 * The machine's matrix-multiply peak as this backend reaches it: GFLOP/s of one n×n×n sgemm
 * (default 1024) split over all cores, best of `repeats`. NaN when the addon is not available.
 * Takes ~0.1-0.5 s.
 */
export function measureSgemmPeak(n = 1024, repeats = 5): number {
  const loaded = loadAddon();
  if (!loaded.ok) return Number.NaN;
  return loaded.addon.sgemmPeak(n, repeats);
}

/** Sets the number of threads the addon uses (1 = everything on the calling thread). */
export function setNativeThreads(threads: number): void {
  const loaded = loadAddon();
  if (loaded.ok) loaded.addon.setThreads(Math.max(1, Math.floor(threads)));
}
