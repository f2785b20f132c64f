/**
 * Issue 22: `kill -9` of one of two bot processes on one PostgreSQL while votes pour in through
 * both: every vote a process acknowledged (HTTP 200) is in the database afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnswerRecord } from '../../src/core/index.ts';
import { PgStore } from '../../src/core/pg-store.ts';
import { pgUnavailable, startPgCluster, type PgCluster } from '../pg-cluster.ts';

const PROCESS = join(import.meta.dirname, '../../bench/_serve-process.ts');
const TOKEN = 'votes-under-kill-token-0123456789';
const unavailable = pgUnavailable();
let cluster: PgCluster | undefined;
const children: ChildProcess[] = [];

beforeAll(async () => {
  if (!unavailable) cluster = await startPgCluster();
}, 120_000);
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await cluster?.stop();
});

async function botProcess(url: string): Promise<{ child: ChildProcess; url: string }> {
  const home = mkdtempSync(join(tmpdir(), 'teamllm-votes-kill-'));
  const child = spawn(process.execPath, ['--import', 'tsx', PROCESS], {
    env: { ...process.env, TEAMLLM_HOME: home, TEAMLLM_DATABASE_URL: url, TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_QUICKSTART: 'off', TEAMLLM_SERVICE_TOKENS: `votes=${TOKEN}` },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  children.push(child);
  const served = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /READY (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`bot process exited ${code}`)));
  });
  return { child, url: served };
}

describe.skipIf(unavailable !== undefined)('kill -9 under load (PostgreSQL)', () => {
  it('loses no acknowledged vote', async () => {
    const url = await cluster!.createDatabase();
    const store = await PgStore.open(url);
    try {
      const answers: AnswerRecord[] = [];
      for (let i = 0; i < 20; i++) {
        answers.push(
          await store.saveAnswer({
            platform: 'web', workspace: 'w', channel: 'c', messageId: `m${i}`, userId: 'asker', question: `q${i}`, passages: [],
            prompt: 'p', output: 'o', modelName: 'stub', modelVersion: '0', latencyMs: 1,
          }),
        );
      }
      const [a, b] = await Promise.all([botProcess(url), botProcess(url)]);
      const acknowledged: { answerId: string; user: string; value: 1 | -1 }[] = [];
      let refused = 0;
      let n = 0;
      const vote = async (server: { url: string }) => {
        const i = n++;
        const v = { answerId: answers[i % answers.length]!.id, user: `voter${i}`, value: (i % 3 === 0 ? -1 : 1) as 1 | -1 };
        try {
          const res = await fetch(`${server.url}/api/feedback`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
            body: JSON.stringify(v),
          });
          if (res.status === 200) acknowledged.push(v);
          else refused++;
        } catch {
          refused++; // the connection died with the process: not acknowledged
        }
      };
      const until = Date.now() + 3000;
      const clients = Array.from({ length: 16 }, async (_, c) => {
        while (Date.now() < until) await vote(c % 2 === 0 || a.child.signalCode ? b : a);
      });
      await new Promise((r) => setTimeout(r, 1000));
      a.child.kill('SIGKILL');
      await Promise.all(clients);
      expect(a.child.signalCode).toBe('SIGKILL');
      expect(acknowledged.length).toBeGreaterThan(100);
      const { rows } = await store.pool.query<{ answer_id: string; user_id: string; value: number }>('SELECT answer_id, user_id, value FROM feedback');
      // A user a service names is recorded as `guest:<name>` (web identity).
      const stored = new Map(rows.map((r) => [`${r.answer_id}/${r.user_id.replace(/^guest:/, '')}`, r.value]));
      const lost = acknowledged.filter((v) => stored.get(`${v.answerId}/${v.user}`) !== v.value);
      expect(lost).toEqual([]);
      process.stderr.write(`votes: ${acknowledged.length} acknowledged, ${refused} refused or cut off by the kill, ${rows.length} in the database, 0 lost\n`);
    } finally {
      await store.close();
    }
  }, 120_000);
});
