import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createRuntime, startServer, type RunningServer, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';
import { ScriptedAnswerer } from '../helpers.ts';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
/** A service that may name the user it asks for (TEAMLLM_SERVICE_TOKENS): only such callers' `user` is believed. */
const SERVICE_TOKEN = 'test-service-token-0123456789';
const asService = { authorization: `Bearer ${SERVICE_TOKEN}` };
let runtime: Runtime;
let server: RunningServer;

beforeAll(async () => {
  const home = mkdtempSync(join(tmpdir(), 'teamllm-http-'));
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_ADMIN_TOKEN: ADMIN_TOKEN, TEAMLLM_SERVICE_TOKENS: `portal=${SERVICE_TOKEN}`, TEAMLLM_RATE_BURST: '3', TEAMLLM_RATE_PER_MINUTE: '1' }, cwd: home });
  const answerer = new ScriptedAnswerer(['Hello ', 'there.']);
  answerer.direct = 'Hello';
  runtime = await createRuntime(config, { logger: silentLogger, answerer, defaultMetrics: false });
  server = await startServer(runtime, 0, '127.0.0.1');
});

afterAll(async () => {
  await server.close();
  await runtime.close();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

describe('HTTP server', () => {
  it('answers POST /api/chat with the contract shape and accepts a vote on it', async () => {
    const res = await post('/api/chat', { text: 'Hi?', user: 'ann', conversation: 'conv-1' }, asService);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ answer: 'Hello there.', direct: 'Hello', model: 'scripted', outcome: 'answered' });
    expect(body.sources).toEqual([{ source: 'en/leave.md', title: 'Leave', text: 'Everyone gets 25 days of leave.', score: 3.2 }]);
    expect(typeof body.answerId).toBe('string');

    const vote = await post('/api/feedback', { answerId: body.answerId, value: -1, comment: 'too short', user: 'ann' }, asService);
    expect(vote.status).toBe(200);
    expect(await vote.json()).toEqual({ ok: true, up: 0, down: 1 });
    const record = await runtime.store.feedbackFor(body.answerId as string);
    expect(record[0]).toMatchObject({ platform: 'web', userId: 'guest:ann', value: -1, comment: 'too short' });
  });

  it('refuses malformed bodies with a reason and unknown answers with 404', async () => {
    const notJson = await post('/api/chat', '{"text": ');
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: string }).error).toMatch(/JSON/);
    const empty = await post('/api/chat', { text: '   ' });
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { error: string }).error).toMatch(/text: must not be empty/);
    const wrongType = await post('/api/chat', { text: 42 });
    expect(wrongType.status).toBe(400);
    expect((await post('/api/chat', { text: 'x'.repeat(5000) })).status).toBe(400);
    expect((await post('/api/chat', { text: 'hi', user: 'bad user!' })).status).toBe(400);
    expect((await post('/api/feedback', { answerId: 'nope', value: 1 })).status).toBe(404);
    expect((await post('/api/feedback', { answerId: 'nope', value: 5 })).status).toBe(400);
    expect((await post('/api/chat', 'x'.repeat(70 * 1024))).status).toBe(413);
    expect((await fetch(`${server.url}/nowhere`)).status).toBe(404);
    // Still serving after all that.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('does not answer a retried messageId twice', async () => {
    const first = await post('/api/chat', { text: 'Once?', user: 'retry', messageId: 'client-msg-1' }, asService);
    expect(first.status).toBe(200);
    const again = await post('/api/chat', { text: 'Once?', user: 'retry', messageId: 'client-msg-1' }, asService);
    expect(again.status).toBe(409);
  });

  it('streams updates then a done event over SSE', async () => {
    const res = await post('/api/chat/stream', { text: 'Stream?', user: 'sse' }, asService);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const raw = await res.text();
    const events = raw.split('\n\n').filter(Boolean).map((frame) => ({
      event: /^event: (.*)$/m.exec(frame)?.[1],
      data: JSON.parse(/^data: (.*)$/m.exec(frame)![1]!) as Record<string, unknown>,
    }));
    expect(events[0]).toMatchObject({ event: 'update', data: { phase: 'thinking' } });
    const final = events.find((e) => e.data.phase === 'final')!;
    expect(final.data).toMatchObject({ text: 'Hello there.', direct: 'Hello', model: 'scripted' });
    expect(events.at(-1)).toMatchObject({ event: 'done', data: { answer: 'Hello there.', direct: 'Hello', answerId: final.data.answerId } });
  });

  it('rate-limits with 429 and a polite message', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await post('/api/chat', { text: `q${i}`, user: 'eager' }, asService)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });

  it('grants admin rights only to the admin token, never to a claimed name', async () => {
    const claimed = await post('/api/chat', { text: '/train sft', user: 'admin' });
    expect(((await claimed.json()) as { answer: string }).answer).toMatch(/only admins/);
    const wrong = await post('/api/chat', { text: '/train sft' }, { authorization: 'Bearer wrong-token-wrong-token' });
    expect(((await wrong.json()) as { answer: string }).answer).toMatch(/only admins/);
    const admin = await post('/api/chat', { text: '/train status' }, { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(((await admin.json()) as { answer: string }).answer).toMatch(/No training jobs yet/);
  });

  it('serves the chat page, /healthz and Prometheus /metrics', async () => {
    const page = await fetch(`${server.url}/`);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('/api/chat/stream');
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', model: { name: 'scripted' } });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/teamllm_answers_total\{platform="web",outcome="answered"\} \d+/);
    expect(metrics).toMatch(/teamllm_answer_latency_seconds_bucket\{le="0.05",platform="web"\} \d+/);
    expect(metrics).toMatch(/teamllm_feedback_total\{platform="web",vote="down"\} 1/);
    expect(metrics).toMatch(/teamllm_http_requests_total\{method="POST",route="\/api\/chat",status="400"\} \d+/);
    expect(metrics).toMatch(/teamllm_rate_limited_total\{platform="web"\} 1/);
    expect(metrics).toContain('route="unmatched"');
  });
});

describe('logger', () => {
  it('redacts secrets wherever they appear in a log line', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const logger = createLogger('info', sink as never);
    logger.info({ token: 'xoxb-secret-1', slack: { signingSecret: 'sig-secret-2' }, req: { headers: { authorization: 'Bearer t-3' } }, ok: 'visible' }, 'hello');
    const out = lines.join('');
    expect(out).toContain('visible');
    for (const secret of ['xoxb-secret-1', 'sig-secret-2', 'Bearer t-3']) expect(out).not.toContain(secret);
    expect(out).toContain('[redacted]');
  });
});
