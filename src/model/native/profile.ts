/**
 * Where the time goes: an opt-in per-kernel timer for the 'native' backend. Off by default (one
 * boolean test per kernel call); `profiler.start()` ... `profiler.stop()` returns the table.
 */
import type { KernelFunc } from '@tensorflow/tfjs-core';

export interface KernelStat {
  kernel: string;
  /** true: runs in the addon; false: the cpu backend's JavaScript kernel. */
  native: boolean;
  calls: number;
  ms: number;
}

class KernelProfiler {
  private active = false;
  private stats = new Map<string, KernelStat>();

  wrap(name: string, fn: KernelFunc, native: boolean): KernelFunc {
    return (args) => {
      if (!this.active) return fn(args);
      const t0 = performance.now();
      try {
        return fn(args);
      } finally {
        const ms = performance.now() - t0;
        let s = this.stats.get(name);
        if (!s) {
          s = { kernel: name, native, calls: 0, ms: 0 };
          this.stats.set(name, s);
        }
        s.calls++;
        s.ms += ms;
      }
    };
  }

  start(): void {
    this.stats.clear();
    this.active = true;
  }

  /** Stops and returns the kernels sorted by total time. */
  stop(): KernelStat[] {
    this.active = false;
    return [...this.stats.values()].sort((a, b) => b.ms - a.ms);
  }
}

export const profiler = new KernelProfiler();

/** A table of the heaviest kernels, `steps` dividing totals into per-step figures. */
export function formatProfile(stats: KernelStat[], steps = 1, top = 25): string {
  const total = stats.reduce((s, k) => s + k.ms, 0);
  const lines = [`kernel                         where   calls/step   ms/step   share`];
  for (const s of stats.slice(0, top)) {
    lines.push(
      `${s.kernel.padEnd(30)} ${(s.native ? 'native' : 'js').padEnd(7)} ${(s.calls / steps).toFixed(1).padStart(10)} ${(s.ms / steps).toFixed(2).padStart(9)} ${((100 * s.ms) / Math.max(total, 1e-9)).toFixed(1).padStart(6)}%`,
    );
  }
  lines.push(`total in kernels: ${(total / steps).toFixed(2)} ms/step`);
  return lines.join('\n');
}
