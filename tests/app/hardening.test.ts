import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminRoutes, type AdminData } from '../../src/adapters/web/index.ts';
import { TrustedProxies } from '../../src/adapters/http/client-address.ts';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { exportDataset } from '../../src/training/feedback-datasets.ts';
import { makeBot, message, RecordingTarget, ScriptedAnswerer } from '../helpers.ts';

// Issue 21 (hardening): each test here failed on the code before it.

const ADMIN_TOKEN = 'hardening-admin-token-0123456789';
const SERVICE_TOKEN = 'hardening-service-token-012345';
const PROXY = '10.0.0.5';

let runtime: Runtime;

beforeAll(async () => {
  const home = mkdtempSync(join(tmpdir(), 'teamllm-hardening-'));
  const config = loadConfig({
    env: {
      TEAMLLM_HOME: home,
      TEAMLLM_ADMIN_TOKEN: ADMIN_TOKEN,
      TEAMLLM_SERVICE_TOKENS: `portal=${SERVICE_TOKEN}`,
      TEAMLLM_TRUSTED_PROXIES: PROXY,
      TEAMLLM_AUTH_USER_HEADER: 'X-Auth-Request-Email',
      TEAMLLM_ALLOWED_ORIGINS: 'https://intranet.example.com',
      TEAMLLM_RATE_BURST: '2',
      TEAMLLM_RATE_PER_MINUTE: '1',
      TEAMLLM_SAMPLE_KB: 'false',
    },
    cwd: home,
  });
  runtime = await createRuntime(config, { logger: silentLogger, answerer: new ScriptedAnswerer(['Twenty-five days.']), defaultMetrics: false });
});

afterAll(async () => {
  await runtime.close();
});

afterEach(() => {
  vi.useRealTimers();
});

/** What @hono/node-server passes a request: the TCP peer's address, which is what proxies are judged by. */
const from = (address: string) => ({ incoming: { socket: { remoteAddress: address } } });

let clients = 0;
/** A client at an address of its own, so tests do not share anonymous rate limits. */
const newAddress = () => `192.0.2.${++clients}`;

function request(path: string, init: { body?: unknown; headers?: Record<string, string>; method?: string; address?: string } = {}) {
  const body = init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
  return runtime.http.request(
    path,
    { method: init.method ?? 'POST', headers: { 'content-type': 'application/json', host: 'teamllm.test', ...init.headers }, ...(body !== undefined ? { body } : {}) },
    from(init.address ?? newAddress()),
  );
}

/** A request body that streams 64 KB chunks up to `totalBytes`, counting what the server pulled. */
function endlessBody(totalBytes: number) {
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  const counter = { pulled: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (counter.pulled >= totalBytes) return controller.close();
      counter.pulled += chunk.length;
      controller.enqueue(chunk);
    },
  });
  return { stream, counter };
}

const cookieOf = (res: Response) => res.headers.get('set-cookie')?.split(';')[0];

describe('body limits (finding 1)', () => {
  it('refuses a huge chunked POST /admin/login with 413, reading no more than the server-wide ceiling', async () => {
    const { stream, counter } = endlessBody(64 * 1024 * 1024);
    const res = await runtime.http.request('/admin/login', { method: 'POST', body: stream, duplex: 'half', headers: { 'content-type': 'application/x-www-form-urlencoded' } } as RequestInit, from('198.51.100.1'));
    expect(res.status).toBe(413);
    // Read as it streams and stopped at the 1 MB ceiling; the 64 MB behind it were never pulled.
    expect(counter.pulled).toBeLessThan(2 * 1024 * 1024);
  });

  it('stops reading an admin login body at 8 KB when served on its own', async () => {
    const app = adminRoutes({ adminToken: ADMIN_TOKEN, logger: silentLogger, data: {} as AdminData });
    const { stream, counter } = endlessBody(64 * 1024 * 1024);
    const res = await app.request('/admin/login', { method: 'POST', body: stream, duplex: 'half' } as RequestInit, from('198.51.100.4'));
    expect(res.status).toBe(413);
    expect(counter.pulled).toBeLessThan(256 * 1024);
  });

  it('refuses an oversized declared Content-Length at once, and caps every other route too', async () => {
    const declared = await runtime.http.request('/admin/login', { method: 'POST', body: 'token=x', headers: { 'content-length': String(10 * 1024 * 1024) } }, from('198.51.100.2'));
    expect(declared.status).toBe(413);
    const { stream, counter } = endlessBody(64 * 1024 * 1024);
    const anyRoute = await runtime.http.request('/nowhere', { method: 'POST', body: stream, duplex: 'half' } as RequestInit, from('198.51.100.3'));
    expect(anyRoute.status).toBe(413);
    expect(counter.pulled).toBeLessThan(2 * 1024 * 1024);
  });
});

describe('messageId claims over HTTP (finding 4)', () => {
  it('answers a messageId refused with 429 when it is retried, then answers 409 to a third try', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const asService = { authorization: `Bearer ${SERVICE_TOKEN}` };
    const ask = (messageId: string) => request('/api/chat', { body: { text: 'Leave?', user: 'hasty', messageId }, headers: asService });
    expect((await ask('h-1')).status).toBe(200);
    expect((await ask('h-2')).status).toBe(200);
    expect((await ask('h-3')).status).toBe(429);
    vi.setSystemTime(Date.now() + 61_000);
    const retried = await ask('h-3');
    expect(retried.status).toBe(200);
    expect(((await retried.json()) as { answerId: string | null }).answerId).toEqual(expect.any(String));
    expect((await ask('h-3')).status).toBe(409);
  });
});

describe('cross-site requests (finding 5)', () => {
  it('refuses /api/* posts that are not declared JSON with 415', async () => {
    for (const path of ['/api/chat', '/api/chat/stream', '/api/feedback']) {
      expect((await request(path, { body: '{"text":"hi"}', headers: { 'content-type': 'text/plain' } })).status).toBe(415);
      expect((await request(path, { body: 'text=hi', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status).toBe(415);
      const bare = await runtime.http.request(path, { method: 'POST', body: new Blob(['{"text":"hi"}']) }, from(newAddress()));
      expect(bare.status).toBe(415);
    }
  });

  it('refuses a browser post from another origin, and takes this host and allowed origins', async () => {
    const ask = (origin: string) => request('/api/chat', { body: { text: 'Leave?' }, headers: { origin } });
    expect((await ask('https://evil.example')).status).toBe(403);
    expect((await ask('null')).status).toBe(403);
    expect((await ask('http://teamllm.test')).status).toBe(200);
    expect((await ask('https://intranet.example.com')).status).toBe(200);
  });
});

describe('web identity (finding 2)', () => {
  it('ignores `user` from an anonymous caller: the answer belongs to a signed, HttpOnly session', async () => {
    const res = await request('/api/chat', { body: { text: 'Leave?', user: 'ceo' } });
    expect(res.status).toBe(200);
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^teamllm_session=/);
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    const { answerId } = (await res.json()) as { answerId: string };
    const stored = await runtime.store.getAnswer(answerId);
    expect(stored!.userId).toMatch(/^anon:/);
    expect(stored!.userName).not.toBe('ceo');
    // The session is kept: the same cookie asks as the same identity; a forged one gets a new session.
    const again = await request('/api/chat', { body: { text: 'Leave?' }, headers: { cookie: cookieOf(res)! } });
    expect((await runtime.store.getAnswer(((await again.json()) as { answerId: string }).answerId))!.userId).toBe(stored!.userId);
    const forged = await request('/api/chat', { body: { text: 'Leave?' }, headers: { cookie: `teamllm_session=${stored!.userId.slice(5)}.forged` } });
    expect((await runtime.store.getAnswer(((await forged.json()) as { answerId: string }).answerId))!.userId).not.toBe(stored!.userId);
  });

  it('does not let fresh names or fresh sessions escape the rate limit; another address is unaffected', async () => {
    const address = newAddress();
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await request('/api/chat', { body: { text: `q${i}`, user: `u${i}` }, address })).status);
    expect(statuses).toEqual([200, 200, 429, 429, 429]);
    // Commands count too.
    expect(((await (await request('/api/chat', { body: { text: '/kb search leave' }, address })).json()) as { answer: string }).answer).toMatch(/faster than I can keep up/);
    expect((await request('/api/chat', { body: { text: 'Leave?' }, address: newAddress() })).status).toBe(200);
  });

  it('lets an anonymous session vote only on its own answers, once; invented voters count for nothing', async () => {
    const asked = await request('/api/chat', { body: { text: 'Leave?' } });
    const session = cookieOf(asked)!;
    const { answerId } = (await asked.json()) as { answerId: string };
    for (let i = 0; i < 20; i++) {
      const res = await request('/api/feedback', { body: { answerId, value: -1, user: `voter${i}` } });
      expect(res.status).toBe(403);
    }
    const own = await request('/api/feedback', { body: { answerId, value: 1 }, headers: { cookie: session } });
    expect(await own.json()).toEqual({ ok: true, up: 1, down: 0 });
    const changed = await request('/api/feedback', { body: { answerId, value: -1 }, headers: { cookie: session } });
    expect(await changed.json()).toEqual({ ok: true, up: 0, down: 1 });
    expect(await runtime.store.feedbackFor(answerId)).toHaveLength(1);
  });

  it('believes the single sign-on header only from the trusted proxy; one vote per signed-in user', async () => {
    const sso = { 'x-auth-request-email': 'Alice@Example.com' };
    const viaProxy = await request('/api/chat', { body: { text: 'Leave?', user: 'bob' }, headers: sso, address: PROXY });
    const { answerId } = (await viaProxy.json()) as { answerId: string };
    expect((await runtime.store.getAnswer(answerId))!.userId).toBe('sso:alice@example.com');
    const direct = await request('/api/chat', { body: { text: 'Leave?' }, headers: sso, address: '203.0.113.9' });
    expect((await runtime.store.getAnswer(((await direct.json()) as { answerId: string }).answerId))!.userId).toMatch(/^anon:/);
    // Signed-in users may vote on any answer, once each.
    for (let i = 0; i < 3; i++) await request('/api/feedback', { body: { answerId, value: -1 }, headers: sso, address: PROXY });
    await request('/api/feedback', { body: { answerId, value: -1 }, headers: { 'x-auth-request-email': 'carol@example.com' }, address: PROXY });
    expect((await runtime.store.feedbackFor(answerId)).map((f) => f.userId).sort()).toEqual(['sso:alice@example.com', 'sso:carol@example.com']);
  });

  it('takes the client address from X-Forwarded-For only when the peer is a trusted proxy', async () => {
    // Two clients behind the proxy get a bucket each; a direct caller's X-Forwarded-For is ignored.
    const behind = (client: string) => request('/api/chat', { body: { text: 'Leave?' }, headers: { 'x-forwarded-for': `1.2.3.4, ${client}` }, address: PROXY });
    expect([(await behind('198.18.0.1')).status, (await behind('198.18.0.1')).status, (await behind('198.18.0.1')).status]).toEqual([200, 200, 429]);
    expect((await behind('198.18.0.2')).status).toBe(200);
    const address = newAddress();
    const spoofing = (client: string) => request('/api/chat', { body: { text: 'Leave?' }, headers: { 'x-forwarded-for': client }, address });
    expect([(await spoofing('198.18.1.1')).status, (await spoofing('198.18.1.2')).status, (await spoofing('198.18.1.3')).status]).toEqual([200, 200, 429]);
  });
});

describe('admin sessions (finding 5)', () => {
  const data: AdminData = {
    jobs: async () => [],
    job: async () => undefined,
    lossChart: async () => undefined,
    models: async () => [],
    feedbackByDay: async () => [],
    audit: async () => [],
    denials: async () => [],
  };
  const login = (app: ReturnType<typeof adminRoutes>, token: string, address = '10.1.0.1') =>
    app.request('/admin/login', { method: 'POST', body: new URLSearchParams({ token }) }, from(address));

  it('gives each login its own random cookie, ends it at logout, and expires it after 12 hours', async () => {
    let now = Date.UTC(2026, 0, 1);
    const app = adminRoutes({ adminToken: ADMIN_TOKEN, data, logger: silentLogger, now: () => now });
    const first = cookieOf(await login(app, ADMIN_TOKEN))!;
    const second = cookieOf(await login(app, ADMIN_TOKEN))!;
    expect(first).not.toBe(second);
    const page = (cookie: string) => Promise.resolve(app.request('/admin', { headers: { cookie } })).then((r: Response) => r.status);
    expect(await page(first)).toBe(200);
    const out = await app.request('/admin/logout', { method: 'POST', headers: { cookie: first } });
    expect(out.status).toBe(303);
    expect(await page(first)).toBe(401);
    expect(await page(second)).toBe(200);
    now += 12 * 3600 * 1000 + 1000;
    expect(await page(second)).toBe(401);
  });

  it('throttles login attempts per client address, believing X-Forwarded-For only from a trusted proxy', async () => {
    const app = adminRoutes({ adminToken: ADMIN_TOKEN, data, logger: silentLogger, proxies: new TrustedProxies([PROXY]) });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await login(app, 'wrong-token')).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
    // Even the right token waits: otherwise guessing just continues.
    expect((await login(app, ADMIN_TOKEN)).status).toBe(429);
    expect((await login(app, ADMIN_TOKEN, '10.1.0.2')).status).toBe(303);
    // Behind the proxy, each forwarded client has its own allowance.
    const viaProxy = (client: string, token: string) =>
      app.request('/admin/login', { method: 'POST', body: new URLSearchParams({ token }), headers: { 'x-forwarded-for': client } }, from(PROXY));
    for (let i = 0; i < 5; i++) await viaProxy('172.16.0.1', 'wrong-token');
    expect((await viaProxy('172.16.0.1', ADMIN_TOKEN)).status).toBe(429);
    expect((await viaProxy('172.16.0.2', ADMIN_TOKEN)).status).toBe(303);
  });
});

describe('audit log (finding 3)', () => {
  it('keeps admin actions visible however many commands are refused, counting refusals per user, command and hour', async () => {
    const { bot, store } = makeBot({ rateLimit: { perMinute: 10_000, burst: 10_000 } });
    for (let i = 0; i < 12; i++) await store.audit({ actor: 'slack:UADMIN', action: 'promote', detail: { version: `v${i}` } });
    for (let i = 0; i < 60; i++) await bot.handle(message({ text: '/model rollback', user: { id: 'U9' } }), new RecordingTarget());
    const audit = await store.auditLog(50);
    expect(audit.filter((a) => a.action === 'promote')).toHaveLength(12);
    expect(await store.auditDenials(50)).toEqual([expect.objectContaining({ actor: 'slack:U9', command: '/model rollback', count: 60 })]);
    const page = await adminRoutes({ adminToken: ADMIN_TOKEN, logger: silentLogger, data: { jobs: async () => [], job: async () => undefined, lossChart: async () => undefined, models: async () => [], feedbackByDay: async () => [], audit: (n) => store.auditLog(n), denials: (n) => store.auditDenials(n) } })
      .request('/admin', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const html = await page.text();
    expect(html).toContain('v11');
    expect(html).toContain('v0');
    expect(html).toMatch(/\/model rollback<\/td><td>60</);
  });

  it('drops audit entries and refusal counts older than the retention setting', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const store = new SqliteStore(':memory:', { auditRetentionMs: 24 * 3600 * 1000 });
    await store.audit({ actor: 'slack:UADMIN', action: 'promote', detail: {} });
    await store.auditDenial('slack:U9', '/train sft');
    vi.setSystemTime(Date.now() + 2 * 24 * 3600 * 1000);
    await store.audit({ actor: 'slack:UADMIN', action: 'rollback', detail: {} });
    store.pruneAudit();
    expect((await store.auditLog(10)).map((a) => a.action)).toEqual(['rollback']);
    expect(await store.auditDenials(10)).toEqual([]);
    await store.close();
  });
});

describe('votes that feed training (attribution)', () => {
  it('counts anonymous sessions\' votes by default and leaves them out on request', async () => {
    const store = new SqliteStore(':memory:');
    const answer = (question: string, userId: string) =>
      store.saveAnswer({ platform: 'web', workspace: '', channel: userId, messageId: question, userId, question, passages: [], prompt: '', output: 'x', modelName: 'm', modelVersion: 'v1', latencyMs: 1 });
    const byAnon = await answer('Anonymous asks?', 'anon:abc');
    const bySso = await answer('Signed-in asks?', 'sso:alice@example.com');
    await store.recordFeedback({ answerId: byAnon.id, platform: 'web', userId: 'anon:abc', value: 1 });
    await store.recordFeedback({ answerId: bySso.id, platform: 'web', userId: 'sso:alice@example.com', value: -1 });
    const rows = async (votes = {}) => {
      const out: Record<string, unknown>[] = [];
      for await (const row of exportDataset(store, 'kto', votes)) out.push(row);
      return out.map((r) => [r.prompt, r.label]);
    };
    expect(await rows()).toEqual([['Anonymous asks?', true], ['Signed-in asks?', false]]);
    expect(await rows({ anonymousVotes: false })).toEqual([['Signed-in asks?', false]]);
    await store.close();
  });
});
