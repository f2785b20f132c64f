/**
 * Tensor backend choice. One process uses one TensorFlow.js backend at a time:
 *
 * - `tensorflow`: native libtensorflow through `@tensorflow/tfjs-node-gpu` (CUDA) or
 *   `@tensorflow/tfjs-node` (CPU). These are optional packages (their install script downloads
 *   libtensorflow), loaded by dynamic import only when asked for. When neither is installed we
 *   log one line and fall back to wasm.
 * - `native` (default when it loads): our C++ addon (native/, src/model/native), built at install
 *   by scripts/build-native.mjs when a C++ compiler is there; its float32 products run on
 *   OpenBLAS when installed, else on the addon's own GEMM (native/src/sgemm.cc).
 * - `wasm` (default otherwise): XNNPACK compiled to WebAssembly, SIMD, single-threaded in Node.
 * - `cpu`: the pure-JavaScript reference backend (slow, but the most complete kernel set).
 *
 * `initBackend` also patches what the wasm backend lacks for training (see registerMissingKernels).
 */
import * as tf from '@tensorflow/tfjs-core';
// The union package registers every op's gradient and the chained tensor methods (tfjs-core's Node
// build has neither); it shares the one tfjs-core instance.
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerMissingKernels } from './kernels.ts';
import { loadNativeBackend } from './native/index.ts';

export type BackendName = 'native' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_NAMES: readonly BackendName[] = ['native', 'tensorflow', 'wasm', 'cpu'];

let tensorflowLoadError: string | undefined;
let warnedFallback = false;
let warnedNative = false;

export interface InitBackendOptions {
  /** Where the one-line notice about a fallback goes (default console.warn). */
  log?: (message: string) => void;
}

export function parseBackendName(value: string | undefined): BackendName | undefined {
  if (value === undefined || value === '') return undefined;
  const v = value.trim().toLowerCase();
  if (v === 'tensorflow' || v === 'tfjs-node' || v === 'node') return 'tensorflow';
  if (v === 'native' || v === 'wasm' || v === 'cpu') return v;
  throw new Error(`Unknown tensor backend "${value}": use one of ${BACKEND_NAMES.join(', ')}`);
}

/** Tries @tensorflow/tfjs-node-gpu, then @tensorflow/tfjs-node; returns the registered backend name. */
async function loadTensorflowBinding(): Promise<string | undefined> {
  if (tf.findBackendFactory('tensorflow')) return 'tensorflow';
  const errors: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      // A variable specifier keeps TypeScript and bundlers from requiring the optional package.
      const specifier: string = pkg;
      await import(specifier);
      if (tf.findBackendFactory('tensorflow')) return 'tensorflow';
      errors.push(
        `${pkg} loaded but registered no "tensorflow" backend into this @tensorflow/tfjs-core ` +
          `(${tf.version_core}); install a tfjs-node whose tfjs-core version matches`,
      );
    } catch (err) {
      errors.push(`${pkg}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  tensorflowLoadError = errors.join('; ');
  return undefined;
}

/** The wasm module installs process-wide handlers that rethrow everything; keep the process's own. */
async function withoutNewProcessHandlers<T>(fn: () => Promise<T>): Promise<T> {
  const events = ['uncaughtException', 'unhandledRejection'];
  const emitter = process as unknown as NodeJS.EventEmitter;
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  try {
    return await fn();
  } finally {
    for (const e of events) {
      for (const l of emitter.listeners(e)) {
        if (!before.get(e)!.has(l)) emitter.removeListener(e, l as (...args: unknown[]) => void);
      }
    }
  }
}

async function activate(name: string): Promise<boolean> {
  const ok = await withoutNewProcessHandlers(async () => {
    const res = await tf.setBackend(name);
    await tf.ready();
    return res;
  });
  if (ok) {
    registerMissingKernels(name);
    // The cpu backend's first write prints an advert for tfjs-node; teamllm documents that itself.
    const b = tf.backend() as unknown as { firstUse?: boolean };
    if (name === 'cpu' && b.firstUse) b.firstUse = false;
  }
  return ok;
}

/**
 * Selects and initialises the tensor backend. `name` defaults to `$TEAMLLM_BACKEND`, else wasm.
 * Returns the name of the backend in use ('tensorflow', 'wasm' or 'cpu').
 */
export async function initBackend(name?: BackendName, options: InitBackendOptions = {}): Promise<string> {
  const log = options.log ?? ((m: string) => console.warn(m));
  const asked = name ?? parseBackendName(process.env.TEAMLLM_BACKEND);
  // Default: the native OpenBLAS backend when its addon was built and loads, else wasm.
  if (asked === undefined || asked === 'native') {
    if (tf.engine().backendName === 'native') return 'native';
    const native = await loadNativeBackend();
    if (native.ok && (await activate('native'))) return 'native';
    if (!warnedNative) {
      warnedNative = true;
      log(`teamllm: native backend unavailable (${native.ok ? 'failed to initialise' : native.reason}); using wasm.`);
    }
  }
  const wanted: BackendName = asked === undefined || asked === 'native' ? 'wasm' : asked;
  if (wanted === 'tensorflow') {
    const loaded = await loadTensorflowBinding();
    if (loaded && (await activate(loaded))) return tf.getBackend();
    if (!warnedFallback) {
      warnedFallback = true;
      log(
        `teamllm: backend "tensorflow" unavailable (${tensorflowLoadError ?? 'failed to initialise'}); ` +
          'install @tensorflow/tfjs-node-gpu (CUDA) or @tensorflow/tfjs-node to use it. Falling back to wasm.',
      );
    }
    if (await activate('wasm')) return 'wasm';
    if (await activate('cpu')) return 'cpu';
    throw new Error('No tensor backend could be initialised');
  }
  if (tf.engine().backendName === wanted) {
    registerMissingKernels(wanted);
    return wanted;
  }
  if (await activate(wanted)) return wanted;
  if (wanted === 'wasm') {
    if (!warnedFallback) {
      warnedFallback = true;
      log('teamllm: the wasm backend failed to initialise; falling back to the (slow) cpu backend.');
    }
    if (await activate('cpu')) return 'cpu';
  }
  throw new Error(`Tensor backend "${wanted}" could not be initialised`);
}

/** The backend in use, initialising the default one first if none is. */
export async function ensureBackend(): Promise<string> {
  const current = tf.engine().backendName;
  if (current && (current === 'native' || current === 'wasm' || current === 'cpu' || current === 'tensorflow')) return current;
  return initBackend();
}

export { tf };
