/**
 * Framework cost of serving: messages/s through the web adapter (HTTP + JSON + the Bot's dedupe,
 * routing, records in SQLite) with the model stubbed by an answerer that replies at once.
 *   npm run bench -- serve [--messages 3000] [--concurrency 16]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/app/config.ts';
import { createRuntime, startServer } from '../src/app/runtime.ts';
import { silentLogger, type AnswerEvent, type Answerer } from '../src/core/index.ts';

const instantAnswerer: Answerer = {
  model: { name: 'stub', version: '0', kind: 'language-model' },
  async *answer(): AsyncIterable<AnswerEvent> {
    yield { type: 'sources', sources: [{ source: 'a.md', title: 'A', text: 'stub passage', score: 1 }] };
    yield { type: 'token', text: 'stub ' };
    yield { type: 'token', text: 'answer' };
    yield { type: 'done', prompt: 'stub' };
  },
};

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { messages: { type: 'string', default: '3000' }, concurrency: { type: 'string', default: '16' } } });
  const total = Number(values.messages);
  const concurrency = Number(values.concurrency);
  const home = mkdtempSync(join(tmpdir(), 'teamllm-bench-serve-'));
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_RATE_PER_MINUTE: '10000', TEAMLLM_RATE_BURST: '10000' }, cwd: home });
  const runtime = await createRuntime(config, { logger: silentLogger, answerer: instantAnswerer, defaultMetrics: false });
  const server = await startServer(runtime, 0, '127.0.0.1');
  const latencies: number[] = [];
  let next = 0;
  let failures = 0;
  const ask = async (i: number) => {
    const started = performance.now();
    const res = await fetch(`${server.url}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      // 50 users so the per-user paths (rate limiter, conversation memory) see realistic keys.
      body: JSON.stringify({ text: `question number ${i}?`, user: `u${i % 50}`, conversation: `c${i % 200}` }),
    });
    await res.arrayBuffer();
    if (res.status !== 200) failures++;
    latencies.push(performance.now() - started);
  };
  for (let i = 0; i < 200; i++) await ask(-i - 1); // warm-up: JIT, SQLite page cache
  latencies.length = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await ask(next++);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await server.close();
  await runtime.close();
  rmSync(home, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  const figures = {
    messages: total,
    concurrency,
    failures,
    messages_per_s: (total / seconds).toFixed(0),
    p50_ms: percentile(latencies, 50).toFixed(2),
    p99_ms: percentile(latencies, 99).toFixed(2),
  };
  process.stdout.write(`${Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
}
