/**
 * Knowledge bases shared through PostgreSQL (src/rag/pg-knowledge-sync.ts): a document added or
 * removed through one process is searched by the others within seconds, without a restart.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PgStore } from '../../src/core/pg-store.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { PgKnowledgeSync } from '../../src/rag/pg-knowledge-sync.ts';
import { pgUnavailable, startPgCluster, type PgCluster } from '../pg-cluster.ts';
import { waitFor } from '../helpers.ts';

const unavailable = pgUnavailable();
let cluster: PgCluster | undefined;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  if (!unavailable) cluster = await startPgCluster();
}, 120_000);
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
afterAll(async () => {
  await cluster?.stop();
});

/** One bot process's knowledge base: its own SQLite file and connections, following the database. */
async function processKb(url: string, docs: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'teamllm-shared-kb-'));
  const kb = new LocalKnowledgeBase(join(dir, 'kb', 'local.db'));
  if (Object.keys(docs).length > 0) {
    const folder = join(dir, 'docs');
    mkdirSync(folder, { recursive: true });
    for (const [name, text] of Object.entries(docs)) writeFileSync(join(folder, name), text);
    await kb.addPaths([folder]);
  }
  const store = await PgStore.open(url, { poolSize: 3 });
  const sync = new PgKnowledgeSync(store, { pollMs: 200 });
  await sync.start();
  await sync.attach(kb);
  cleanup.push(async () => {
    await sync.close();
    kb.close();
    await store.close();
  });
  return { kb, dir };
}

const sources = async (kb: LocalKnowledgeBase, q: string) => (await kb.search(q, 3)).map((r) => r.source);

describe.skipIf(unavailable !== undefined)('knowledge bases shared through PostgreSQL', () => {
  it('publishes the first process\'s documents, and a document added or removed through one process is searched by the other within 5 s', async () => {
    const url = await cluster!.createDatabase();
    const a = await processKb(url, { 'leave.md': '# Leave\n\nEveryone gets 25 days of annual leave.' });
    const b = await processKb(url);
    // The second process started from an empty folder and has the first one's documents.
    expect(await sources(b.kb, 'annual leave days')).toEqual(['leave.md']);

    const file = join(a.dir, 'parking.md');
    writeFileSync(file, '# Parking\n\nThe bicycle shed is behind building C; badges open it.');
    const started = Date.now();
    await a.kb.addPaths([file]);
    await waitFor(async () => (await sources(b.kb, 'bicycle shed badge')).includes('parking.md'), 5_000);
    expect(Date.now() - started).toBeLessThan(5_000);

    // Changed through the other process: the first follows.
    const changed = join(b.dir, 'parking.md');
    writeFileSync(changed, '# Parking\n\nThe bicycle shed moved to the garage under building D.');
    await b.kb.addPaths([changed]);
    await waitFor(async () => (await a.kb.search('garage building D', 1))[0]?.text.includes('garage') ?? false, 5_000);
    expect((await a.kb.list()).find((s) => s.source === 'parking.md')?.chunks).toBe(1);

    expect(await b.kb.remove('leave.md')).toBeGreaterThan(0);
    await waitFor(async () => !(await sources(a.kb, 'annual leave days')).includes('leave.md'), 5_000);
    expect((await a.kb.list()).map((s) => s.source)).toEqual(['parking.md']);
  });

  it('brings a process that was down up to date when it starts: documents added meanwhile in, removed ones out', async () => {
    const url = await cluster!.createDatabase();
    const a = await processKb(url, { 'one.md': '# One\n\nThe first handbook page about holidays.', 'two.md': '# Two\n\nThe second page about expenses.' });
    // A process whose local copy is out of date (it had an old page the others removed).
    const stale = mkdtempSync(join(tmpdir(), 'teamllm-stale-'));
    mkdirSync(join(stale, 'docs'), { recursive: true });
    writeFileSync(join(stale, 'docs', 'old.md'), '# Old\n\nA retired policy about fax machines.');
    const dir = mkdtempSync(join(tmpdir(), 'teamllm-shared-kb-'));
    const local = new LocalKnowledgeBase(join(dir, 'local.db'));
    await local.addPaths([join(stale, 'docs')]);
    const store = await PgStore.open(url, { poolSize: 2 });
    const sync = new PgKnowledgeSync(store, { pollMs: 200 });
    await sync.start();
    await sync.attach(local);
    cleanup.push(async () => {
      await sync.close();
      local.close();
      await store.close();
    });
    expect((await local.list()).map((s) => s.source)).toEqual(['one.md', 'two.md']);
    expect(await sources(local, 'fax machines')).toEqual([]);
    expect((await a.kb.list()).map((s) => s.source)).toEqual(['one.md', 'two.md']);
  });
});
