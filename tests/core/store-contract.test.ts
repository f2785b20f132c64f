/**
 * One contract for the stores behind teamllm: every behaviour of the SQLite store, tested once and
 * run against SQLite and against PostgreSQL (a throwaway cluster, tests/pg-cluster.ts). What only
 * a store shared by several processes has (job leases, shared rate limits, migrations racing)
 * is tested at the end on PostgreSQL.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RateLimiter, type BotStore, type JobStore, type NewAnswerRecord, type RateLimit } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { PgStore, redactDatabaseUrl } from '../../src/core/pg-store.ts';
import { exportDataset } from '../../src/training/feedback-datasets.ts';
import { pgUnavailable, startPgCluster, type PgCluster } from '../pg-cluster.ts';

type ContractStore = BotStore & JobStore & Pick<SqliteStore, 'feedbackByDay'>;

interface StoreKind {
  name: string;
  /** A new, empty database; `open` opens a connection to it (several: like several processes). */
  fresh(): Promise<{ open(): Promise<ContractStore> }>;
  rateLimiter(store: ContractStore, perMinute: number, burst: number, now: () => number): RateLimit;
  /** Inserts a vote on an answer that does not exist (must be refused). */
  orphanVote(store: ContractStore): Promise<unknown>;
}

const unavailable = pgUnavailable();
let cluster: PgCluster | undefined;
const opened: ContractStore[] = [];

const kinds: StoreKind[] = [
  {
    name: 'sqlite',
    fresh: async () => {
      const file = join(mkdtempSync(join(tmpdir(), 'teamllm-contract-')), 'teamllm.db');
      return { open: async () => new SqliteStore(file) };
    },
    rateLimiter: (_store, perMinute, burst, now) => new RateLimiter(perMinute, burst, now),
    orphanVote: async (store) => (store as SqliteStore).db.prepare("insert into feedback values ('nope','x','y',1,null,0,0)").run(),
  },
  {
    name: 'postgres',
    fresh: async () => {
      const url = await cluster!.createDatabase();
      return { open: () => PgStore.open(url, { poolSize: 4 }) };
    },
    rateLimiter: (store, perMinute, burst, now) => (store as PgStore).rateLimiter(perMinute, burst, now),
    orphanVote: (store) => (store as PgStore).pool.query("insert into feedback (answer_id, platform, user_id, value, created_at, updated_at) values ('nope','x','y',1,0,0)"),
  },
];

beforeAll(async () => {
  if (!unavailable) cluster = await startPgCluster();
}, 120_000);

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await cluster?.stop();
});

function answer(question: string, output: string, overrides: Partial<NewAnswerRecord> = {}): NewAnswerRecord {
  return {
    platform: 'slack', workspace: 'T', channel: 'C', messageId: 'm', userId: 'U', question,
    passages: [{ source: 'en/leave.md', title: 'Leave', text: '25 days', score: 2 }],
    prompt: `<user>${question}`, output, modelName: 'gpt-tiny', modelVersion: 'v3', latencyMs: 12,
    ...overrides,
  };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

for (const kind of kinds) {
  describe.skipIf(kind.name === 'postgres' && unavailable !== undefined)(`store contract: ${kind.name}`, () => {
    async function open(): Promise<ContractStore> {
      const db = await kind.fresh();
      const store = await db.open();
      opened.push(store);
      return store;
    }
    async function twoProcesses(): Promise<[ContractStore, ContractStore]> {
      const db = await kind.fresh();
      const a = await db.open();
      const b = await db.open();
      opened.push(a, b);
      return [a, b];
    }

    it('claims an event once per platform, also across connections and restarts', async () => {
      const db = await kind.fresh();
      const store = await db.open();
      expect(await store.claimEvent('slack', 'E1')).toBe(true);
      expect(await store.claimEvent('slack', 'E1')).toBe(false);
      expect(await store.claimEvent('feishu', 'E1')).toBe(true);
      await store.close();
      const reopened = await db.open();
      opened.push(reopened);
      expect(await reopened.claimEvent('slack', 'E1')).toBe(false);
    });

    it('gives a redelivery claimed by two processes at once to exactly one of them', async () => {
      const [a, b] = await twoProcesses();
      for (let round = 0; round < 5; round++) {
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).claimEvent('slack', `race-${round}`, { leaseMs: 60_000 })));
        expect(results.filter(Boolean)).toHaveLength(1);
      }
    });

    it('leases a claim: a duplicate inside the lease, taken over once after it, permanent once confirmed, free again once released', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      const [a, b] = await twoProcesses();
      expect(await a.claimEvent('slack', 'L1', { leaseMs: 1000 })).toBe(true);
      expect(await b.claimEvent('slack', 'L1', { leaseMs: 1000 })).toBe(false);
      vi.setSystemTime(Date.now() + 1500);
      const takeovers = await Promise.all([a.claimEvent('slack', 'L1', { leaseMs: 1000 }), b.claimEvent('slack', 'L1', { leaseMs: 1000 })]);
      expect(takeovers.filter(Boolean)).toHaveLength(1);
      await a.confirmEvent('slack', 'L1');
      vi.setSystemTime(Date.now() + 10_000);
      expect(await b.claimEvent('slack', 'L1', { leaseMs: 1000 })).toBe(false);
      // Releasing a confirmed claim does nothing; releasing an unconfirmed one frees the id.
      await b.releaseEvent('slack', 'L1');
      expect(await b.claimEvent('slack', 'L1', { leaseMs: 1000 })).toBe(false);
      expect(await a.claimEvent('slack', 'L2', { leaseMs: 1000 })).toBe(true);
      await a.releaseEvent('slack', 'L2');
      expect(await b.claimEvent('slack', 'L2', { leaseMs: 1000 })).toBe(true);
      // A plain (lease-less) claim never expires.
      expect(await a.claimEvent('slack', 'P1')).toBe(true);
      vi.setSystemTime(Date.now() + 3_600_000);
      expect(await b.claimEvent('slack', 'P1')).toBe(false);
      expect(await b.claimEvent('slack', 'P1', { leaseMs: 1000 })).toBe(false);
    });

    it('saves answers and finds them by id and by their posted reply', async () => {
      const store = await open();
      const a = await store.saveAnswer(answer('q1', 'a1', { thread: 'th', userName: 'Ann' }));
      const b = await store.saveAnswer(answer('q2', 'a2'));
      expect(a.id).not.toBe(b.id);
      const got = await store.getAnswer(a.id);
      expect(got).toEqual({ ...answer('q1', 'a1', { thread: 'th', userName: 'Ann' }), id: a.id, createdAt: a.createdAt });
      expect(await store.getAnswer('missing')).toBeUndefined();
      expect((await store.getAnswer(b.id))).not.toHaveProperty('thread');
      await store.setAnswerReply(b.id, 'ts-1');
      expect((await store.findAnswerByReply('slack', 'ts-1'))?.id).toBe(b.id);
      expect(await store.findAnswerByReply('feishu', 'ts-1')).toBeUndefined();
      expect((await store.getAnswer(b.id))?.replyId).toBe('ts-1');
    });

    it('keeps one vote per user and answer, keeps an earlier comment when a vote changes, and counts votes', async () => {
      const store = await open();
      const a = await store.saveAnswer(answer('q', 'a'));
      await store.recordFeedback({ answerId: a.id, platform: 'slack', userId: 'U1', value: -1, comment: 'wrong year' });
      const changed = await store.recordFeedback({ answerId: a.id, platform: 'slack', userId: 'U1', value: 1 });
      expect(changed).toMatchObject({ answerId: a.id, platform: 'slack', userId: 'U1', value: 1, comment: 'wrong year' });
      expect(changed.updatedAt).toBeGreaterThanOrEqual(changed.createdAt);
      await store.recordFeedback({ answerId: a.id, platform: 'web', userId: 'U1', value: 1 });
      const fb = await store.feedbackFor(a.id);
      expect(fb).toHaveLength(2);
      expect(fb[0]).toMatchObject({ platform: 'slack', value: 1, comment: 'wrong year' });
      expect(fb[1]).not.toHaveProperty('comment');
      expect(await store.feedbackCounts()).toEqual({ up: 2, down: 0 });
      await expect(kind.orphanVote(store)).rejects.toThrow(/FOREIGN KEY|foreign key/);
    });

    it('withdraws a vote once', async () => {
      const store = await open();
      const a = await store.saveAnswer(answer('q', 'a'));
      await store.recordFeedback({ answerId: a.id, platform: 'slack', userId: 'U1', value: -1 });
      expect(await store.removeFeedback(a.id, 'slack', 'U1')).toBe(true);
      expect(await store.removeFeedback(a.id, 'slack', 'U1')).toBe(false);
      expect(await store.feedbackFor(a.id)).toEqual([]);
      expect(await store.feedbackCounts()).toEqual({ up: 0, down: 0 });
    });

    it('ends concurrent votes of one user through two processes as one row', async () => {
      const [a, b] = await twoProcesses();
      const ans = await a.saveAnswer(answer('q', 'a'));
      await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).recordFeedback({ answerId: ans.id, platform: 'slack', userId: 'U1', value: i % 3 ? 1 : -1 })));
      expect(await b.feedbackFor(ans.id)).toHaveLength(1);
      const { up, down } = await a.feedbackCounts();
      expect(up + down).toBe(1);
    });

    it('counts votes and answers per UTC day', async () => {
      const store = await open();
      const a = await store.saveAnswer(answer('q', 'a'));
      await store.saveAnswer(answer('q2', 'a2'));
      await store.recordFeedback({ answerId: a.id, platform: 'slack', userId: 'U1', value: 1 });
      await store.recordFeedback({ answerId: a.id, platform: 'slack', userId: 'U2', value: -1 });
      const today = new Date().toISOString().slice(0, 10);
      expect(await store.feedbackByDay(7)).toEqual([{ day: today, up: 1, down: 1, answers: 2 }]);
    });

    it('keeps conversation turns in order, the most recent ones, and clears them', async () => {
      const store = await open();
      for (let i = 0; i < 5; i++) await store.appendTurn('c1', { role: i % 2 ? 'assistant' : 'user', text: `t${i}`, at: 1000 + i });
      await store.appendTurn('c2', { role: 'user', text: 'other', at: 1 });
      expect(await store.recentTurns('c1', 3)).toEqual([
        { role: 'user', text: 't2', at: 1002 },
        { role: 'assistant', text: 't3', at: 1003 },
        { role: 'user', text: 't4', at: 1004 },
      ]);
      await store.clearConversation('c1');
      expect(await store.recentTurns('c1', 3)).toEqual([]);
      expect(await store.recentTurns('c2', 3)).toHaveLength(1);
    });

    it('keeps an audit log, newest first, and counts refused commands per actor, command and hour', async () => {
      const store = await open();
      await store.audit({ actor: 'slack:UADMIN', action: 'promote', detail: { to: 'v2' } });
      await store.audit({ actor: 'slack:UADMIN', action: 'rollback', detail: { to: 'v1', nested: { ok: true } } });
      const log = await store.auditLog(10);
      expect(log.map((e) => e.action)).toEqual(['rollback', 'promote']);
      expect(log[0]!.detail).toEqual({ to: 'v1', nested: { ok: true } });
      expect(typeof log[0]!.at).toBe('number');
      expect(await store.auditLog(1)).toHaveLength(1);
      for (let i = 0; i < 3; i++) await store.auditDenial('slack:U1', '/train');
      await store.auditDenial('slack:U2', '/model');
      const denials = await store.auditDenials(10);
      expect(denials).toHaveLength(2);
      const u1 = denials.find((d) => d.actor === 'slack:U1')!;
      expect(u1).toMatchObject({ command: '/train', count: 3 });
      expect(u1.hour % 3_600_000).toBe(0);
      expect(typeof u1.lastAt).toBe('number');
    });

    it('lists rated answers with their votes, with or without anonymous web votes, in the order given', async () => {
      const store = await open();
      const first = await store.saveAnswer(answer('first', 'a1'));
      const second = await store.saveAnswer(answer('second', 'a2'));
      await store.saveAnswer(answer('unrated', 'a3'));
      await store.recordFeedback({ answerId: second.id, platform: 'web', userId: 'anon:abc', value: -1, comment: 'meh' });
      await store.recordFeedback({ answerId: first.id, platform: 'slack', userId: 'U1', value: 1, comment: 'great' });
      await store.recordFeedback({ answerId: first.id, platform: 'slack', userId: 'U2', value: -1 });
      const all = await collect(store.ratedAnswers());
      expect(all.map((r) => [r.answer.question, r.up, r.down, r.comments])).toEqual([
        ['first', 1, 1, ['great']],
        ['second', 0, 1, ['meh']],
      ]);
      const vouched = await collect(store.ratedAnswers({ anonymousVotes: false }));
      expect(vouched.map((r) => r.answer.question)).toEqual(['first']);
    });

    it('exports sft, kto and preference rows from the votes', async () => {
      const store = await open();
      const good = await store.saveAnswer(answer('How many leave days?', 'You get 25 days [1].'));
      const bad = await store.saveAnswer(answer('how many leave days', 'Ask HR.'));
      const split = await store.saveAnswer(answer('Where is the office?', 'Rotterdam.'));
      await store.saveAnswer(answer('Unrated?', 'never voted'));
      await store.recordFeedback({ answerId: good.id, platform: 'slack', userId: 'U1', value: 1 });
      await store.recordFeedback({ answerId: good.id, platform: 'slack', userId: 'U2', value: 1 });
      await store.recordFeedback({ answerId: bad.id, platform: 'slack', userId: 'U1', value: -1, comment: 'useless' });
      await store.recordFeedback({ answerId: split.id, platform: 'slack', userId: 'U1', value: 1 });
      await store.recordFeedback({ answerId: split.id, platform: 'slack', userId: 'U2', value: -1 });
      const sft = await collect(exportDataset(store, 'sft'));
      expect(sft).toEqual([
        {
          messages: [
            { role: 'user', content: 'How many leave days?' },
            { role: 'assistant', content: 'You get 25 days [1].' },
          ],
          context: [{ source: 'en/leave.md', title: 'Leave', text: '25 days' }],
          answerId: good.id,
          model: 'gpt-tiny@v3',
          votes: { up: 2, down: 0 },
        },
      ]);
      const kto = await collect(exportDataset(store, 'kto'));
      expect(kto.map((r) => [r.completion, r.label])).toEqual([
        ['You get 25 days [1].', true],
        ['Ask HR.', false],
      ]);
      const pref = await collect(exportDataset(store, 'preference'));
      expect(pref).toHaveLength(1);
      expect(pref[0]).toMatchObject({ prompt: 'How many leave days?', chosen: 'You get 25 days [1].', rejected: 'Ask HR.', chosenId: good.id, rejectedId: bad.id });
    });

    it('keeps a job queue: create, update, list newest first, and interrupt what a dead process left running', async () => {
      const store = await open();
      const j1 = await store.createJob({ kind: 'sft', params: { epochs: '2' }, requestedBy: 'slack:UADMIN' });
      expect(j1).toMatchObject({ kind: 'sft', params: { epochs: '2' }, status: 'queued', requestedBy: 'slack:UADMIN' });
      expect(j1).not.toHaveProperty('startedAt');
      const j2 = await store.createJob({ kind: 'reward', params: {}, requestedBy: 'cli', runDir: '/runs/2', resumes: j1.id });
      expect(j2.id).toBeGreaterThan(j1.id);
      expect(j2).toMatchObject({ runDir: '/runs/2', resumes: j1.id });
      const running = await store.updateJob(j1.id, { status: 'running', startedAt: 5, progress: { stage: 'sft', step: 1, totalSteps: 10, loss: 2.5 } });
      expect(running).toMatchObject({ status: 'running', startedAt: 5, progress: { stage: 'sft', step: 1, totalSteps: 10, loss: 2.5 } });
      const done = await store.updateJob(j2.id, { status: 'succeeded', finishedAt: 9, result: { modelVersion: 'v2', metrics: { a: 1 } }, error: 'none' });
      expect(done).toMatchObject({ status: 'succeeded', finishedAt: 9, result: { modelVersion: 'v2', metrics: { a: 1 } }, error: 'none' });
      expect((await store.listJobs(10)).map((j) => j.id)).toEqual([j2.id, j1.id]);
      expect(await store.listJobs(1)).toHaveLength(1);
      expect(await store.getJob(9999)).toBeUndefined();
      await expect(store.updateJob(9999, { status: 'failed' })).rejects.toThrow(/no job/);
      expect(await store.interruptRunningJobs()).toBe(1);
      expect((await store.getJob(j1.id))?.status).toBe('interrupted');
      expect(await store.interruptRunningJobs()).toBe(0);
    });

    it('limits requests per key with a token bucket shared by every connection of the store', async () => {
      let now = 1_000_000;
      const [a, b] = await twoProcesses();
      const limitA = kind.rateLimiter(a, 6, 2, () => now);
      const limitB = kind.name === 'sqlite' ? limitA : kind.rateLimiter(b, 6, 2, () => now);
      expect(await limitA.take('slack:U1')).toBe(0);
      expect(await limitB.take('slack:U1')).toBe(0);
      expect(await limitA.take('slack:U1')).toBe(10); // 6 a minute: one token every 10 s
      expect(await limitB.take('slack:U2')).toBe(0);
      now += 10_000;
      expect(await limitB.take('slack:U1')).toBe(0);
      expect(await limitA.take('slack:U1')).toBeGreaterThan(0);
    });
  });
}

describe.skipIf(unavailable !== undefined)('PostgreSQL store: several processes on one database', () => {
  it('migrates once when several processes start together, and says how far the schema has come', async () => {
    const url = await cluster!.createDatabase();
    const stores = await Promise.all(Array.from({ length: 6 }, () => PgStore.open(url, { poolSize: 2 })));
    opened.push(...stores);
    for (const s of stores) expect(await s.schemaVersion()).toBe(s.schemaVersionTarget);
    const { rows } = await stores[0]!.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM teamllm_migrations');
    expect(rows[0]!.n).toBe(stores[0]!.schemaVersionTarget);
  });

  it('gives each queued job to exactly one process, renews its lease, and lets another take over after the lease runs out', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const url = await cluster!.createDatabase();
    const [a, b] = [await PgStore.open(url), await PgStore.open(url)];
    opened.push(a, b);
    const jobs = await Promise.all([1, 2, 3].map((i) => a.createJob({ kind: 'sft', params: { i: String(i) }, requestedBy: 'cli' })));
    await a.createJob({ kind: 'other', params: {}, requestedBy: 'cli' });
    const claims = await Promise.all([a.claimNextJob('A', 1000, ['sft']), b.claimNextJob('B', 1000, ['sft']), a.claimNextJob('A', 1000, ['sft']), b.claimNextJob('B', 1000, ['sft'])]);
    const taken = claims.filter((j) => j !== undefined).map((j) => j!.id).sort();
    expect(taken).toEqual(jobs.map((j) => j.id).sort());
    const ownerOf = new Map<number, string>();
    claims.forEach((j, i) => j && ownerOf.set(j.id, i % 2 === 0 ? 'A' : 'B'));
    const [j1, j2, j3] = jobs.map((j) => j.id) as [number, number, number];
    const other = (owner: string) => (owner === 'A' ? 'B' : 'A');
    expect(await a.renewJobLease(j1, other(ownerOf.get(j1)!), 1000)).toBe(false);
    expect(await a.renewJobLease(j1, ownerOf.get(j1)!, 1000)).toBe(true);
    // A restart of any process must not interrupt jobs other live processes hold.
    expect(await b.interruptRunningJobs()).toBe(0);
    expect(await b.takeOverExpiredJobs()).toEqual([]);
    vi.setSystemTime(Date.now() + 800);
    expect(await b.renewJobLease(j2, ownerOf.get(j2)!, 5000)).toBe(true);
    vi.setSystemTime(Date.now() + 700);
    const [x, y] = await Promise.all([a.takeOverExpiredJobs(), b.takeOverExpiredJobs()]);
    const takeovers = [...x, ...y];
    expect(takeovers.map((t) => t.interrupted.id).sort()).toEqual([j1, j3].sort());
    for (const t of takeovers) {
      expect(t.interrupted.status).toBe('interrupted');
      expect(t.resumed).toMatchObject({ status: 'queued', resumes: t.interrupted.id, kind: 'sft', params: t.interrupted.params, requestedBy: 'cli' });
    }
    // A job that finished gives its lease up.
    const finished = await a.updateJob(j2, { status: 'succeeded', finishedAt: Date.now() });
    expect(finished.status).toBe('succeeded');
    expect(await a.renewJobLease(j2, ownerOf.get(j2)!, 1000)).toBe(false);
  });

  it('serialises promotions through the database', async () => {
    const url = await cluster!.createDatabase();
    const [a, b] = [await PgStore.open(url), await PgStore.open(url)];
    opened.push(a, b);
    const order: string[] = [];
    const slow = (name: string) => async () => {
      order.push(`${name}:start`);
      await new Promise((r) => setTimeout(r, 100));
      order.push(`${name}:end`);
    };
    await Promise.all([a.withPromotionLock(slow('a')), b.withPromotionLock(slow('b'))]);
    // One promotion ends before the other starts.
    const [x, y] = order[0] === 'a:start' ? ['a', 'b'] : ['b', 'a'];
    expect(order).toEqual([`${x}:start`, `${x}:end`, `${y}:start`, `${y}:end`]);
  });

  it('never shows a connection string with its password', async () => {
    expect(redactDatabaseUrl('postgres://bot:s3cret@db.internal:5432/teamllm?sslmode=require')).toBe('postgres://bot:***@db.internal:5432/teamllm?sslmode=require');
    expect(redactDatabaseUrl('postgres://db/teamllm?password=s3cret')).not.toContain('s3cret');
    await expect(PgStore.open(`postgres://teamllm:s3cret@127.0.0.1:${cluster!.port}/no_such_db`)).rejects.toThrow(/^(?!.*s3cret).*no_such_db/s);
  });
});
