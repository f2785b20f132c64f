/**
 * `npm run bench -- feedback-loop --home <quickstarted home> --questions <file.jsonl>
 *   [--ask train] [--held-out test] [--repeat 4] [--commands "/train reward;/train rlhf algo=kto"]
 *   [--timeout-min 60] [--keep] [--retrieval-only]`
 *
 * The feedback loop as a company runs it, black-box, on a real `teamllm serve` process:
 *
 * 1. the home (a finished quickstart: its serving model, knowledge base and encoder) is copied to
 *    a temporary folder, so the loop never changes the one given;
 * 2. the held-out questions are asked once through `POST /api/chat`: the share of answers that
 *    contain the gold fact (every `must_contain` string, else `answer`) is "before";
 * 3. simulated employees ask the `--ask` questions `--repeat` times each, one user per ask, and
 *    vote 👍 when the answer holds the gold fact, 👎 otherwise (a service token names the users,
 *    as a company's single sign-on would); after a 👎 they click "Another answer" once and vote
 *    on that one too (`--no-regenerate`: not), which makes preference pairs; when neither was
 *    right and one of the sections the bot named (its sources, or after a "don't know" the
 *    closest ones) holds the fact, they point at it ("Is the answer in one of these?") and vote on
 *    that answer (`--no-point`: not) — what /train embeddings learns the askers' words from;
 * 4. an admin types each of `--commands` into the web chat (the admin token) and the bench waits
 *    for its job through `/admin/api/summary`, printing its outcome (metrics, the gate's decision);
 * 5. the held-out questions are asked again: "after", beside the model version that answered; and
 *    the `--ask` questions once more, by new users: what the loop did for the questions people
 *    asked and voted on (their first round is their "before").
 *
 * `--retrieval-only`: the home need not serve a trained model (a `kb add` + `train embeddings`
 * home): for the loops that do not train one (`/train embeddings`).
 *
 * The last stdout line is key=value.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readQaQuestions, containsGold, type QaQuestion } from '../src/training/eval/qa-eval.ts';
import { goldStrings, UNANSWERABLE } from '../src/training/eval/answer-eval.ts';

const ADMIN = 'feedback-loop-admin-token-0123456789';
const SERVICE = 'feedback-loop-service-token-0123456789';

interface Section {
  source: string;
  title: string;
  text: string;
}

interface Chat {
  answerId: string;
  answer: string;
  modelVersion: string | null;
  sources?: Section[];
  near?: Section[];
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      home: { type: 'string' },
      questions: { type: 'string' },
      ask: { type: 'string', default: 'train' },
      'held-out': { type: 'string', default: 'test' },
      repeat: { type: 'string', default: '4' },
      commands: { type: 'string', default: '/train reward;/train rlhf algo=kto' },
      'timeout-min': { type: 'string', default: '60' },
      keep: { type: 'boolean', default: false },
      // After a 👎 the employee clicks "Another answer" once and votes on it too: the pairs.
      regenerate: { type: 'boolean', default: true },
      'retrieval-only': { type: 'boolean', default: false },
      point: { type: 'boolean', default: true },
    },
  });
  if (!values.home || !values.questions) throw new Error('--home <a quickstarted TEAMLLM_HOME> and --questions <file.jsonl> are required');
  if (!existsSync(join(values.home, 'teamllm.db'))) throw new Error(`${values.home} holds no teamllm.db: run the quickstart there first`);
  const all = await readQaQuestions(resolve(values.questions));
  const answerable = all.filter((q) => q.answer !== UNANSWERABLE);
  const askSplits = new Set(values.ask.split(','));
  const asked = answerable.filter((q) => askSplits.has(q.split ?? ''));
  const heldOut = answerable.filter((q) => q.split === values['held-out']);
  if (asked.length === 0 || heldOut.length === 0) throw new Error(`no answerable questions in split(s) ${values.ask} or ${values['held-out']}`);

  const home = mkdtempSync(join(tmpdir(), 'teamllm-loop-'));
  cpSync(values.home, home, { recursive: true });
  const port = 3800 + Math.floor(Math.random() * 90);
  const base = `http://127.0.0.1:${port}`;
  const server: ChildProcess = spawn(process.execPath, ['bin/teamllm.js', 'serve'], {
    env: {
      ...process.env,
      TEAMLLM_HOME: home,
      TEAMLLM_PORT: String(port),
      TEAMLLM_ADMIN_TOKEN: ADMIN,
      TEAMLLM_SERVICE_TOKENS: `employees=${SERVICE}`,
      // Many employees, one process: the per-user limit is not what this measures.
      TEAMLLM_RATE_PER_MINUTE: '10000',
      TEAMLLM_RATE_BURST: '10000',
      TEAMLLM_LOG_LEVEL: 'warn',
      // The model measured is the one the home serves: a quickstart re-run would swap it mid-loop.
      TEAMLLM_QUICKSTART: 'off',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  // Ctrl+C or a kill of the bench must not leave a server running on the copied home.
  const stop = () => {
    server.kill('SIGTERM');
    process.exit(130);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  server.on('exit', (code) => (exited = `serve exited with code ${code}`));
  const t0 = performance.now();
  try {
    await until(async () => (await fetch(`${base}/healthz`)).ok, 120_000, 'serve did not answer /healthz in 120 s');
    if (!values['retrieval-only']) await until(async () => (await chat(base, 'ping', 'warmup')).modelVersion?.startsWith('v'), 120_000, `${values.home} serves no trained model: finish its quickstart first`);

    const before = await measure(base, heldOut, 'before');
    console.log(`before: ${before.right}/${heldOut.length} held-out answers hold the gold fact (model ${before.version})`);

    let up = 0;
    let down = 0;
    let regeneratedRight = 0;
    let pointedRight = 0;
    let askedFirst = 0;
    for (let round = 0; round < Number(values.repeat); round++) {
      for (const [i, q] of asked.entries()) {
        const user = `employee${round}-${i}`;
        const conversation = `loop-${round}-${i}`;
        const answer = await chat(base, q.question, user, SERVICE, conversation);
        const right = holdsGold(answer.answer, q);
        right ? up++ : down++;
        if (round === 0 && right) askedFirst++;
        await post(base, '/api/feedback', { answerId: answer.answerId, value: right ? 1 : -1, user }, SERVICE);
        if (right) continue;
        let better = false;
        if (values.regenerate) {
          const another = (await post(base, '/api/chat', { regenerate: answer.answerId, user, conversation }, SERVICE)) as Chat;
          if (another.answerId) {
            better = holdsGold(another.answer, q);
            better ? up++ : down++;
            if (better) regeneratedRight++;
            await post(base, '/api/feedback', { answerId: another.answerId, value: better ? 1 : -1, user }, SERVICE);
          }
        }
        if (better || !values.point) continue;
        // The employee reads the sections the bot named and points at the one that holds the answer.
        const section = [...(answer.sources ?? []), ...(answer.near ?? [])].find((s) => holdsGold(s.text, q));
        if (!section) continue;
        const pointed = (await post(base, '/api/chat', { fromSection: { answer: answer.answerId, source: section.source, title: section.title }, user, conversation }, SERVICE)) as Chat;
        if (!pointed.answerId) continue;
        const found = holdsGold(pointed.answer, q);
        found ? up++ : down++;
        if (found) pointedRight++;
        await post(base, '/api/feedback', { answerId: pointed.answerId, value: found ? 1 : -1, user }, SERVICE);
      }
    }
    console.log(
      `votes: ${up} up, ${down} down on ${asked.length} questions asked ${values.repeat} times${values.regenerate ? ` (another answer after each 👎: right ${regeneratedRight} times)` : ''}${values.point ? `; pointed at the section that holds it: right ${pointedRight} times` : ''}`,
    );

    const outcomes: string[] = [];
    for (const command of values.commands.split(';').map((c) => c.trim()).filter(Boolean)) {
      const known = new Set((await summary(base)).jobs.map((j) => j.id));
      const reply = await chat(base, command, undefined, ADMIN);
      console.log(`admin: ${command}\n  bot: ${reply.answer.split('\n')[0]}`);
      const job = await until(
        async () => (await summary(base)).jobs.find((j) => !known.has(j.id) && ['succeeded', 'failed', 'stopped', 'interrupted'].includes(j.status)),
        Number(values['timeout-min']) * 60_000,
        `${command}: no job finished within ${values['timeout-min']} minutes`,
      );
      const result = JSON.stringify(job.result ?? {});
      console.log(`  job ${job.id} ${job.kind}: ${job.status}${job.error ? ` — ${job.error}` : ''}\n  result: ${result.slice(0, 600)}`);
      outcomes.push(`${job.kind}:${job.status}`);
    }

    const after = await measure(base, heldOut, 'after');
    console.log(`after: ${after.right}/${heldOut.length} held-out answers hold the gold fact (model ${after.version})`);
    const again = await measure(base, asked, 'again');
    console.log(`asked again by new users: ${askedFirst} → ${again.right}/${asked.length} of the questions people voted on hold the gold fact`);
    const pct = (n: number) => ((100 * n) / heldOut.length).toFixed(1);
    console.log(
      `held_out=${heldOut.length} before_pct=${pct(before.right)} after_pct=${pct(after.right)} delta_points=${(Number(pct(after.right)) - Number(pct(before.right))).toFixed(1)} ` +
        `asked=${asked.length} asked_before=${askedFirst} asked_after=${again.right} votes_up=${up} votes_down=${down} regenerated_right=${regeneratedRight} pointed_right=${pointedRight} jobs=${outcomes.join(',')} model_before=${before.version} model_after=${after.version} minutes=${((performance.now() - t0) / 60_000).toFixed(1)}`,
    );
  } finally {
    server.kill('SIGTERM');
    if (!values.keep) rmSync(home, { recursive: true, force: true });
    else console.log(`home kept at ${home}`);
  }
}

function holdsGold(answer: string, q: QaQuestion): boolean {
  return goldStrings(q).every((g) => containsGold(answer, g) === 1);
}

async function measure(base: string, questions: QaQuestion[], tag: string): Promise<{ right: number; version: string }> {
  let right = 0;
  let version = '?';
  for (const [i, q] of questions.entries()) {
    const a = await chat(base, q.question, `${tag}-${i}`);
    version = a.modelVersion ?? version;
    if (holdsGold(a.answer, q)) right++;
  }
  return { right, version };
}

async function post(base: string, path: string, body: unknown, token: string): Promise<unknown> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as unknown;
  if (!res.ok) throw new Error(`${path} ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

async function chat(base: string, text: string, user: string | undefined, token = SERVICE, conversation?: string): Promise<Chat> {
  return (await post(base, '/api/chat', { text, ...(user ? { user } : {}), ...(conversation ? { conversation } : {}) }, token)) as Chat;
}

async function summary(base: string): Promise<{ jobs: { id: number; kind: string; status: string; error?: string; result?: unknown }[] }> {
  const res = await fetch(`${base}/admin/api/summary`, { headers: { authorization: `Bearer ${ADMIN}` } });
  if (!res.ok) throw new Error(`/admin/api/summary ${res.status}`);
  return (await res.json()) as { jobs: { id: number; kind: string; status: string; error?: string; result?: unknown }[] };
}

let exited: string | undefined;

async function until<T>(probe: () => Promise<T | undefined | false>, ms: number, failure: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    if (exited) throw new Error(exited);
    try {
      const value = await probe();
      if (value) return value;
    } catch {
      /* not ready yet */
    }
    if (Date.now() > end) throw new Error(failure);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
