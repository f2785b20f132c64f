/**
 * The README's quickstart, end to end, on the tiny recipe: a fresh clone layout (no data folder,
 * no environment), `npm start` (the web chat serves at once, retrieval-only, while the quickstart
 * trains tokenizer -> pretraining -> LoRA SFT -> encoder in a worker thread; then the trained
 * model takes over without a restart), a question answered by the trained model with sources, a
 * vote, the vote in `teamllm data export`, and a second start that trains nothing and serves the
 * model at once.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '../..');
const run = promisify(execFile);

/** The environment without anything teamllm reads: a new user's shell. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(TEAMLLM_|CHROMA_|SLACK_|FEISHU_|WECOM_)/.test(k)) env[k] = v;
  return env;
}

/** A clone's layout: the repository's files (sources linked, not copied), no .teamllm, no node_modules of its own to install. */
function cloneLayout(): string {
  const dir = mkdtempSync(join(tmpdir(), 'teamllm-clone-'));
  for (const name of ['bin', 'src', 'native', 'node_modules', 'examples']) symlinkSync(join(REPO, name), join(dir, name));
  cpSync(join(REPO, 'package.json'), join(dir, 'package.json'));
  // The one thing this test changes: the tiny recipe (seconds instead of minutes), through the config file.
  writeFileSync(join(dir, 'teamllm.config.yaml'), 'TEAMLLM_QUICKSTART_RECIPE: tiny\nTEAMLLM_PORT: 0\nTEAMLLM_LOG_LEVEL: warn\n');
  return dir;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) signalGroup(c, 'SIGKILL');
});

/**
 * npm does not pass signals on to the `node … serve` it starts: the server runs in its own process
 * group (detached) and the whole group is signalled, so no server outlives the test.
 */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-child.pid!, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is gone
  }
}

/** `npm start` in `dir`; resolves with the web chat's URL once the server says it is ready. */
function npmStart(dir: string): Promise<{ url: string; stderr: () => string; child: ChildProcess; seconds: number; output: (pattern: RegExp) => Promise<void> }> {
  const t0 = performance.now();
  const child = spawn('npm', ['start', '--silent'], { cwd: dir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.push(child);
  let err = '';
  const waiting: { pattern: RegExp; resolve: () => void }[] = [];
  const check = () => {
    for (const w of waiting.splice(0)) if (w.pattern.test(err)) w.resolve();
    else waiting.push(w);
  };
  /** Resolves once the output so far matches `pattern` (the test's timeout bounds the wait). */
  const output = (pattern: RegExp) =>
    new Promise<void>((resolve) => {
      waiting.push({ pattern, resolve });
      check();
    });
  child.stdout!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      check();
      const m = /teamllm is ready: web chat at (http:\/\/\S+)/.exec(err);
      if (m) resolve({ url: m[1]!, stderr: () => err, child, seconds: (performance.now() - t0) / 1000, output });
    });
    child.on('exit', (code) => reject(new Error(`npm start exited with ${code} before serving:\n${err}`)));
  });
}

/** The newcomer's web session: the cookie the first answer sets (as a browser keeps it); its votes count on its own answers. */
let session: string | undefined;
const chat = async (url: string, text: string) => {
  const res = await fetch(`${url}/api/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(session ? { cookie: session } : {}) },
    body: JSON.stringify({ text }),
  });
  expect(res.status).toBe(200);
  session ??= res.headers.get('set-cookie')?.split(';')[0];
  return (await res.json()) as { answerId: string; answer: string; sources: { source: string; title: string; text: string }[]; model: string; modelVersion: string };
};

/** Ctrl+C as a terminal sends it (to the whole group); resolves once npm and the server are both gone. */
async function stop(child: ChildProcess): Promise<void> {
  const exited = child.exitCode === null ? new Promise((r) => child.once('exit', r)) : Promise.resolve();
  signalGroup(child, 'SIGINT');
  await exited;
  const deadline = Date.now() + 10_000;
  while (signalGroup(child, 0)) {
    if (Date.now() > deadline) throw new Error('the server outlived npm start: still running 10 s after Ctrl+C');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('quickstart from a fresh clone (README)', () => {
  it('serves at once on the first start while it trains, hands over to its own model, takes a vote, exports it, and starts again from cache', async () => {
    const dir = cloneLayout();
    const first = await npmStart(dir);
    // Up before anything is trained: /healthz says the model is training.
    const health = await fetch(`${first.url}/healthz`);
    expect(health.status).toBe(200);
    const during = (await health.json()) as { quickstart?: { state: string; recipe: string } };
    expect(during.quickstart).toMatchObject({ recipe: 'tiny' });
    expect(['training', 'done']).toContain(during.quickstart!.state);
    // A question right away: retrieval-only with the training line, unless the (seconds-long) tiny recipe already finished.
    const early = await chat(first.url, 'How many days of annual leave do I get?');
    if (early.modelVersion === 'none') expect(early.answer).toContain("This bot's own model is being trained");
    else expect(early.modelVersion).toBe('v2');

    await first.output(/Quickstart done in/);
    const log = first.stderr();
    // The server first, then every stage, in order, then the hand-over.
    const order = ['teamllm is ready', 'First start', '1/4 tokenizer', '2/4 pretraining', '3/4 LoRA fine-tuning on the handbook', '4/4 knowledge base into Chroma', 'Quickstart done'].map((s) => log.indexOf(s));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(log).toContain('model v2 (LoRA on v1) is serving. It answers from now on (no restart needed).');
    const state = JSON.parse(readFileSync(join(dir, '.teamllm', 'quickstart', 'state.json'), 'utf8')) as { modelVersion: string; recipe: string };
    expect(state).toMatchObject({ modelVersion: 'v2', recipe: 'tiny' });
    const after = (await (await fetch(`${first.url}/healthz`)).json()) as { model: { version: string }; quickstart: { state: string } };
    expect(after).toMatchObject({ model: { version: 'v2' }, quickstart: { state: 'done' } });

    // A question: the trained model answers, citing the handbook — same process, no restart.
    const answer = await chat(first.url, 'How many days of annual leave do I get?');
    expect(answer).toMatchObject({ model: 'teamllm', modelVersion: 'v2' });
    expect(answer.answer).not.toContain('being trained');
    expect(answer.sources.length).toBeGreaterThan(0);
    expect(answer.sources.every((s) => /^(en|zh)\/[\w-]+\.md$/.test(s.source) && s.text.length > 0)).toBe(true);
    expect(answer.sources.some((s) => s.source === 'en/leave-and-holidays.md')).toBe(true);

    // A vote on it.
    const vote = await fetch(`${first.url}/api/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: session! },
      body: JSON.stringify({ answerId: answer.answerId, value: 1 }),
    });
    expect(vote.status).toBe(200);
    await stop(first.child);

    // The vote is in the training data export.
    const exported = await run(process.execPath, [join(dir, 'bin/teamllm.js'), 'data', 'export', '--kind', 'kto'], { cwd: dir, env: cleanEnv() });
    const rows = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toEqual([expect.objectContaining({ prompt: 'How many days of annual leave do I get?', label: true, answerId: answer.answerId })]);

    // Second start: nothing is trained again, and the model serves from the start.
    const second = await npmStart(dir);
    expect((await (await fetch(`${second.url}/healthz`)).json()) as object).toMatchObject({ model: { version: 'v2' } });
    expect(second.stderr()).not.toContain('1/4 tokenizer');
    expect(second.stderr()).not.toContain('First start');
    const again = await chat(second.url, 'Where is the head office?');
    expect(again.modelVersion).toBe('v2');
    expect(again.answer).not.toContain('being trained');
    await stop(second.child);
  }, 120_000);
});
