import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { questionKey } from '../../src/training/feedback-datasets.ts';
import type { NewAnswerRecord } from '../../src/core/index.ts';

function answer(question: string, output: string): NewAnswerRecord {
  return {
    platform: 'slack', workspace: 'T', channel: 'C', messageId: 'm', userId: 'U', question,
    passages: [{ source: 'en/leave.md', title: 'Leave', text: '25 days', score: 2 }],
    prompt: `<user>${question}`, output, modelName: 'gpt-tiny', modelVersion: 'v3', latencyMs: 12,
  };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('SqliteStore', () => {
  it('migrates a new file to the latest schema in WAL mode and reopens it without re-running migrations', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'teamllm-store-')), 'x.db');
    const store = new SqliteStore(file);
    expect(store.schemaVersion).toBe(3);
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    await store.saveAnswer(answer('q', 'a'));
    await store.close();
    const raw = new Database(file);
    expect(raw.pragma("user_version", { simple: true })).toBe(3);
    raw.close();
    const reopened = new SqliteStore(file);
    expect((await collect(reopened.ratedAnswers())).length).toBe(0);
    expect(reopened.db.prepare('select count(*) n from answers').get()).toEqual({ n: 1 });
  });

  it('keeps one vote per user and answer, keeps an earlier comment when a vote changes, and counts votes', async () => {
    const store = new SqliteStore(':memory:');
    const a = await store.saveAnswer(answer('q', 'a'));
    await store.recordFeedback({ answerId: a.id, platform: 'slack', userId: 'U1', value: -1, comment: 'wrong year' });
    await store.recordFeedback({ answerId: a.id, platform: 'slack', userId: 'U1', value: 1 });
    await store.recordFeedback({ answerId: a.id, platform: 'web', userId: 'U1', value: 1 });
    const fb = await store.feedbackFor(a.id);
    expect(fb).toHaveLength(2);
    expect(fb[0]).toMatchObject({ value: 1, comment: 'wrong year' });
    expect(await store.feedbackCounts()).toEqual({ up: 2, down: 0 });
    expect(() => store.db.prepare("insert into feedback values ('nope','x','y',1,null,0,0)").run()).toThrow(/FOREIGN KEY/);
  });
});

// Claims, votes, exports and the job queue are in the contract suite (store-contract.test.ts), run
// on SQLite and PostgreSQL alike; what is here is SQLite's own.
describe('question key', () => {
  it('treats spacing, case and a trailing question mark as the same question', () => {
    expect(questionKey('How many  leave days？')).toBe(questionKey('how many leave days'));
  });
});
