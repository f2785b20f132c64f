/**
 * Framework cost of serving: messages/s through the web adapter (HTTP + JSON + the Bot's dedupe,
 * routing, records in SQLite) with the model stubbed by an answerer that replies at once.
 *   npm run bench -- serve [--messages 3000] [--concurrency 16]
 *
 * With --store and --processes: the same stubbed answers through N separate `serve`-like processes
 * (each its own runtime; SQLite: one shared TEAMLLM_HOME; postgres: each its own home, one
 * throwaway PostgreSQL cluster), every combination side by side in one run, 16 clients per process.
 *   npm run bench -- serve --store sqlite,postgres --processes 1,2 [--messages 3000]
 *
 * With --while-training: the bot's answer latency (real retrieval answers over the sample
 * handbook) idle, then while a pretraining job runs in its worker thread, side by side with the
 * ratio (the goal is ≤ 2x).
 *   npm run bench -- serve --while-training [--messages 300] [--concurrency 2] [--train-params k=v,...]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/app/config.ts';
import { createRuntime, startServer, type RunningServer } from '../src/app/runtime.ts';
import { silentLogger } from '../src/core/index.ts';
import { instantAnswerer } from './_instant-answerer.ts';

const BENCH_TOKEN = 'bench-service-token-0123456789';

const QUESTIONS = [
  'How many days of annual leave do I get?',
  'Who approves my expense claims?',
  'How do I report a security incident?',
  'What is the notice period when I resign?',
  '年假有多少天？',
  'Can I work from home on Fridays?',
];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Measured {
  messages: number;
  failures: number;
  seconds: number;
  p50: number;
  p95: number;
  p99: number;
}

/** Sends `total` questions over `concurrency` clients; latencies after a warm-up. */
async function measure(server: Pick<RunningServer, 'url'> | Pick<RunningServer, 'url'>[], total: number, concurrency: number, offset: number, warmup: number, question: (i: number) => string): Promise<Measured> {
  const latencies: number[] = [];
  let failures = 0;
  const servers = Array.isArray(server) ? server : [server];
  const ask = async (i: number) => {
    const started = performance.now();
    // Round robin over the processes, as a load balancer would.
    const res = await fetch(`${servers[Math.abs(i) % servers.length]!.url}/api/chat`, {
      method: 'POST',
      // As a service (web identity: only a service or an admin may name the user), so that 50 users
      // give the per-user paths (rate limiter, conversation memory) realistic keys.
      headers: { 'content-type': 'application/json', authorization: `Bearer ${BENCH_TOKEN}` },
      body: JSON.stringify({ text: question(i), user: `u${i % 50}`, conversation: `c${offset}-${i % 200}` }),
    });
    await res.arrayBuffer();
    if (res.status !== 200) failures++;
    latencies.push(performance.now() - started);
  };
  for (let i = 0; i < warmup; i++) await ask(-i - 1); // warm-up: JIT, SQLite page cache
  latencies.length = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await ask(offset + next++);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { messages: total, failures, seconds, p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99) };
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      messages: { type: 'string' },
      concurrency: { type: 'string' },
      'while-training': { type: 'boolean', default: false },
      store: { type: 'string' },
      processes: { type: 'string' },
      'train-params': { type: 'string', default: 'preset=nanogpt-cpu,maxIters=100000,evalInterval=100000,checkpointInterval=100000' },
    },
  });
  if (values.store || values.processes) {
    return scaleOut(
      (values.store ?? 'sqlite').split(',').filter(Boolean),
      (values.processes ?? '1').split(',').map(Number),
      Number(values.messages ?? 3000),
      Number(values.concurrency ?? 16),
    );
  }
  if (values['while-training']) return whileTraining(Number(values.messages ?? 300), Number(values.concurrency ?? 2), values['train-params']!);
  const total = Number(values.messages ?? 3000);
  const concurrency = Number(values.concurrency ?? 16);
  const home = mkdtempSync(join(tmpdir(), 'teamllm-bench-serve-'));
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_RATE_PER_MINUTE: '10000', TEAMLLM_RATE_BURST: '10000', TEAMLLM_SERVICE_TOKENS: `bench=${BENCH_TOKEN}` }, cwd: home });
  const runtime = await createRuntime(config, { logger: silentLogger, answerer: instantAnswerer, defaultMetrics: false });
  const server = await startServer(runtime, 0, '127.0.0.1');
  const m = await measure(server, total, concurrency, 0, 200, (i) => `question number ${i}?`);
  await server.close();
  await runtime.close();
  rmSync(home, { recursive: true, force: true });
  const figures = {
    messages: total,
    concurrency,
    failures: m.failures,
    messages_per_s: (total / m.seconds).toFixed(0),
    p50_ms: m.p50.toFixed(2),
    p99_ms: m.p99.toFixed(2),
  };
  process.stdout.write(`${Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
}

async function whileTraining(total: number, concurrency: number, trainParams: string): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'teamllm-bench-serve-train-'));
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_RATE_PER_MINUTE: '10000', TEAMLLM_RATE_BURST: '10000', TEAMLLM_SERVICE_TOKENS: `bench=${BENCH_TOKEN}` }, cwd: home });
  // The real answerer: retrieval over the sample handbook (loaded into this home's knowledge base).
  const runtime = await createRuntime(config, { logger: silentLogger, defaultMetrics: false, startJobs: true });
  const server = await startServer(runtime, 0, '127.0.0.1');
  const question = (i: number) => QUESTIONS[Math.abs(i) % QUESTIONS.length]!;
  try {
    process.stderr.write(`idle: ${total} questions over ${concurrency} clients…\n`);
    const idle = await measure(server, total, concurrency, 0, 30, question);

    const params = Object.fromEntries(trainParams.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
    const job = await runtime.jobs.enqueue('pretrain', params, 'console:bench');
    process.stderr.write(`training: job #${job.id} pretrain (${trainParams}); waiting for its first steps…\n`);
    const until = Date.now() + 120_000;
    while ((runtime.jobs.current?.progress?.step ?? 0) < 3) {
      if (Date.now() > until || !runtime.jobs.current) throw new Error(`the training job did not start stepping: ${JSON.stringify(await runtime.store.getJob(job.id))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const stepAtStart = runtime.jobs.current!.progress!.step;
    const training = await measure(server, total, concurrency, 1_000_000, 0, question);
    const progress = runtime.jobs.current?.progress;
    process.stderr.write(`the job trained ${(progress?.step ?? stepAtStart) - stepAtStart} steps during the measurement (${Math.round(progress?.tokensPerSec ?? 0)} tokens/s)\n`);
    await runtime.jobs.stop();

    const row = (name: string, m: Measured) => `${name.padEnd(9)} ${m.p50.toFixed(1).padStart(8)} ${m.p95.toFixed(1).padStart(8)} ${m.p99.toFixed(1).padStart(8)} ${(m.messages / m.seconds).toFixed(1).padStart(10)} ${String(m.failures).padStart(8)}`;
    process.stdout.write(`${'phase'.padEnd(9)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'answers/s'.padStart(10)} ${'failures'.padStart(8)}\n`);
    process.stdout.write(`${row('idle', idle)}\n${row('training', training)}\n`);
    const figures = {
      messages: total,
      concurrency,
      idle_p50_ms: idle.p50.toFixed(2),
      idle_p95_ms: idle.p95.toFixed(2),
      training_p50_ms: training.p50.toFixed(2),
      training_p95_ms: training.p95.toFixed(2),
      ratio_p50: (training.p50 / idle.p50).toFixed(2),
      ratio_p95: (training.p95 / idle.p95).toFixed(2),
      failures: idle.failures + training.failures,
    };
    process.stdout.write(`${Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
  } finally {
    await server.close();
    await runtime.close();
    rmSync(home, { recursive: true, force: true });
  }
}

/** Starts one bench bot process (bench/_serve-process.ts) with this environment. */
async function startProcess(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '_serve-process.ts')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /READY (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`bench process exited ${code}`)));
  });
  return { child, url };
}

async function stopProcess(p: { child: ChildProcess }): Promise<void> {
  if (p.child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    p.child.once('exit', () => resolve());
    p.child.kill('SIGTERM');
  });
}

async function scaleOut(stores: string[], processCounts: number[], total: number, concurrency: number): Promise<void> {
  const { startPgCluster } = await import('../tests/pg-cluster.ts');
  const cluster = stores.includes('postgres') ? await startPgCluster() : undefined;
  const rows: { store: string; processes: number; m: Measured }[] = [];
  const base = { TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_QUICKSTART: 'off', TEAMLLM_RATE_PER_MINUTE: '10000', TEAMLLM_RATE_BURST: '10000', TEAMLLM_SERVICE_TOKENS: `bench=${BENCH_TOKEN}` };
  try {
    for (const store of stores) {
      for (const n of processCounts) {
        const homes: string[] = [];
        const shared = mkdtempSync(join(tmpdir(), 'teamllm-bench-scale-'));
        const databaseUrl = store === 'postgres' ? await cluster!.createDatabase() : undefined;
        const env = (i: number): NodeJS.ProcessEnv => {
          const home = store === 'sqlite' ? shared : mkdtempSync(join(tmpdir(), `teamllm-bench-scale-${i}-`));
          homes.push(home);
          const { TEAMLLM_DATABASE_URL: _, ...rest } = process.env;
          return { ...rest, ...base, TEAMLLM_HOME: home, ...(databaseUrl ? { TEAMLLM_DATABASE_URL: databaseUrl } : {}) };
        };
        const procs = [];
        for (let i = 0; i < n; i++) procs.push(await startProcess(env(i)));
        try {
          process.stderr.write(`${store}, ${n} process${n > 1 ? 'es' : ''}: ${total} questions over ${concurrency * n} clients…\n`);
          rows.push({ store, processes: n, m: await measure(procs, total, concurrency * n, 0, 200, (i) => `question number ${i}?`) });
        } finally {
          await Promise.all(procs.map(stopProcess));
          for (const h of new Set([shared, ...homes])) rmSync(h, { recursive: true, force: true });
        }
      }
    }
  } finally {
    await cluster?.stop();
  }
  process.stdout.write(`${'store'.padEnd(9)} ${'processes'.padStart(9)} ${'msgs/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'failures'.padStart(8)}\n`);
  for (const r of rows) {
    process.stdout.write(
      `${r.store.padEnd(9)} ${String(r.processes).padStart(9)} ${(r.m.messages / r.m.seconds).toFixed(0).padStart(8)} ${r.m.p50.toFixed(2).padStart(8)} ${r.m.p99.toFixed(2).padStart(8)} ${String(r.m.failures).padStart(8)}\n`,
    );
  }
  const figures: Record<string, string | number> = { messages: total };
  for (const r of rows) {
    const key = `${r.store}_${r.processes}p`;
    figures[`${key}_messages_per_s`] = (r.m.messages / r.m.seconds).toFixed(0);
    figures[`${key}_p50_ms`] = r.m.p50.toFixed(2);
    figures[`${key}_p99_ms`] = r.m.p99.toFixed(2);
    figures[`${key}_failures`] = r.m.failures;
  }
  process.stdout.write(`${Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
}
