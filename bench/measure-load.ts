/**
 * Load and crash figures for the web API, on a real `teamllm serve` process (not a benchmark
 * with a key=value contract: a measurement script, run by hand):
 *
 *   node --import tsx bench/measure-load.ts [--chats 2000] [--concurrency 32] [--kill-after-ms 4000]
 *
 * 1. `chats` questions and as many votes over `concurrency` clients, asked as a service token with
 *    one user per client (web identity: only a service may name the user): every answer and vote
 *    must be stored exactly once; p50/p99 of the chats at the client.
 * 2. 16 clients chat and vote until `kill -9` of the server; after a restart, every vote the
 *    server acknowledged (HTTP 200) must be in the database, and the database must pass
 *    `PRAGMA integrity_check`.
 *
 * The sample knowledge base, no model (TEAMLLM_QUICKSTART=off): answers are the rules' choice among
 * the passages' spans, as the bot gives them before its model is trained.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const CHATS = opt('chats', 2000);
const CONCURRENCY = opt('concurrency', 32);
const KILL_AFTER_MS = opt('kill-after-ms', 4000);
const TOKEN = 'measure-load-token-0123456789';
const QUESTIONS = ['How many days of annual leave do I get?', 'Who approves my expense claims?', 'How do I report a security incident?', '年假有多少天？', 'What is the notice period when I resign?'];

const home = mkdtempSync(join(tmpdir(), 'teamllm-load-'));
const port = 3900 + Math.floor(Math.random() * 90);
const base = `http://127.0.0.1:${port}`;

function start(): ChildProcess {
  return spawn(process.execPath, ['bin/teamllm.js', 'serve'], {
    env: {
      ...process.env,
      TEAMLLM_HOME: home,
      TEAMLLM_PORT: String(port),
      TEAMLLM_QUICKSTART: 'off',
      TEAMLLM_RATE_PER_MINUTE: '10000',
      TEAMLLM_RATE_BURST: '10000',
      TEAMLLM_SERVICE_TOKENS: `load=${TOKEN}`,
      TEAMLLM_LOG_LEVEL: 'warn',
    },
    stdio: 'ignore',
  });
}

async function ready(): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('serve did not come up in 60 s');
}

const headers = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` };
async function chat(text: string, user: string): Promise<{ answerId: string; ms: number }> {
  const t = performance.now();
  const res = await fetch(`${base}/api/chat`, { method: 'POST', headers, body: JSON.stringify({ text, user }) });
  const body = (await res.json()) as { answerId?: string };
  if (!res.ok || !body.answerId) throw new Error(`chat ${res.status}`);
  return { answerId: body.answerId, ms: performance.now() - t };
}
async function vote(answerId: string, user: string, value: 1 | -1): Promise<boolean> {
  const res = await fetch(`${base}/api/feedback`, { method: 'POST', headers, body: JSON.stringify({ answerId, user, value }) });
  await res.arrayBuffer();
  return res.ok;
}
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

let server = start();
try {
  await ready();
  // 1. Load: every chat and vote stored exactly once.
  const latencies: number[] = [];
  let next = 0;
  let failures = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, client) => {
      while (next < CHATS) {
        const i = next++;
        try {
          const { answerId, ms } = await chat(QUESTIONS[i % QUESTIONS.length]!, `user${client}`);
          latencies.push(ms);
          if (!(await vote(answerId, `voter${i}`, i % 3 === 0 ? -1 : 1))) failures++;
        } catch {
          failures++;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const db = new Database(join(home, 'teamllm.db'), { readonly: true });
  const answers = (db.prepare('SELECT COUNT(*) AS n FROM answers').get() as { n: number }).n;
  const votes = (db.prepare('SELECT COUNT(*) AS n FROM feedback').get() as { n: number }).n;
  db.close();
  console.log(`load: ${CHATS} chats + ${CHATS} votes at ${CONCURRENCY} clients in ${seconds.toFixed(1)} s: failures=${failures} answers_stored=${answers} votes_stored=${votes} chat_p50_ms=${pct(latencies, 50).toFixed(0)} chat_p99_ms=${pct(latencies, 99).toFixed(0)}`);

  // 2. kill -9 under 16 clients: no acknowledged vote lost.
  const acknowledged = new Set<string>();
  let stop = false;
  const clients = Array.from({ length: 16 }, async (_, client) => {
    for (let i = 0; !stop; i++) {
      try {
        const { answerId } = await chat(QUESTIONS[i % QUESTIONS.length]!, `crash${client}`);
        if (await vote(answerId, `crashvoter${client}-${i}`, 1)) acknowledged.add(answerId);
      } catch {
        /* the server is gone */
      }
    }
  });
  await new Promise((r) => setTimeout(r, KILL_AFTER_MS));
  server.kill('SIGKILL');
  stop = true;
  await Promise.all(clients);
  server = start();
  await ready();
  const after = new Database(join(home, 'teamllm.db'), { readonly: true });
  const stored = new Set((after.prepare("SELECT answer_id AS id FROM feedback WHERE user_id LIKE '%crashvoter%'").all() as { id: string }[]).map((r) => r.id));
  const integrity = (after.pragma('integrity_check', { simple: true }) as string) ?? '?';
  after.close();
  const lost = [...acknowledged].filter((id) => !stored.has(id)).length;
  console.log(`kill -9 after ${KILL_AFTER_MS} ms under 16 clients: acknowledged_votes=${acknowledged.size} lost=${lost} integrity_check=${integrity}`);
} finally {
  server.kill('SIGKILL');
  rmSync(home, { recursive: true, force: true });
}
