/**
 * Measures what issue 23 asks to show, on real `teamllm serve` processes (not part of the tests):
 *
 *   1. kill -9 of the bundled Chroma: time to the first answer after it (and how many requests
 *      failed meanwhile), and to hybrid retrieval again (/healthz vectorStore.state "ok").
 *   2. `serve` started with the serving version's model.safetensors truncated: time from the start
 *      to the first answer from the fallback (the previous version), beside an intact start.
 *
 *   node --import tsx bench/measure-faults.ts
 *
 * Ends with one line of key=value figures, as the benchmarks do.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, LocalEmbeddings, LocalKnowledgeBase } from '../src/rag/index.ts';
import { trainEncoder } from '../src/rag/encoder-training.ts';
import { saveModelFiles } from '../src/model/model-files.ts';
import { ModelRegistry } from '../src/model/registry.ts';
import { CharTokenizer } from '../src/model/tokenizer/index.ts';
import { GPT } from '../src/model/gpt.ts';
import { ensureBackend } from '../src/model/backend.ts';
import { SAMPLE_KB_DIR } from '../src/app/sample-kb.ts';

const BIN = join(import.meta.dirname, '../bin/teamllm.js');
const homes: string[] = [];
const children: ChildProcess[] = [];

function serve(home: string, port: number): ChildProcess {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--host', '127.0.0.1'], {
    env: { ...process.env, TEAMLLM_HOME: home, TEAMLLM_QUICKSTART: 'off', TEAMLLM_LOG_LEVEL: 'warn' },
    cwd: home,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (c: Buffer) => process.env.VERBOSE && process.stderr.write(c));
  children.push(child);
  return child;
}

async function json(url: string, init?: RequestInit): Promise<{ status: number; body: any } | undefined> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
    return { status: res.status, body: await res.json() };
  } catch {
    return undefined;
  }
}

const ask = (base: string, text: string) =>
  json(`${base}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) });

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function chromaPid(home: string): number | undefined {
  const line = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.includes(join(home, 'chroma')) && l.includes(' run '));
  return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
}

async function vectorStoreCase(): Promise<Record<string, number>> {
  const home = mkdtempSync(join(tmpdir(), 'teamllm-measure-vs-'));
  homes.push(home);
  const kb = new LocalKnowledgeBase(join(home, 'kb', 'local.db'));
  await kb.addPaths([SAMPLE_KB_DIR]);
  const { encoder, report } = await trainEncoder(kb.passages(), { steps: 60 });
  LocalEmbeddings.fromTraining(encoder, report, { sources: (await kb.list()).length, passages: kb.chunkCount }).save(join(home, 'embeddings'));
  kb.close();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = serve(home, port);
  await until('healthz', async () => ((await json(`${base}/healthz`))?.body?.vectorStore?.state === 'ok' ? true : undefined));
  const warm = await ask(base, 'How many days of annual leave do I get?');
  if (warm?.status !== 200) throw new Error('no answer before the fault');
  const pid = chromaPid(home);
  if (!pid) throw new Error('no Chroma child found');
  const t0 = performance.now();
  process.kill(pid, 'SIGKILL');
  let failed = 0;
  const firstMs = await until('an answer after the kill', async () => {
    const r = await ask(base, 'How many days of annual leave do I get?');
    if (r?.status === 200) return performance.now() - t0;
    failed += 1;
    return undefined;
  });
  const degraded = (await json(`${base}/healthz`))?.body;
  const hybridMs = await until('hybrid again', async () => ((await json(`${base}/healthz`))?.body?.vectorStore?.state === 'ok' ? performance.now() - t0 : undefined));
  const after = await json(`${base}/healthz`);
  console.error(
    `vector store: first answer ${firstMs.toFixed(0)} ms after kill -9 (${failed} failed requests; healthz then: ${degraded?.status} ${JSON.stringify(degraded?.degraded)}); ` +
      `hybrid again after ${hybridMs.toFixed(0)} ms (restarts ${after?.body?.vectorStore?.restarts})`,
  );
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  return { chroma_first_answer_ms: Math.round(firstMs), chroma_failed_requests: failed, chroma_hybrid_again_ms: Math.round(hybridMs) };
}

async function modelCase(damaged: boolean): Promise<number> {
  const home = mkdtempSync(join(tmpdir(), 'teamllm-measure-model-'));
  homes.push(home);
  await ensureBackend();
  // A model of the quickstart's shape class (a few MB), registered twice: v1 then v2 serving.
  const tokenizer = CharTokenizer.fromText(Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\n\t', { specialTokens: true });
  const gpt = GPT.create({ vocabSize: tokenizer.vocabSize, blockSize: 256, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true });
  const made = join(home, 'made');
  mkdirSync(made);
  await saveModelFiles(made, gpt, tokenizer, { source: 'measure' });
  const registry = new ModelRegistry(home);
  await registry.promote((await registry.register(made)).version);
  await registry.promote((await registry.register(made)).version);
  if (damaged) truncateSync(join(registry.dir('v2'), 'model.safetensors'), 4096);
  writeFileSync(join(home, '.keep'), '');
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const t0 = performance.now();
  const child = serve(home, port);
  const ms = await until('the first answer', async () => {
    const r = await ask(base, 'How many days of annual leave do I get?');
    return r?.status === 200 ? performance.now() - t0 : undefined;
  });
  const h = (await json(`${base}/healthz`))?.body;
  console.error(`model ${damaged ? 'damaged' : 'intact'}: first answer ${ms.toFixed(0)} ms after serve started; serving ${h?.model?.version}; degraded ${JSON.stringify(h?.degraded)}`);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  return Math.round(ms);
}

try {
  const vs = await vectorStoreCase();
  const intact = await modelCase(false);
  const damaged = await modelCase(true);
  console.log(Object.entries({ ...vs, model_intact_first_answer_ms: intact, model_damaged_first_answer_ms: damaged }).map(([k, v]) => `${k}=${v}`).join(' '));
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const h of homes) rmSync(h, { recursive: true, force: true });
}
