/**
 * One measurement in a process of its own (a fresh heap, its own peak RSS, its own thread count):
 * the bench runs itself again with `--child <spec>`, and the child prints its result as the last
 * line of stdout, one JSON object.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';

export function runBenchChild<T>(bench: string, args: string[], spec: string, threads: number): T {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'index.ts'), bench, ...args, '--child', spec], {
    encoding: 'utf8',
    env: { ...process.env, TEAMLLM_NATIVE_THREADS: String(threads), OPENBLAS_NUM_THREADS: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`${spec} failed (exit ${r.status}): ${r.stdout.slice(-500)}`);
  return JSON.parse(line) as T;
}
