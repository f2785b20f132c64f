import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/core/sqlite-store.ts';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '../../bin/teamllm.js');

async function teamllm(home: string, args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: { ...process.env, TEAMLLM_HOME: home, ...env }, cwd: home });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('teamllm CLI', () => {
  it('answers from the built-in sample handbook with sources (ask --json) and exports what users rated', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-cli-'));
    const ask = await teamllm(home, ['ask', '--json', 'What is the Wi-Fi password policy for guests?']);
    expect(ask.code).toBe(0);
    const answer = JSON.parse(ask.stdout) as { answer: string; direct: string; sources: { source: string; title: string; text: string; score: number }[]; model: string; answerId: string };
    expect(answer.model).toBe('retrieval-only (BM25)');
    expect(answer.sources.length).toBeGreaterThan(0);
    expect(answer.sources[0]).toEqual({ source: expect.stringMatching(/^(en|zh)\/.+\.md$/), title: expect.any(String), text: expect.any(String), score: expect.any(Number) });

    const store = new SqliteStore(join(home, 'teamllm.db'));
    await store.recordFeedback({ answerId: answer.answerId, platform: 'console', userId: 'me', value: 1 });
    await store.close();
    const exported = await teamllm(home, ['data', 'export', '--kind', 'kto']);
    expect(exported.code).toBe(0);
    const rows = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toEqual([expect.objectContaining({ prompt: 'What is the Wi-Fi password policy for guests?', label: true, answerId: answer.answerId })]);
    expect((await teamllm(home, ['data', 'export', '--kind', 'nonsense'])).code).toBe(1);
  });

  it('adds, searches, lists and removes knowledge base documents', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-cli-'));
    writeFileSync(join(home, 'garden.md'), '# Garden\n\nThe rooftop garden closes at 18:45 on Fridays.');
    writeFileSync(join(home, 'slides.pptx'), 'binary');
    const env = { TEAMLLM_SAMPLE_KB: 'false' };
    const added = await teamllm(home, ['kb', 'add', join(home, 'garden.md'), join(home, 'slides.pptx')], env);
    expect(added.code).toBe(0);
    expect(added.stdout).toContain('added      garden.md');
    expect(added.stderr).toContain('skipped    slides.pptx: unsupported file type ".pptx"');
    const search = await teamllm(home, ['kb', 'search', '--json', '--k', '2', 'when does the rooftop garden close'], env);
    expect(JSON.parse(search.stdout)).toEqual({ results: [expect.objectContaining({ source: 'garden.md', title: 'Garden', text: expect.stringContaining('18:45') })] });
    expect((await teamllm(home, ['kb', 'list'], env)).stdout).toMatch(/^garden\.md\t1 passages\t/m);
    expect((await teamllm(home, ['kb', 'remove', 'garden.md'], env)).stdout).toContain('removed garden.md (1 passages)');
    const gone = await teamllm(home, ['kb', 'remove', 'garden.md'], env);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('no document named garden.md');
  });

  it("keeps the sample handbook out of a new data folder that a company's own documents are added to", async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-cli-'));
    writeFileSync(join(home, 'garden.md'), '# Garden\n\nThe rooftop garden closes at 18:45 on Fridays.');
    const added = await teamllm(home, ['kb', 'add', join(home, 'garden.md')]);
    expect(added.code).toBe(0);
    expect(added.stderr).not.toContain('sample handbook');
    const listed = await teamllm(home, ['kb', 'list', '--json']);
    expect((JSON.parse(listed.stdout) as { sources: { source: string }[] }).sources.map((s) => s.source)).toEqual(['garden.md']);

    // Asked for explicitly, the sample loads first, and the add says it is there beside the company's documents.
    const other = mkdtempSync(join(tmpdir(), 'teamllm-cli-'));
    const both = await teamllm(other, ['kb', 'add', join(home, 'garden.md')], { TEAMLLM_SAMPLE_KB: 'true' });
    expect(both.code).toBe(0);
    expect(both.stderr).toMatch(/also holds \d+ documents of the sample handbook/);
    const sources = (JSON.parse((await teamllm(other, ['kb', 'list', '--json'])).stdout) as { sources: { source: string }[] }).sources.map((s) => s.source);
    expect(sources).toContain('garden.md');
    expect(sources).toContain('en/leave-and-holidays.md');
  });

  it('stops with a clear message on bad configuration', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-cli-'));
    const result = await teamllm(home, ['kb', 'list'], { TEAMLLM_PORT: 'not-a-port' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('TEAMLLM_PORT (from environment)');
  });
});
