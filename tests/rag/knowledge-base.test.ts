import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { LocalKnowledgeBase, RetrievalOnlyAnswerer, searchTerms, splitMarkdown } from '../../src/rag/index.ts';
import type { AnswerEvent } from '../../src/core/index.ts';

function folder(files: Record<string, string | Buffer>): string {
  const dir = mkdtempSync(join(tmpdir(), 'teamllm-kb-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

async function collect(events: AsyncIterable<AnswerEvent>) {
  let text = '';
  let sources: unknown[] = [];
  for await (const e of events) {
    if (e.type === 'token') text += e.text;
    if (e.type === 'sources') sources = e.sources;
  }
  return { text, sources };
}

describe('splitMarkdown', () => {
  it('keeps the heading path and cuts long Chinese sections at sentence ends', async () => {
    const sentence = '年假按工龄计算，满一年后每年增加一天。';
    const md = `# 员工手册\n\n## 假期\n\n### 年假\n\n${sentence.repeat(60)}\n\n## 报销\n\n发票须在30天内提交！`;
    const chunks = await splitMarkdown(md, 'fallback', 300);
    expect(chunks.length).toBeGreaterThan(3);
    expect(chunks[0]!.title).toBe('员工手册 > 假期 > 年假');
    for (const c of chunks.filter((c) => c.title.endsWith('年假'))) {
      expect(c.text.length).toBeLessThanOrEqual(300);
      expect(c.text.endsWith('。')).toBe(true);
    }
    expect(chunks.at(-1)).toMatchObject({ title: '员工手册 > 报销', text: '发票须在30天内提交！' });
    expect(chunks.map((c) => c.position)).toEqual(chunks.map((_, i) => i));
  });

  it('does not take a # line inside a code fence for a heading', async () => {
    const chunks = await splitMarkdown('# Guide\n\n```sh\n# not a heading\nls\n```\n', 'x');
    expect(chunks).toHaveLength(1);
    expect(chunks[0]!.title).toBe('Guide');
  });
});

describe('searchTerms', () => {
  it('segments Chinese into words and bigrams and drops stop words', () => {
    const terms = searchTerms('公积金缴纳比例是多少？');
    expect(terms).toContain('公积');
    expect(terms).toContain('积金');
    expect(terms.some((t) => t === '比例')).toBe(true);
    expect(searchTerms('What is the VPN')).toEqual(['vpn']);
  });
});

describe('LocalKnowledgeBase', () => {
  it('ingests a folder, skips bad files by name, skips unchanged files and replaces changed ones', async () => {
    const dir = folder({
      'policies/leave.md': '# Leave\n\n## Annual leave\n\nFull-time staff get 25 days of annual leave.\n',
      'policies/travel.txt': 'Book flights through Skyroute at least 14 days ahead.',
      'zh/报销.md': '# 报销\n\n发票须在30天内提交到报销系统。',
      'scan.pdf': '%PDF-1.4 binary',
      'deck.pptx': 'binary',
      'broken.md': Buffer.from([0xff, 0xfe, 0x00, 0xd8]),
    });
    const kb = new LocalKnowledgeBase(':memory:');
    const first = await kb.addPaths([dir, join(dir, 'missing-folder')]);
    expect(first.added.sort()).toEqual(['policies/leave.md', 'policies/travel.txt', 'zh/报销.md']);
    expect(first.failed.map((f) => f.source).sort()).toEqual(['broken.md', 'deck.pptx', join(dir, 'missing-folder'), 'scan.pdf'].sort());
    expect(first.failed.find((f) => f.source === 'deck.pptx')!.reason).toMatch(/unsupported file type "\.pptx"/);
    expect(first.failed.find((f) => f.source === 'scan.pdf')!.reason).toMatch(/not a readable PDF/);
    expect(first.failed.find((f) => f.source === 'broken.md')!.reason).toMatch(/UTF-8/);

    const again = await kb.addPaths([dir]);
    expect(again.unchanged.sort()).toEqual(['policies/leave.md', 'policies/travel.txt', 'zh/报销.md']);

    writeFileSync(join(dir, 'policies/leave.md'), '# Leave\n\n## Annual leave\n\nFull-time staff get 27 days of annual leave.\n');
    const changed = await kb.addPaths([dir]);
    expect(changed.updated).toEqual(['policies/leave.md']);
    const hits = await kb.search('how many days of annual leave', 3);
    expect(hits[0]).toMatchObject({ source: 'policies/leave.md', title: 'Leave > Annual leave' });
    expect(hits[0]!.text).toContain('27 days');
    expect(hits.some((h) => h.text.includes('25 days'))).toBe(false);

    expect((await kb.search('发票多久内要提交', 1))[0]?.source).toBe('zh/报销.md');
    const list = await kb.list();
    expect(list.map((s) => [s.source, s.chunks])).toEqual([
      ['policies/leave.md', 1],
      ['policies/travel.txt', 1],
      ['zh/报销.md', 1],
    ]);
    expect(await kb.remove('policies/travel.txt')).toBe(1);
    expect(await kb.search('Skyroute flights', 5)).toEqual([]);
    expect(await kb.remove('policies/travel.txt')).toBe(0);
  });

  it('ingests chat attachments and reports those it cannot read', async () => {
    const kb = new LocalKnowledgeBase(':memory:');
    const report = await kb.addAttachments([
      { name: 'faq.md', fetch: async () => new TextEncoder().encode('# FAQ\n\nThe wifi password rotates monthly.') },
      { name: 'deck.pptx', fetch: async () => new Uint8Array([1, 2, 3]) },
      { name: 'gone.md' },
    ]);
    expect(report.added).toEqual(['faq.md']);
    expect(report.failed.map((f) => f.source)).toEqual(['deck.pptx', 'gone.md']);
    expect((await kb.search('wifi password', 1))[0]?.source).toBe('faq.md');
  });

  it('tags passages with metadata that search can filter on, and re-indexes a file whose tags change', async () => {
    const dir = folder({ 'a.md': '# Parking\n\nVisitor parking is at gate P3.', 'b.md': '# Parking\n\n访客停车在 P3 门。' });
    const kb = new LocalKnowledgeBase(':memory:', { name: 'facilities' });
    await kb.addPaths([join(dir, 'a.md')], { metadata: { team: 'rotterdam' } });
    await kb.addPaths([join(dir, 'b.md')], { metadata: { team: 'shanghai' } });
    const [hit] = await kb.retrieve('parking P3', 5, { filter: { team: 'shanghai' } });
    expect(hit).toMatchObject({ source: 'b.md', metadata: { team: 'shanghai', kb: 'facilities', format: 'markdown', title: 'Parking', position: 0 } });
    expect((await kb.retrieve('parking P3', 5, { filter: { team: 'rotterdam' } })).map((h) => h.source)).toEqual(['a.md']);
    expect((await kb.addPaths([join(dir, 'a.md')], { metadata: { team: 'rotterdam' } })).unchanged).toEqual(['a.md']);
    expect((await kb.addPaths([join(dir, 'a.md')], { metadata: { team: 'all' } })).updated).toEqual(['a.md']);
  });

  it('drops a passage that is an exact copy of a better-ranked one', async () => {
    const text = '# FAQ\n\nThe wifi password rotates monthly.';
    const kb = new LocalKnowledgeBase(':memory:');
    await kb.addPaths([folder({ 'faq.md': text, 'copy-of-faq.md': text })]);
    expect(await kb.search('wifi password', 5)).toHaveLength(1);
  });

  it('upgrades a knowledge base file written by the first version in place', async () => {
    const file = join(folder({}), 'old.db');
    const old = new Database(file);
    old.exec(`CREATE TABLE sources (source TEXT PRIMARY KEY, title TEXT NOT NULL, hash TEXT NOT NULL, indexed_at INTEGER NOT NULL);
      CREATE TABLE chunks (source TEXT NOT NULL, position INTEGER NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (source, position));
      INSERT INTO sources VALUES ('a.md', 'A', 'h', 1);
      INSERT INTO chunks VALUES ('a.md', 0, 'A', 'The canteen opens at 11:30.');`);
    old.close();
    const kb = new LocalKnowledgeBase(file);
    expect((await kb.retrieve('canteen opens', 1))[0]).toMatchObject({ source: 'a.md', metadata: { format: 'markdown' } });
    kb.close();
  });

  it('persists across reopening', async () => {
    const dir = folder({ 'a.md': '# A\n\nThe canteen opens at 11:30.' });
    const file = join(dir, 'kb.db');
    const kb = new LocalKnowledgeBase(file);
    await kb.addPaths([join(dir, 'a.md')]);
    kb.close();
    const reopened = new LocalKnowledgeBase(file);
    expect((await reopened.search('canteen opens', 1))[0]?.text).toContain('11:30');
  });
});

describe('RetrievalOnlyAnswerer', () => {
  it('quotes the best sentences with citations and says so; says it does not know otherwise', async () => {
    const dir = folder({
      'it.md': '# IT\n\n## VPN\n\nThe VPN client is called Tunnelbee. Install it from the self-service portal. Printers are on floor 2.',
    });
    const kb = new LocalKnowledgeBase(':memory:');
    await kb.addPaths([dir]);
    const answerer = new RetrievalOnlyAnswerer(kb);
    expect(answerer.model.kind).toBe('retrieval-only');
    const found = await collect(answerer.answer({ question: 'What is the VPN client called?', history: [], user: { platform: 'web', id: 'u' }, channel: 'c' }));
    expect(found.text).toContain('No language model is trained yet');
    expect(found.text).toContain('The VPN client is called Tunnelbee. [1]');
    expect(found.text).not.toContain('Printers');
    expect(found.sources).toHaveLength(1);

    const unknown = await collect(answerer.answer({ question: 'What is the parental leave policy in Brazil?', history: [], user: { platform: 'web', id: 'u' }, channel: 'c' }));
    expect(unknown.text).toMatch(/couldn't find/);
    expect(unknown.sources).toEqual([]);
    const chinese = await collect(answerer.answer({ question: '食堂几点开门？', history: [], user: { platform: 'web', id: 'u' }, channel: 'c' }));
    expect(chinese.text).toContain('没有找到');
  });
});
