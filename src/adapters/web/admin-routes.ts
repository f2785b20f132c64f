import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Hono, type Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { RateLimiter, type AuditDenial, type AuditEntry, type JobRecord, type Logger } from '../../core/index.ts';
import { limitBody } from '../http/body-limit.ts';
import { TrustedProxies } from '../http/client-address.ts';

/** A model version as the admin page shows it. */
export interface AdminModelVersion {
  version: string;
  source: string;
  createdAt: string;
  serving?: boolean;
  parent?: string;
  numParameters: number;
  metrics: Record<string, number>;
  gate?: { passed: boolean; reasons: string[] };
  job?: number;
}

/** What the admin page reads; the composition root wires it to the store, the job queue and the registry. */
export interface AdminData {
  jobs(limit: number): Promise<JobRecord[]>;
  job(id: number): Promise<JobRecord | undefined>;
  /** The absolute path of a job's loss chart, only if it lies in the job's own run folder. */
  lossChart(job: JobRecord): Promise<string | undefined>;
  models(): Promise<AdminModelVersion[]>;
  feedbackByDay(days: number): Promise<{ day: string; up: number; down: number; answers: number }[]>;
  audit(limit: number): Promise<AuditEntry[]>;
  /** Refused commands, counted per actor, command and hour. */
  denials(limit: number): Promise<AuditDenial[]>;
  /** Parts running degraded (the vector store down, the promoted model refused), shown as a banner. */
  health?(): AdminHealth;
}

/** What /healthz says about degraded parts (src/app/runtime.ts). */
export interface AdminHealth {
  degraded: string[];
  vectorStore?: { state: string; url?: string; since: number; reason?: string };
  modelFallback?: { wanted: string; file: string; reason: string; serving: string | null; since: number };
}

export interface AdminRoutesOptions {
  adminToken: string;
  data: AdminData;
  logger: Logger;
  /** How long a login lasts (TEAMLLM_ADMIN_SESSION_HOURS); default 12 h. */
  sessionTtlMs?: number;
  /** Wrong-token attempts allowed per client address: `burst` at once, then `perMinute`; default 5 and 5. */
  loginRate?: { perMinute: number; burst: number };
  proxies?: TrustedProxies;
  now?: () => number;
}

const COOKIE = 'teamllm_admin';

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const num = (x: number) => (Number.isInteger(x) ? String(x) : Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(3));
const when = (ms: number | undefined) => (ms ? new Date(ms).toISOString().slice(0, 16).replace('T', ' ') : '');

/**
 * The admin web page at `/admin` (jobs with their loss curves, model versions with metrics and
 * gate results, feedback per day, the audit log), behind TEAMLLM_ADMIN_TOKEN: sent as
 * `Authorization: Bearer <token>`, or typed once into the login form, which sets an HttpOnly
 * cookie holding a random session id (never the token) that the server forgets at logout or
 * after the session's lifetime. Login attempts are throttled per client address.
 */
export function adminRoutes(options: AdminRoutesOptions): Hono {
  const { data, logger } = options;
  const now = options.now ?? Date.now;
  const ttlMs = options.sessionTtlMs ?? 12 * 3600 * 1000;
  const proxies = options.proxies ?? new TrustedProxies();
  const loginRate = options.loginRate ?? { perMinute: 5, burst: 5 };
  const attempts = new RateLimiter(loginRate.perMinute, loginRate.burst, now);
  const expected = createHash('sha256').update(options.adminToken).digest();
  const sameSecret = (given: string, want: Buffer) => timingSafeEqual(createHash('sha256').update(given).digest(), want);
  /** sha256(session id) -> expiry. Only hashes are kept, so a heap dump holds no usable cookie. */
  const sessions = new Map<string, number>();
  const sessionKey = (id: string) => createHash('sha256').update(id).digest('hex');
  const authorized = (c: Context): boolean => {
    const header = c.req.header('authorization');
    if (header?.startsWith('Bearer ') && sameSecret(header.slice(7), expected)) return true;
    const cookie = getCookie(c, COOKIE);
    if (!cookie) return false;
    const key = sessionKey(cookie);
    const expires = sessions.get(key);
    if (expires === undefined) return false;
    if (expires <= now()) {
      sessions.delete(key);
      return false;
    }
    return true;
  };
  const cookieOptions = (c: Context) => ({ httpOnly: true, sameSite: 'Strict' as const, path: '/admin', secure: new URL(c.req.url).protocol === 'https:' });

  const app = new Hono();
  // The login form is a few bytes; nothing under /admin takes more (checked before the token is).
  app.use('/admin/*', limitBody(8 * 1024, 'text'));

  app.post('/admin/login', async (c) => {
    const ip = proxies.clientAddress(c);
    const wait = attempts.take(ip);
    if (wait > 0) {
      logger.warn({ ip }, 'admin page: login attempts throttled');
      return c.html(loginPage(`Too many attempts; try again in ${wait} s.`), 429, { 'retry-after': String(wait) });
    }
    const form = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
    const token = typeof form.token === 'string' ? form.token : '';
    if (!token || !sameSecret(token, expected)) {
      logger.warn({ ip }, 'admin page: wrong token');
      return c.html(loginPage('That token is not right.'), 401);
    }
    for (const [key, expires] of sessions) if (expires <= now()) sessions.delete(key);
    const id = randomBytes(32).toString('base64url');
    sessions.set(sessionKey(id), now() + ttlMs);
    setCookie(c, COOKIE, id, { ...cookieOptions(c), maxAge: Math.floor(ttlMs / 1000) });
    return c.redirect('/admin', 303);
  });

  app.post('/admin/logout', (c) => {
    const cookie = getCookie(c, COOKIE);
    if (cookie) sessions.delete(sessionKey(cookie));
    deleteCookie(c, COOKIE, cookieOptions(c));
    return c.redirect('/admin', 303);
  });

  app.use('/admin', async (c, next) => (authorized(c) ? next() : c.html(loginPage(), 401)));
  app.use('/admin/*', async (c, next) => {
    if (c.req.path === '/admin/login' || c.req.path === '/admin/logout') return next();
    return authorized(c) ? next() : c.json({ error: 'admin token required (Authorization: Bearer $TEAMLLM_ADMIN_TOKEN)' }, 401);
  });

  const summary = async () => ({
    jobs: await data.jobs(50),
    models: await data.models(),
    feedback: await data.feedbackByDay(30),
    // Refused commands live in their own table, so they can never push admin actions off this list.
    audit: await data.audit(50),
    denials: await data.denials(50),
    health: data.health?.() ?? { degraded: [] },
  });

  app.get('/admin/api/summary', async (c) => c.json(await summary()));

  app.get('/admin/jobs/:id/loss.png', async (c) => {
    const id = c.req.param('id');
    // Only a job number names a chart: no path from the request ever reaches the file system.
    if (!/^\d{1,9}$/.test(id)) return c.json({ error: 'not a job number' }, 400);
    const job = await data.job(Number(id));
    const file = job ? await data.lossChart(job) : undefined;
    if (!file) return c.json({ error: `no loss chart for job ${id}` }, 404);
    const png = await readFile(file);
    return c.body(new Uint8Array(png), 200, { 'content-type': 'image/png', 'cache-control': 'private, max-age=60', 'x-content-type-options': 'nosniff' });
  });

  app.get('/admin', async (c) => {
    const s = await summary();
    const charts = new Set<number>();
    for (const job of s.jobs) if (await data.lossChart(job)) charts.add(job.id);
    return c.html(adminPage(s, charts), 200, { 'content-security-policy': "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'", 'cache-control': 'no-store' });
  });

  return app;
}

function loginPage(error?: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>teamllm admin</title></head><body style="font-family:system-ui;max-width:30rem;margin:4rem auto">
<h1>teamllm admin</h1>${error ? `<p role="alert" style="color:#b00">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/admin/login"><label>Admin token (TEAMLLM_ADMIN_TOKEN)<br><input name="token" type="password" autocomplete="current-password" required style="width:100%"></label><p><button>Open</button></p></form></body></html>`;
}

function adminPage(
  s: { jobs: JobRecord[]; models: AdminModelVersion[]; feedback: { day: string; up: number; down: number; answers: number }[]; audit: AuditEntry[]; denials: AuditDenial[]; health: AdminHealth },
  charts: Set<number>,
): string {
  const e = escapeHtml;
  const gate = (g: { passed: boolean; reasons: string[] } | undefined) =>
    g ? `<span class="${g.passed ? 'ok' : 'bad'}">${g.passed ? 'passed' : 'not passed'}</span> ${e(g.reasons.join('; '))}` : '<span class="muted">none</span>';
  const metrics = (m: Record<string, unknown> | undefined) =>
    Object.entries(m ?? {})
      .filter(([, v]) => typeof v === 'number')
      .map(([k, v]) => `${e(k)}&nbsp;${num(v as number)}`)
      .join(', ');
  const jobs = s.jobs
    .map((j) => {
      const r = (j.result ?? {}) as { summary?: string; metrics?: Record<string, number>; gate?: { passed: boolean; reasons: string[] }; promotion?: { promoted: boolean; reason: string; version: string } };
      const progress = j.progress ? `${e(j.progress.stage)} ${j.progress.step}/${j.progress.totalSteps}${j.progress.loss !== undefined ? ` loss ${num(j.progress.loss)}` : ''}` : '';
      return `<tr id="job-${j.id}"><td>#${j.id}</td><td>${e(j.kind)}</td><td class="st-${e(j.status)}">${e(j.status)}</td><td>${e(j.requestedBy)}</td><td>${when(j.startedAt ?? j.createdAt)}</td><td>${progress}</td>
<td>${e(r.summary ?? j.error ?? '')}<div class="small">${metrics(r.metrics)}</div>${r.gate ? `<div class="small">gate: ${gate(r.gate)}</div>` : ''}${r.promotion ? `<div class="small">${r.promotion.promoted ? `promoted ${e(r.promotion.version)}` : `not promoted: ${e(r.promotion.reason)}`}</div>` : ''}</td>
<td>${charts.has(j.id) ? `<a href="/admin/jobs/${j.id}/loss.png"><img src="/admin/jobs/${j.id}/loss.png" alt="loss curves of job ${j.id}" width="240" loading="lazy"></a>` : ''}</td></tr>`;
    })
    .join('\n');
  const models = s.models
    .map(
      (v) =>
        `<tr><td>${v.serving ? '▶ ' : ''}${e(v.version)}</td><td>${e(v.source)}</td><td>${e(v.createdAt.slice(0, 16).replace('T', ' '))}</td><td>${v.parent ? e(v.parent) : ''}</td><td>${v.numParameters.toLocaleString('en-US')}</td><td class="small">${metrics(v.metrics)}</td><td class="small">${gate(v.gate)}</td><td>${v.job !== undefined ? `<a href="#job-${v.job}">#${v.job}</a>` : ''}</td></tr>`,
    )
    .join('\n');
  const peak = Math.max(1, ...s.feedback.map((f) => f.up + f.down));
  const feedback = s.feedback
    .map(
      (f) =>
        `<tr><td>${e(f.day)}</td><td>${f.answers}</td><td>${f.up}</td><td>${f.down}</td><td><span class="bar up" style="width:${Math.round((120 * f.up) / peak)}px"></span><span class="bar down" style="width:${Math.round((120 * f.down) / peak)}px"></span></td></tr>`,
    )
    .join('\n');
  const banners: string[] = [];
  const fb = s.health.modelFallback;
  if (fb) {
    banners.push(
      `<p role="alert" class="alert">Model ${e(fb.wanted)} is refused since ${when(fb.since)}: ${e(fb.file)} — ${e(fb.reason)} Answering with ${fb.serving ? e(fb.serving) : 'retrieval-only answers'} meanwhile.</p>`,
    );
  }
  const vs = s.health.vectorStore;
  if (vs?.state === 'down') {
    banners.push(`<p role="alert" class="alert">The vector store (Chroma${vs.url ? ` at ${e(vs.url)}` : ''}) is unreachable since ${when(vs.since)}: answers use BM25 alone until it is back (${e(vs.reason ?? '')}).</p>`);
  }
  const audit = s.audit.map((a) => `<tr><td>${when(a.at)}</td><td>${e(a.actor)}</td><td>${e(a.action)}</td><td class="small">${e(JSON.stringify(a.detail))}</td></tr>`).join('\n');
  const denials = s.denials.map((d) => `<tr><td>${when(d.hour)}</td><td>${e(d.actor)}</td><td>${e(d.command)}</td><td>${d.count}</td><td>${when(d.lastAt)}</td></tr>`).join('\n');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>teamllm admin</title><style>
body{font-family:system-ui;margin:2rem;color:#222}table{border-collapse:collapse;margin-bottom:2rem}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.small{font-size:.85em;color:#444}.muted{color:#888}.ok{color:#070;font-weight:600}.bad{color:#b00;font-weight:600}.bar{display:inline-block;height:.8rem}.up{background:#3a3}.down{background:#c33}
.alert{background:#fee;border:1px solid #c33;padding:.5rem}.st-failed{color:#b00}.st-succeeded{color:#070}.st-running{color:#06c}</style></head><body>
<h1>teamllm admin</h1>
${banners.join('\n')}
<form method="post" action="/admin/logout"><button>Log out</button></form>
<h2>Training jobs</h2>
${s.jobs.length ? `<table><thead><tr><th>Job</th><th>Kind</th><th>Status</th><th>By</th><th>Started</th><th>Progress</th><th>Outcome</th><th>Loss curves</th></tr></thead><tbody>${jobs}</tbody></table>` : '<p class="muted">No training jobs yet.</p>'}
<h2>Model versions</h2>
${s.models.length ? `<table><thead><tr><th>Version</th><th>Source</th><th>Created</th><th>From</th><th>Parameters</th><th>Metrics</th><th>Evaluation gate</th><th>Job</th></tr></thead><tbody>${models}</tbody></table>` : '<p class="muted">No model versions yet: answers quote the knowledge base.</p>'}
<h2>Feedback per day (last 30 days)</h2>
${s.feedback.length ? `<table><thead><tr><th>Day (UTC)</th><th>Answers</th><th>👍</th><th>👎</th><th></th></tr></thead><tbody>${feedback}</tbody></table>` : '<p class="muted">No answers or votes yet.</p>'}
<h2>Audit log</h2>
${s.audit.length ? `<table><thead><tr><th>When (UTC)</th><th>Who</th><th>What</th><th>Detail</th></tr></thead><tbody>${audit}</tbody></table>` : '<p class="muted">Nothing recorded yet.</p>'}
<h2>Refused commands (per hour)</h2>
${s.denials.length ? `<table><thead><tr><th>Hour (UTC)</th><th>Who</th><th>Command</th><th>Times</th><th>Last</th></tr></thead><tbody>${denials}</tbody></table>` : '<p class="muted">None.</p>'}
</body></html>`;
}
