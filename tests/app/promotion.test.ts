import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { decidePromotion } from '../../src/app/job-promotion.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { message, RecordingTarget, waitFor } from '../helpers.ts';
import { tinyModel, useBackend } from '../model/helpers.ts';

// The promotion rule, rollback down to "no model", the audit trail, and the admin web page.
const TOKEN = 'admin-token-for-the-promotion-test';
let runtime: Runtime;
let home: string;
let modelDir: string;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'teamllm-promotion-'));
  await useBackend('cpu');
  const tokenizer = CharTokenizer.fromText(Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\n\t', { specialTokens: true });
  modelDir = join(home, 'made');
  mkdirSync(modelDir);
  await saveModelFiles(modelDir, tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }), tokenizer, { source: 'test' });
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_ADMINS: 'slack:UADMIN', TEAMLLM_ADMIN_TOKEN: TOKEN }, cwd: home });
  runtime = await createRuntime(config, {
    logger: silentLogger,
    defaultMetrics: false,
    startJobs: true,
    stages: { gated: new URL('../training/fixtures/gated-stage.ts', import.meta.url).href },
  });
});

afterAll(async () => {
  await runtime?.close();
});

const admin = (text: string) => message({ text, user: { id: 'UADMIN', name: 'Admin' } });
async function say(text: string, asAdmin = true): Promise<RecordingTarget> {
  const target = new RecordingTarget();
  await runtime.bot.handle(asAdmin ? admin(text) : message({ text }), target);
  return target;
}
async function train(params: string): Promise<string> {
  const target = await say(`/train gated model=${modelDir} ${params}`);
  await runtime.jobs.idle();
  await waitFor(() => target.events.some((e) => /— succeeded/.test(e.content.text)), 10_000);
  return target.events.map((e) => e.content.text).filter((t) => /— succeeded/.test(t)).at(-1)!;
}

describe('decidePromotion', () => {
  const passed = { passed: true, reasons: ['better'] };
  it('promotes only a registered version whose gate passed, trained from what serves now', () => {
    expect(decidePromotion({ result: { modelVersion: 'v2', gate: passed }, params: {}, parent: 'v1', serving: 'v1' }).promote).toBe(true);
    expect(decidePromotion({ result: { modelVersion: 'v1', gate: passed }, params: {} }).promote).toBe(true);
    expect(decidePromotion({ result: { gate: passed }, params: {} })).toEqual({ promote: false, reason: 'no model version was registered' });
    expect(decidePromotion({ result: { modelVersion: 'v2' }, params: {} }).reason).toMatch(/no evaluation gate/);
    expect(decidePromotion({ result: { modelVersion: 'v2', gate: { passed: false, reasons: ['F1 fell'] } }, params: {} }).reason).toMatch(/did not pass the evaluation gate \(F1 fell\)/);
    expect(decidePromotion({ result: { modelVersion: 'v2', gate: passed }, params: { promote: 'never' } }).promote).toBe(false);
    expect(decidePromotion({ result: { modelVersion: 'v3', gate: passed }, params: {}, parent: 'v1', serving: 'v2' }).reason).toMatch(/v2 serves now but v3 was trained from v1/);
  });
});

describe('promotion from training jobs', () => {
  it('auto-promotes a passing job, keeps a failing one out, lets an admin override, and rolls back down to no model', async () => {
    const first = await train('pass=true');
    expect(first).toContain('Evaluation (before → after): f1 0.250 → 0.500');
    expect(first).toContain('Evaluation gate: ✅ passed — F1 0.25 → 0.50 on held-out questions');
    expect(first).toMatch(/Promoted v1: it passed the evaluation gate\./);
    // No image upload on this target: a pointer to the admin page instead.
    expect(first).toMatch(/Loss curves: on the admin page/);
    const asked = await say('How many days of annual leave do I get?', false);
    expect(asked.last!.model).toMatchObject({ version: 'v1', kind: 'language-model' });

    const second = await train('pass=false parent=v1');
    expect(second).toMatch(/Evaluation gate: ❌ not passed — F1 fell on held-out questions/);
    expect(second).toMatch(/Not promoted: it did not pass the evaluation gate/);
    expect(runtime.bot.serving.model.version).toBe('v1');

    const list = (await say('/model list')).last!.text;
    expect(list).toMatch(/▶ v1 \(serving\)[^\n]*\n {4}gate passed: F1 0.25 → 0.50/);
    expect(list).toMatch(/• v2 [^\n]*\n {4}gate NOT passed: F1 fell on held-out questions/);

    expect((await say('/model promote v2', false)).last!.text).toMatch(/only admins/);
    const forced = (await say('/model promote v2')).last!.text;
    expect(forced).toMatch(/^Now answering with v2 \(was v1; \/model rollback returns to it\)\. It did not pass its evaluation gate \(F1 fell on held-out questions\); promoted by hand/);
    expect(runtime.bot.serving.model.version).toBe('v2');

    expect((await say('/model rollback')).last!.text).toBe('Rolled back: answering with v1 again (was v2).');
    expect(runtime.bot.serving.model.version).toBe('v1');
    expect((await say('/model rollback')).last!.text).toMatch(/^Rolled back: no model version serves now \(was v1\); answers quote the knowledge base/);
    expect((await say('How many days of annual leave do I get?', false)).last!.model?.kind).toBe('retrieval-only');
    expect((await say('/model rollback')).last!.text).toMatch(/Nothing to roll back to/);

    // Who trained, promoted and rolled back what.
    const audit = (await runtime.store.auditLog(50)).reverse().map((a) => [a.actor, a.action, a.detail]);
    expect(audit).toEqual(
      expect.arrayContaining([
        ['slack:UADMIN', 'train', expect.objectContaining({ job: 1, kind: 'gated' })],
        ['slack:UADMIN', 'promote', { version: 'v1', previous: null, auto: true, job: 1 }],
        ['slack:UADMIN', 'promote', { version: 'v2', previous: 'v1', override: true, gate: { passed: false, reasons: ['F1 fell on held-out questions'] } }],
        ['slack:UADMIN', 'rollback', { from: 'v2', to: 'v1' }],
        ['slack:UADMIN', 'rollback', { from: 'v1', to: null }],
      ]),
    );
  });

  it('shows jobs, curves, versions with gates and feedback on the admin page, only with the token', async () => {
    const answered = await runtime.bot.handle(message({ text: 'Where is the office?' }), new RecordingTarget());
    await runtime.bot.vote({ answerId: answered.answerId!, platform: 'slack', userId: 'U7', value: 1 });

    const refused = await runtime.http.request('/admin');
    expect(refused.status).toBe(401);
    expect(await refused.text()).toContain('name="token"');
    expect((await runtime.http.request('/admin', { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
    expect((await runtime.http.request('/admin/api/summary')).status).toBe(401);
    expect((await runtime.http.request('/admin/jobs/1/loss.png')).status).toBe(401);

    const auth = { authorization: `Bearer ${TOKEN}` };
    const page = await runtime.http.request('/admin', { headers: auth });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<td>#1</td><td>gated</td><td class="st-succeeded">succeeded</td>');
    expect(html).toContain('<img src="/admin/jobs/1/loss.png"');
    expect(html).toMatch(/<td>v2<\/td><td>test<\/td>.*<span class="bad">not passed<\/span> F1 fell on held-out questions/);
    expect(html).toMatch(/<td>\d{4}-\d\d-\d\d<\/td><td>[1-9]\d*<\/td><td>1<\/td><td>0<\/td>/);
    const summary = (await (await runtime.http.request('/admin/api/summary', { headers: auth })).json()) as { models: { version: string; gate?: { passed: boolean } }[]; feedback: { up: number }[] };
    expect(summary.models.map((m) => [m.version, m.gate?.passed])).toEqual([['v1', true], ['v2', false]]);
    expect(summary.feedback.reduce((n, f) => n + f.up, 0)).toBe(1);

    const png = await runtime.http.request('/admin/jobs/1/loss.png', { headers: auth });
    expect(png.status).toBe(200);
    expect(png.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await png.arrayBuffer()).subarray(1, 4).toString()).toBe('PNG');

    // Only a job number names a file, and only that job's own loss.png.
    expect((await runtime.http.request('/admin/jobs/..%2F..%2Fteamllm.db/loss.png', { headers: auth })).status).toBe(400);
    expect((await runtime.http.request('/admin/jobs/99/loss.png', { headers: auth })).status).toBe(404);
    const job2 = (await runtime.store.getJob(2))!;
    writeFileSync(join(home, 'secret.txt'), 'not an image');
    const { rmSync } = await import('node:fs');
    rmSync(join(job2.runDir!, 'loss.png'));
    symlinkSync(join(home, 'secret.txt'), join(job2.runDir!, 'loss.png'));
    expect((await runtime.http.request('/admin/jobs/2/loss.png', { headers: auth })).status).toBe(404);

    // The login form sets a cookie that opens the page in a browser.
    const login = await runtime.http.request('/admin/login', { method: 'POST', body: new URLSearchParams({ token: TOKEN }) });
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).not.toContain(TOKEN);
    expect((await runtime.http.request('/admin', { headers: { cookie: cookie.split(';')[0]! } })).status).toBe(200);
    expect((await runtime.http.request('/admin/login', { method: 'POST', body: new URLSearchParams({ token: 'nope' }) })).status).toBe(401);
  });

  it('serves at once, and records, a version a stage promoted by itself', async () => {
    const before = (await runtime.store.listJobs(100)).length; // each gated job registered one version
    const text = await train('pass=true parent=v1 selfPromote=true');
    const version = `v${before + 1}`;
    expect(text).toContain(`Promoted ${version}: the stage promoted it itself (evaluation gate passed).`);
    expect(runtime.bot.serving.model.version).toBe(version);
    expect((await runtime.store.auditLog(1))[0]).toMatchObject({ action: 'promote', detail: { version, auto: true } });
  });
});
