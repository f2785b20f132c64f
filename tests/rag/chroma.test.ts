import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Document } from '@langchain/core/documents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChromaClient } from 'chromadb';
import {
  ChromaVectorStore,
  chromaClientFor,
  collectionName,
  LocalEmbeddings,
  LocalKnowledgeBase,
  openKnowledgeBase,
  startChromaServer,
  trainEmbeddings,
  type ChromaServer,
} from '../../src/rag/index.ts';
import { trainEncoder } from '../../src/rag/encoder-training.ts';
import { tempFolder } from './fixtures.ts';

const DOCS = {
  'hr/leave.md': '# Leave\n\n## Sick leave\n\nCall your manager before 10:00 on the first day you are ill. After a week the company doctor contacts you.\n\n## Annual leave\n\nFull-time staff receive 25 vacation days per year.',
  'it/laptops.md': '# IT\n\n## Laptops\n\nLaptops are replaced every three years by the helpdesk.\n\n## VPN\n\nThe VPN client is called Tunnelbee.',
  'zh/报销.md': '# 报销\n\n## 发票\n\n发票须在开票后三十天内提交到报销系统。\n\n## 差旅\n\n上海出差住宿标准为每晚六百元。',
};

async function tinyEmbeddings(kb: LocalKnowledgeBase): Promise<LocalEmbeddings> {
  const { encoder, report } = await trainEncoder(kb.passages(), { config: { buckets: 4096, dim: 16, members: 2 }, steps: 30, batchSize: 8 });
  return LocalEmbeddings.fromTraining(encoder, report, { sources: 3, passages: kb.chunkCount });
}

describe('collectionName', () => {
  it('derives a valid, distinct Chroma name from any knowledge base name', () => {
    for (const name of ['default', '人力资源', 'Sales & Marketing — EMEA', 'x'.repeat(600), '---']) {
      const c = collectionName(name);
      expect(c).toMatch(/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$/);
    }
    expect(collectionName('人力资源')).not.toBe(collectionName('财务'));
    expect(collectionName('Sales')).toMatch(/^teamllm-kb-sales-[0-9a-f]{10}$/);
  });
});

describe('with a real local Chroma server', () => {
  const dataDir = tempFolder();
  let server: ChromaServer;
  let client: ChromaClient;
  beforeAll(async () => {
    server = await startChromaServer({ path: join(dataDir, 'chroma') });
    client = chromaClientFor(server.url);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('stores our vectors with flat metadata, filters by metadata, and deletes by source', async () => {
    const kb = new LocalKnowledgeBase(':memory:');
    await kb.addPaths([tempFolder(DOCS)]);
    const embeddings = await tinyEmbeddings(kb);
    const store = await ChromaVectorStore.open(client, collectionName('store test'), embeddings);
    expect(store.collection.configuration.hnsw?.space).toBe('cosine');
    await store.addDocuments(
      [
        new Document({ pageContent: 'Laptops are replaced every three years.', metadata: { source: 'it.md', team: 'it', nested: { no: 1 }, list: [1] } }),
        new Document({ pageContent: 'Vacation days expire on 1 July.', metadata: { source: 'hr.md', team: 'hr' } }),
      ],
      { ids: ['it.md#0', 'hr.md#0'] },
    );
    const query = await embeddings.embedQuery('laptop replacement');
    const [[top, score]] = (await store.similaritySearchVectorWithScore(query, 1)) as [[Document, number]];
    expect(top.metadata).toEqual({ source: 'it.md', team: 'it' });
    expect(score).toBeGreaterThan(0);
    expect(score).toBeLessThanOrEqual(1.0001);
    const hrOnly = await store.similaritySearchVectorWithScore(query, 5, { team: 'hr' });
    expect(hrOnly.map(([d]) => d.id)).toEqual(['hr.md#0']);
    await store.delete({ filter: { source: 'hr.md' } });
    expect(await store.count()).toBe(1);
    kb.close();
  });

  it('searches hybrid through Chroma, keeps it in step with adds and removes, and survives a server restart', async () => {
    const docs = tempFolder(DOCS);
    const file = join(dataDir, 'kb.db');
    const kb = new LocalKnowledgeBase(file, { name: 'restart test' });
    await kb.addPaths([docs]);
    const embeddings = await tinyEmbeddings(kb);
    const open = async (c: ChromaClient) => ChromaVectorStore.open(c, collectionName('restart test'), embeddings, { kb: 'restart test' });
    expect(await kb.useDense({ embeddings, store: await open(client) })).toBe(kb.chunkCount);

    const hits = await kb.retrieve('how often are laptops replaced', 3);
    expect(hits[0]).toMatchObject({ source: 'it/laptops.md', title: 'IT > Laptops' });
    expect(hits[0]!.cosine).toBeGreaterThan(0);
    expect(hits[0]!.denseRank).toBeDefined();
    const scoped = await kb.retrieve('发票什么时候交', 5, { filter: { folder: 'zh' } });
    expect(scoped.length).toBeGreaterThan(0);
    expect(scoped.every((h) => h.source === 'zh/报销.md')).toBe(true);

    expect(await kb.remove('it/laptops.md')).toBe(2);
    expect(await (await open(client)).count()).toBe(kb.chunkCount);
    expect((await kb.retrieve('laptops replaced', 5, { mode: 'dense' })).some((h) => h.source === 'it/laptops.md')).toBe(false);
    kb.close();

    await server.stop();
    server = await startChromaServer({ path: join(dataDir, 'chroma') });
    client = chromaClientFor(server.url);
    const reopened = new LocalKnowledgeBase(file, { name: 'restart test' });
    // Same encoder, same passages: nothing to re-embed, the vectors came back from disk.
    expect(await reopened.useDense({ embeddings, store: await open(client) })).toBe(0);
    expect((await reopened.retrieve('住宿标准', 1, { mode: 'dense' }))[0]?.source).toBe('zh/报销.md');
    reopened.close();
  });

  it('uses the server CHROMA_URL points to, and falls back to BM25 with a warning when Chroma is unreachable', async () => {
    const home = tempFolder();
    const seed = new LocalKnowledgeBase(join(home, 'kb', 'local.db'));
    await seed.addPaths([tempFolder(DOCS)]);
    (await tinyEmbeddings(seed)).save(join(home, 'embeddings'));
    seed.close();

    const external = await openKnowledgeBase({ home, chromaUrl: server.url });
    expect(external.chroma).toEqual({ url: server.url, bundled: false });
    expect((await external.kb.retrieve('Tunnelbee', 1))[0]?.cosine).toBeDefined();
    await external.close();
    expect(await client.heartbeat()).toBeGreaterThan(0); // not ours to stop

    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (_: object, msg?: string) => void warnings.push(msg ?? ''), child: () => logger };
    const unreachable = await openKnowledgeBase({ home, chromaUrl: 'http://127.0.0.1:1', logger });
    expect(unreachable.chroma).toBeUndefined();
    expect(warnings.join()).toMatch(/vector store \(Chroma\) is unreachable: answering with BM25 alone/);
    expect((await unreachable.kb.search('Tunnelbee', 1))[0]?.source).toBe('it/laptops.md');
    await unreachable.close();
  });
});

describe('openKnowledgeBase', () => {
  it('starts the bundled Chroma once an encoder is trained, answers searches, and stops it on close', async () => {
    const home = tempFolder();
    const opened = await openKnowledgeBase({ home });
    expect(opened.chroma).toBeUndefined(); // no encoder yet: BM25 only, no server needed
    await opened.kb.addPaths([tempFolder(DOCS)]);
    expect((await opened.kb.search('vacation days', 1))[0]?.source).toBe('hr/leave.md');

    const { info, reembedded } = await opened.trainEmbeddings({ training: { config: { buckets: 4096, dim: 16, members: 2 }, steps: 20, batchSize: 8 } });
    expect(reembedded).toBe(opened.kb.chunkCount);
    expect(existsSync(join(home, 'embeddings', 'encoder.json'))).toBe(true);
    expect(opened.chroma?.bundled).toBe(true);
    expect(opened.kb.embeddings?.info.id).toBe(info.id);
    const url = opened.chroma!.url;
    const [hit] = await opened.kb.retrieve('Tunnelbee VPN client', 1);
    expect(hit).toMatchObject({ source: 'it/laptops.md', title: 'IT > VPN' });
    expect(hit!.cosine).toBeDefined();

    // Retraining with another shape: the collection is recreated for the new dimension.
    const retrained = await opened.trainEmbeddings({ training: { config: { buckets: 4096, dim: 16, members: 3 }, steps: 10, batchSize: 8 } });
    expect(retrained.reembedded).toBe(opened.kb.chunkCount);
    expect((await opened.kb.retrieve('Tunnelbee VPN client', 1, { mode: 'dense' }))[0]?.cosine).toBeDefined();

    const hr = await opened.get('HR');
    expect(hr).not.toBe(opened.kb);
    expect(await hr.list()).toEqual([]);
    await opened.close();
    await expect(fetch(`${url}/api/v2/heartbeat`)).rejects.toThrow();

    // Reopening the same home: the encoder is loaded and the vectors are already in Chroma.
    const again = await openKnowledgeBase({ home });
    expect(again.embeddings?.info.id).toBe(retrained.info.id);
    expect(info.id).not.toBe(retrained.info.id);
    expect((await again.kb.retrieve('Tunnelbee VPN client', 1))[0]?.cosine).toBeDefined();
    await again.close();
  });

  it('trains embeddings for a home folder outside a running app (teamllm train embeddings)', async () => {
    const home = tempFolder();
    const kb = new LocalKnowledgeBase(join(home, 'kb', 'local.db'));
    await kb.addPaths([tempFolder(DOCS)]);
    const passages = kb.chunkCount;
    kb.close();
    const steps: number[] = [];
    const result = await trainEmbeddings({
      home,
      training: { config: { buckets: 4096, dim: 16, members: 2 }, steps: 10, batchSize: 8 },
      onProgress: (p) => steps.push(p.step),
    });
    expect(result.info.corpus).toEqual({ sources: 3, passages });
    expect(result.reembedded).toBe(passages);
    expect(steps.at(-1)).toBe(20);
    expect(existsSync(join(home, 'embeddings', 'encoder.bin'))).toBe(true);
  });
});
