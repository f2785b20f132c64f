/**
 * Fault injection (issue 23): one part of the bot fails and the bot keeps answering. Each case
 * asserts what the user sees (the HTTP answer, /healthz, /metrics, the reply text) and what is
 * stored (vectors, registry, checkpoints, audit log).
 */
import { mkdirSync, mkdtempSync, promises as fsp, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/app/runtime.ts';
import { silentLogger, type Logger } from '../../src/core/index.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { chromaClientFor, InMemoryVectorStore, LocalEmbeddings, LocalKnowledgeBase, startChromaServer, type ChromaServer } from '../../src/rag/index.ts';
import { trainEncoder } from '../../src/rag/encoder-training.ts';
import { latestCheckpoint, saveCheckpoint } from '../../src/training/checkpoint.ts';
import { AdamW } from '../../src/training/adamw.ts';
import { tinyModel, useBackend } from '../model/helpers.ts';
import { waitFor } from '../helpers.ts';

const DOCS = {
  'hr/leave.md': '# Leave\n\n## Sick leave\n\nCall your manager before 10:00 on the first day you are ill.\n\n## Annual leave\n\nFull-time staff receive 25 vacation days per year.',
  'it/laptops.md': '# IT\n\n## Laptops\n\nLaptops are replaced every three years by the helpdesk.\n\n## VPN\n\nThe VPN client is called Tunnelbee.',
};

const temp: string[] = [];
function tempDir(prefix: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), `teamllm-faults-${prefix}-`));
  temp.push(dir);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}
afterAll(() => Promise.all(temp.map((d) => fsp.rm(d, { recursive: true, force: true }))));

/** A logger that keeps its lines, to count how often something was said. */
function recordingLogger(): Logger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (_: object, msg?: string) => void lines.push({ level, msg: msg ?? '' });
  const logger = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

const runtimes: Runtime[] = [];
afterEach(async () => {
  for (const r of runtimes.splice(0)) await r.close();
});

async function runtimeFor(home: string, env: Record<string, string> = {}, options: RuntimeOptions = {}): Promise<Runtime> {
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_QUICKSTART: 'off', TEAMLLM_SAMPLE_KB: 'false', ...env }, cwd: home });
  const runtime = await createRuntime(config, { defaultMetrics: false, logger: silentLogger, ...options });
  runtimes.push(runtime);
  return runtime;
}

async function ask(runtime: Runtime, text: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await runtime.http.request('/api/chat', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function health(runtime: Runtime): Promise<{ status: number; body: Record<string, any> }> {
  const res = await runtime.http.request('/healthz');
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe('the vector store dies while the bot serves', () => {
  let chroma: ChromaServer | undefined;
  afterAll(async () => {
    await chroma?.stop();
  });

  it('answers the next question from BM25 alone, says so once in the log, in /healthz and /metrics, and resumes hybrid search with the passages added meanwhile when Chroma is back', async () => {
    const home = tempDir('vs');
    const seed = new LocalKnowledgeBase(join(home, 'kb', 'local.db'));
    await seed.addPaths([tempDir('docs', DOCS)]);
    const { encoder, report } = await trainEncoder(seed.passages(), { config: { buckets: 4096, dim: 16, members: 2 }, steps: 20, batchSize: 8 });
    LocalEmbeddings.fromTraining(encoder, report, { sources: 2, passages: seed.chunkCount }).save(join(home, 'embeddings'));
    seed.close();
    const chromaDir = join(home, 'external-chroma');
    chroma = await startChromaServer({ path: chromaDir, supervise: false });
    const logger = recordingLogger();
    const runtime = await runtimeFor(home, { CHROMA_URL: chroma.url }, { logger, knowledge: { probe: { initialMs: 50, maxMs: 200 } } });

    // Healthy: hybrid (a cosine from Chroma on the hit).
    expect((await runtime.kb.retrieve('Tunnelbee', 1))[0]?.cosine).toBeDefined();
    expect((await health(runtime)).body).toMatchObject({ status: 'ok', degraded: [], vectorStore: { state: 'ok' } });

    // Chroma is killed: the very next question is answered, from BM25.
    process.kill(chroma.pid!, 'SIGKILL');
    await waitFor(async () => !(await chromaClientFor(chroma!.url).heartbeat().then(() => true, () => false)));
    const first = await ask(runtime, 'What is the VPN client called?');
    expect(first.status).toBe(200);
    expect(String(first.body.answer)).toContain('Tunnelbee');
    expect((first.body.sources as { source: string }[])[0]?.source).toBe('it/laptops.md');
    const second = await ask(runtime, 'How many vacation days do I get?');
    expect(second.status).toBe(200);
    expect(String(second.body.answer)).toContain('25 vacation days');
    expect((await runtime.kb.retrieve('Tunnelbee', 1))[0]?.cosine).toBeUndefined();

    const down = await health(runtime);
    expect(down.status).toBe(200);
    expect(down.body).toMatchObject({ status: 'degraded', degraded: ['vector_store'], vectorStore: { state: 'down', url: chroma.url, outages: 1 } });
    expect(down.body.vectorStore.lexicalOnlySearches).toBeGreaterThanOrEqual(2);
    const metrics = await (await runtime.http.request('/metrics')).text();
    expect(metrics).toMatch(/teamllm_degraded\{part="vector_store"\} 1/);
    expect(metrics).toMatch(/teamllm_vector_store_outages_total 1/);
    expect(metrics).toMatch(/teamllm_lexical_only_searches_total [1-9]/);
    const said = logger.lines.filter((l) => /vector store \(Chroma\) is unreachable/.test(l.msg));
    expect(said).toHaveLength(1);
    expect(said[0]!.level).toBe('warn');

    // A document added while Chroma is down is searchable by keyword at once...
    await runtime.kb.addPaths([tempDir('more', { 'fin/expenses.md': '# Expenses\n\n## Receipts\n\nReceipts go to Quillpad within thirty days.' })]);
    expect((await runtime.kb.search('Quillpad receipts', 1))[0]?.source).toBe('fin/expenses.md');

    // ...and embedded when Chroma is back (same data folder, same port): hybrid again by itself.
    const port = chroma.port;
    chroma = await startChromaServer({ path: chromaDir, port, supervise: false });
    await waitFor(async () => (await health(runtime)).body.vectorStore.state === 'ok', 10_000);
    const back = await health(runtime);
    expect(back.body).toMatchObject({ status: 'ok', degraded: [] });
    expect((await runtime.kb.retrieve('Tunnelbee', 1))[0]?.cosine).toBeDefined();
    const collection = (await chromaClientFor(chroma.url).listCollections())[0]!;
    expect(await collection.count()).toBe(runtime.kb.chunkCount);
    expect((await runtime.kb.retrieve('Quillpad receipts', 1, { mode: 'dense' }))[0]?.source).toBe('fin/expenses.md');
    expect(logger.lines.filter((l) => /vector store \(Chroma\) is back/.test(l.msg))).toHaveLength(1);
  }, 90_000);
});

describe('a vector store that hangs or fails inside one knowledge base', () => {
  it('answers with BM25 after the timeout, defers the vectors of what is added meanwhile, and writes only those when a store is attached again', async () => {
    const failures: unknown[] = [];
    const kb = new LocalKnowledgeBase(':memory:', { denseTimeoutMs: 50, onDenseFailure: (err) => failures.push(err) });
    await kb.addPaths([tempDir('docs', DOCS)]);
    const { encoder, report } = await trainEncoder(kb.passages(), { config: { buckets: 4096, dim: 16, members: 2 }, steps: 10, batchSize: 8 });
    const embeddings = LocalEmbeddings.fromTraining(encoder, report, { sources: 2, passages: kb.chunkCount });
    const store = new InMemoryVectorStore(embeddings);
    expect(await kb.useDense({ embeddings, store })).toBe(kb.chunkCount);
    // The server stops answering (a stopped process, a half-open connection): queries never settle.
    const hang = vi.spyOn(store, 'similaritySearchVectorWithScore').mockReturnValue(new Promise(() => {}));
    const [hit] = await kb.retrieve('Tunnelbee', 1);
    expect(hit).toMatchObject({ source: 'it/laptops.md' });
    expect(hit!.cosine).toBeUndefined();
    expect(String(failures[0])).toMatch(/the vector store did not answer within 50 ms/);
    expect(kb.denseUnavailable).toBe(true);
    expect(kb.lexicalOnlySearches).toBe(1);

    // Added and removed while it is down: in SQLite and BM25 now, in the store later.
    const write = vi.spyOn(store, 'addVectors');
    const report2 = await kb.addPaths([tempDir('more', { 'fin/expenses.md': '# Expenses\n\nReceipts go to Quillpad within thirty days.' })]);
    expect(report2.failed).toEqual([]);
    expect(await kb.remove('hr/leave.md')).toBeGreaterThan(0);
    expect(write).not.toHaveBeenCalled();
    expect((await kb.search('Quillpad', 1))[0]?.source).toBe('fin/expenses.md');

    hang.mockRestore();
    const written = await kb.useDense({ embeddings, store });
    expect(written).toBe(1); // the one new passage, not the whole knowledge base
    expect(kb.denseUnavailable).toBe(false);
    expect(await store.count()).toBe(kb.chunkCount);
    expect((await kb.retrieve('Quillpad receipts', 1, { mode: 'dense' }))[0]?.source).toBe('fin/expenses.md');
    expect((await kb.retrieve('vacation days', 5, { mode: 'dense' })).some((h) => h.source === 'hr/leave.md')).toBe(false);
    kb.close();
  });
});

describe('the bundled Chroma server is supervised', () => {
  it('is restarted after kill -9 on the same port, with its data intact', async () => {
    const dir = tempDir('bundled');
    const logs: string[] = [];
    const server = await startChromaServer({ path: dir, restartDelayMs: 50, log: (m) => logs.push(m) });
    try {
      const client = chromaClientFor(server.url);
      const collection = await client.getOrCreateCollection({ name: 'keep-me', embeddingFunction: null });
      await collection.add({ ids: ['a', 'b'], embeddings: [[1, 0], [0, 1]], documents: ['one', 'two'] });
      const pid = server.pid!;
      process.kill(pid, 'SIGKILL');
      await waitFor(async () => server.restarts === 1 && (await client.heartbeat().then(() => true, () => false)), 30_000);
      expect(server.pid).not.toBe(pid);
      expect(await (await client.getCollection({ name: 'keep-me', embeddingFunction: null } as never)).count()).toBe(2);
      expect(logs.join('\n')).toMatch(/exited with SIGKILL; restarting it/);
    } finally {
      await server.stop();
    }
    await expect(chromaClientFor(server.url).heartbeat()).rejects.toThrow();
  }, 60_000);
});

describe('a damaged model version', () => {
  let modelDir: string;
  beforeAll(async () => {
    await useBackend('cpu');
    const tokenizer = CharTokenizer.fromText(Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\n\t', { specialTokens: true });
    modelDir = join(tempDir('model'), 'model');
    mkdirSync(modelDir);
    await saveModelFiles(modelDir, tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }), tokenizer, { source: 'test' });
  });

  async function homeWith(versions: number): Promise<{ home: string; registry: ModelRegistry }> {
    const home = tempDir('models', DOCS);
    const registry = new ModelRegistry(home);
    for (let i = 0; i < versions; i++) await registry.promote((await registry.register(modelDir, { source: 'pretrain' })).version);
    return { home, registry };
  }

  it('is refused with a message naming version, file and what to do; serve falls back to the previous version and says so', async () => {
    const { home, registry } = await homeWith(2);
    expect((await registry.get('v2'))?.files?.['model.safetensors']?.sha256).toMatch(/^[0-9a-f]{64}$/);
    const file = join(registry.dir('v2'), 'model.safetensors');
    truncateSync(file, 100);
    const logger = recordingLogger();
    const runtime = await runtimeFor(home, {}, { logger });

    expect(runtime.bot.serving.model.version).toBe('v1');
    const reply = await ask(runtime, 'How many vacation days do I get?');
    expect(reply.status).toBe(200);
    expect((await runtime.store.getAnswer(String(reply.body.answerId)))?.modelVersion).toBe('v1');
    const h = await health(runtime);
    expect(h.status).toBe(200);
    expect(h.body).toMatchObject({ status: 'degraded', degraded: ['model'], modelFallback: { wanted: 'v2', file: 'model.safetensors', serving: 'v1' } });
    expect(h.body.modelFallback.reason).toMatch(/model version v2 cannot be served: .*model\.safetensors is 100 bytes.*teamllm model rollback/);
    const audit = await runtime.store.auditLog(10);
    expect(audit.find((a) => a.action === 'model-fallback')?.detail).toMatchObject({ version: 'v2', file: 'model.safetensors', servingInstead: 'v1' });
    expect(logger.lines.filter((l) => l.level === 'error' && /v2 cannot be served/.test(l.msg))).toHaveLength(1);
    // The follow loop asks again: the refusal is not repeated (nor the hashing).
    await runtime.models.activate();
    expect(logger.lines.filter((l) => l.level === 'error' && /v2 cannot be served/.test(l.msg))).toHaveLength(1);
    // The registry is left as it was: the operator decides.
    expect((await registry.serving())?.version).toBe('v2');

    const verify = await runtime.models.verify();
    expect(verify.ok).toBe(false);
    expect(verify.text).toMatch(/✓ v1: files match/);
    expect(verify.text).toMatch(/✗ model version v2 cannot be served: .*v2\/model\.safetensors is 100 bytes, \d+ were recorded at registration/);
    await expect(runtime.models.promote('v2', { id: 'console:test', isAdmin: true })).rejects.toThrow(/v2 cannot be served/);

    // Rolling back clears the fallback.
    await runtime.models.rollback({ id: 'console:test', isAdmin: true });
    expect((await health(runtime)).body).toMatchObject({ status: 'ok', degraded: [] });
  }, 60_000);

  it('with no earlier version, answers retrieval-only; a missing file is named too', async () => {
    const { home, registry } = await homeWith(1);
    await fsp.rm(join(registry.dir('v1'), 'tokenizer.json'));
    const runtime = await runtimeFor(home);
    await runtime.kb.addPaths([join(home, 'hr')]);
    expect(runtime.bot.serving.model.kind).toBe('retrieval-only');
    const reply = await ask(runtime, 'How many vacation days do I get?');
    expect(reply.status).toBe(200);
    expect(String(reply.body.answer)).toContain('25 vacation days');
    expect((await health(runtime)).body).toMatchObject({ degraded: ['model'], modelFallback: { wanted: 'v1', file: 'tokenizer.json', serving: null } });
  }, 60_000);

  it('shows on the admin page', async () => {
    const { home, registry } = await homeWith(2);
    truncateSync(join(registry.dir('v2'), 'model.safetensors'), 10);
    const runtime = await runtimeFor(home, { TEAMLLM_ADMIN_TOKEN: 'admin-secret-token-123' });
    const page = await (await runtime.http.request('/admin', { headers: { authorization: 'Bearer admin-secret-token-123' } })).text();
    expect(page).toMatch(/role="alert" class="alert">Model v2 is refused since .*model\.safetensors.*Answering with v1 meanwhile/);
  }, 60_000);

  it('loads an older registry without recorded hashes (unverified), then records them', async () => {
    const { home, registry } = await homeWith(1);
    const file = join(home, 'models', 'registry.json');
    const reg = JSON.parse(await fsp.readFile(file, 'utf8'));
    delete reg.versions.v1.files;
    await fsp.writeFile(file, JSON.stringify(reg));
    expect((await registry.verify('v1')).status).toBe('unverified');
    const runtime = await runtimeFor(home);
    expect(runtime.bot.serving.model.version).toBe('v1');
    expect((await registry.verify('v1')).status).toBe('ok');
  }, 60_000);
});

describe('a write fails (disk full)', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Makes every file written through fs.promises.open fail with ENOSPC, as a full disk does. */
  function diskFull(): void {
    const realOpen = fsp.open.bind(fsp);
    vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const handle = await realOpen(...args);
      const full = async (): Promise<never> => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
      };
      handle.writeFile = full;
      handle.write = full;
      return handle;
    });
    vi.spyOn(fsp, 'copyFile').mockRejectedValue(Object.assign(new Error('ENOSPC: no space left on device, copyfile'), { code: 'ENOSPC' }));
  }

  it('fails a checkpoint with the reason and leaves the previous checkpoint intact', async () => {
    await useBackend('cpu');
    const runDir = tempDir('ckpt');
    const tokenizer = CharTokenizer.fromText('abcdefghij');
    const model = tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true });
    const optimizer = new AdamW({}, () => true);
    const state = (step: number) => ({ step, history: { train: [], val: [] }, elapsedSec: 0, tokensSeen: step });
    await saveCheckpoint(runDir, { step: 10, state: state(10), optimizer, keep: 3, write: (dir) => saveModelFiles(dir, model, tokenizer, { step: 10 }) });
    diskFull();
    await expect(saveCheckpoint(runDir, { step: 20, state: state(20), optimizer, keep: 3, write: (dir) => saveModelFiles(dir, model, tokenizer, { step: 20 }) })).rejects.toThrow(/could not write .*: no space left on device \(ENOSPC\); the previous version of it is unchanged/);
    vi.restoreAllMocks();
    expect(await latestCheckpoint(runDir)).toMatchObject({ step: 10 });
    // Nothing half-written is left behind to take more of the missing space.
    expect(readdirSync(join(runDir, 'checkpoints'))).toEqual(['step-00000010']);
  });

  it('fails a model registration with the reason and leaves the registry and the serving model intact', async () => {
    await useBackend('cpu');
    const tokenizer = CharTokenizer.fromText('abcdefghij');
    const dir = join(tempDir('reg-model'), 'm');
    await saveModelFiles(dir, tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }), tokenizer);
    const home = tempDir('reg');
    const registry = new ModelRegistry(home);
    await registry.promote((await registry.register(dir)).version);
    diskFull();
    await expect(registry.register(dir, { promote: true })).rejects.toThrow(/could not write .*models\/v2: no space left on device \(ENOSPC\)/);
    vi.restoreAllMocks();
    expect((await registry.list()).map((v) => v.version)).toEqual(['v1']);
    expect((await registry.serving())?.version).toBe('v1');
    expect((await registry.verify('v1')).status).toBe('ok');
    expect(readdirSync(join(home, 'models')).sort()).toEqual(['registry.json', 'v1']);
  });
});

describe('the database stays locked', () => {
  it('answers that request with a clear error, not a crash, and the next one normally', async () => {
    const home = tempDir('locked', DOCS);
    const runtime = await runtimeFor(home, {}, { busyTimeoutMs: 100 });
    await runtime.kb.addPaths([join(home, 'hr')]);
    const other = new Database(join(home, 'teamllm.db'));
    other.pragma('busy_timeout = 0');
    other.exec('BEGIN EXCLUSIVE');
    const answersBefore = (other.prepare('SELECT count(*) AS n FROM answers').get() as { n: number }).n;
    try {
      const locked = await ask(runtime, 'How many vacation days do I get?');
      expect(locked.status).toBe(503);
      expect(String(locked.body.error)).toMatch(/database is locked by another process/);
      expect(String(locked.body.answer)).toMatch(/database is locked by another process.*ask again/);
    } finally {
      other.exec('ROLLBACK');
    }
    const after = await ask(runtime, 'How many vacation days do I get?');
    expect(after.status).toBe(200);
    expect(String(after.body.answer)).toContain('25 vacation days');
    expect((other.prepare('SELECT count(*) AS n FROM answers').get() as { n: number }).n).toBe(answersBefore + 1);
    other.close();
  }, 30_000);
});
