/**
 * The first start serves at once (issue 18, item 6): `teamllm serve` on a fresh home listens before
 * the quickstart has trained anything; /healthz is 200 and shows the training's progress; the web
 * chat answers retrieval-only with a line saying the bot's own model is being trained (in the
 * question's language); platforms verify their callback URLs; when the quickstart finishes, its
 * model answers — same server, no restart. A failing quickstart leaves the bot answering
 * retrieval-only with the reason in /healthz, and the next start retries.
 *
 * The quickstart is gated here through startServing's `quickstartRunner` seam (no sleeping): the
 * stand-in reports the stages the real one reports, waits for the test to open the gate, then
 * registers and promotes a model as the real one does. The real quickstart, in its worker thread,
 * runs end to end in quickstart-e2e.test.ts (`npm start`).
 */
import { randomBytes } from 'node:crypto';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackgroundQuickstart, withNotice, type QuickstartRunner } from '../../src/app/background-quickstart.ts';
import { loadConfig } from '../../src/app/config.ts';
import { quickstartNeeded, type QuickstartOutcome } from '../../src/app/quickstart.ts';
import { startServing, type Serving } from '../../src/app/serve.ts';
import { silentLogger } from '../../src/core/index.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { FakeFeishu } from '../feishu/fake-feishu.ts';
import { ScriptedAnswerer } from '../helpers.ts';
import { tinyModel, useBackend } from '../model/helpers.ts';
import { FakeSlack } from '../slack/fake-slack.ts';
import { nowSec, slackSignature } from '../slack/harness.ts';
import { FakeWecom } from '../wecom/fake-wecom.ts';
import { wecomEncrypt, wecomSignature } from '../wecom/wecom-protocol.ts';

const SLACK_SECRET = 'first-start-signing-secret';
const FEISHU_TOKEN = 'first-start-verification-token';
const WECOM = { corpId: 'wwcorp0042', agentId: '1000042', secret: 'wecom-secret', token: 'wecomtoken', encodingAesKey: randomBytes(32).toString('base64').replace(/[^A-Za-z0-9]/g, 'a').slice(0, 43) };

function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

let modelDir: string;
let slack: FakeSlack;
let feishu: FakeFeishu;
let wecom: FakeWecom;
const open: Serving[] = [];

beforeAll(async () => {
  await useBackend('cpu');
  // The model the stand-in quickstart "trains": a tiny GPT, registered and promoted as the real one's base would be.
  const tokenizer = CharTokenizer.fromText(Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\n\t', { specialTokens: true });
  modelDir = join(mkdtempSync(join(tmpdir(), 'teamllm-first-start-model-')), 'model');
  mkdirSync(modelDir);
  await saveModelFiles(modelDir, tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }), tokenizer, { source: 'test' });
  slack = await FakeSlack.start();
  feishu = await FakeFeishu.start(`cli_${randomBytes(8).toString('hex')}`, 'feishu-secret');
  wecom = await FakeWecom.start(WECOM.corpId, WECOM.secret);
});

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

afterAll(async () => {
  await Promise.all([slack?.close(), feishu?.close(), wecom?.close()]);
});

function freshConfig(extra: Record<string, string> = {}) {
  const home = mkdtempSync(join(tmpdir(), 'teamllm-first-start-'));
  return loadConfig({
    env: {
      TEAMLLM_HOME: home,
      SLACK_BOT_TOKEN: 'xoxb-first-start',
      SLACK_SIGNING_SECRET: SLACK_SECRET,
      SLACK_API_URL: slack.apiUrl,
      FEISHU_APP_ID: feishu.appId,
      FEISHU_APP_SECRET: feishu.appSecret,
      FEISHU_VERIFICATION_TOKEN: FEISHU_TOKEN,
      FEISHU_DOMAIN: feishu.url,
      WECOM_CORP_ID: WECOM.corpId,
      WECOM_AGENT_ID: WECOM.agentId,
      WECOM_SECRET: WECOM.secret,
      WECOM_TOKEN: WECOM.token,
      WECOM_ENCODING_AES_KEY: WECOM.encodingAesKey,
      WECOM_API_BASE: wecom.url,
      ...extra,
    },
    cwd: home,
  });
}

async function serve(config: ReturnType<typeof loadConfig>, runner?: QuickstartRunner): Promise<Serving> {
  const serving = await startServing(config, { logger: silentLogger, port: 0, host: '127.0.0.1', runtime: { defaultMetrics: false }, ...(runner ? { quickstartRunner: runner } : {}) });
  open.push(serving);
  return serving;
}

/** A stand-in for the quickstart: reaches pretraining at 45%, waits for `gate`, then registers and promotes the model. */
function gatedQuickstart(home: string, gate: Promise<void>) {
  const reached = deferred();
  const runner: QuickstartRunner = async ({ reporter }) => {
    reporter.stage('tokenizer', false);
    reporter.done('tokenizer', 'byte-level BPE');
    reporter.stage('pretrain', false);
    reporter.progress({ stage: 'pretrain', step: 90, totalSteps: 200, loss: 3.2, etaSec: 95 });
    reached.resolve();
    await gate;
    const registry = new ModelRegistry(home);
    const base = await registry.register(modelDir, { source: 'pretrain', notes: 'quickstart (test stand-in)' });
    await registry.promote(base.version);
    const outcome: QuickstartOutcome = {
      ran: true,
      seconds: 1,
      state: { key: 'test', recipe: 'default', finishedAt: new Date().toISOString(), baseVersion: base.version, seconds: {}, summary: `model ${base.version} (pretrained here) is serving` },
    };
    return outcome;
  };
  return { runner, reached: reached.promise };
}

type Health = {
  status: string;
  model: { name: string; version: string; kind: string };
  quickstart?: { state: string; stage?: { name: string; number: number; of: number }; progress?: { percent: number; etaSeconds?: number }; error?: string; summary?: string; message: string };
};
type ChatReply = { answer: string; sources: { source: string }[]; model: string; modelVersion: string; outcome: string };

const health = async (s: Serving) => {
  const res = await fetch(`${s.server.url}/healthz`);
  return { status: res.status, body: (await res.json()) as Health };
};
const ask = async (s: Serving, text: string) => {
  const res = await fetch(`${s.server.url}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) });
  expect(res.status).toBe(200);
  return (await res.json()) as ChatReply;
};

describe('the first start serves at once', () => {
  it('answers retrieval-only with the training progress while the quickstart runs, verifies platform URLs, then the trained model takes over without a restart', async () => {
    const config = freshConfig();
    const gate = deferred();
    const quickstart = gatedQuickstart(config.home, gate.promise);
    const serving = await serve(config, quickstart.runner);
    expect(serving.quickstart).toBeDefined();
    await quickstart.reached;

    // /healthz: up, retrieval-only, and how far the training is.
    const during = await health(serving);
    expect(during.status).toBe(200);
    expect(during.body.status).toBe('ok');
    expect(during.body.model.kind).toBe('retrieval-only');
    expect(during.body.quickstart).toMatchObject({ state: 'training', stage: { name: 'pretrain', number: 2, of: 4 }, progress: { percent: 45, etaSeconds: 95 } });
    expect(during.body.quickstart!.message).toBe(
      "the bot's own model is being trained (2/4 pretraining: 45%, about 2 min left in this stage); until it is ready, answers are retrieval-only (quoted from the knowledge base)",
    );

    // The web chat: quotes from the handbook (ingested before the server started), and the training line.
    const en = await ask(serving, 'How many days of annual leave do I get?');
    expect(en).toMatchObject({ modelVersion: 'none', outcome: 'answered' });
    expect(en.sources.some((s) => s.source === 'en/leave-and-holidays.md')).toBe(true);
    expect(en.answer).toContain('25 days');
    expect(en.answer).toMatch(/\n\n⏳ This bot's own model is being trained \(2\/4 pretraining: 45%, about 2 min left in this stage\)\. Until it is ready, answers are quoted from the knowledge base; the model takes over by itself when it is done\.$/);
    const zh = await ask(serving, '年假有多少天？');
    expect(zh.sources.some((s) => s.source === 'zh/annual-leave-and-holidays.md')).toBe(true);
    expect(zh.answer).toContain('⏳ 本机器人自己的模型正在训练中（2/4 预训练：45%，本阶段约剩 2 分钟）。训练完成前，回答直接摘自知识库；完成后模型会自动接替，无需重启。');
    expect(zh.answer).not.toContain('being trained');

    // Platforms can register their callback URLs while the model trains.
    const slackBody = JSON.stringify({ type: 'url_verification', token: 'legacy', challenge: 'slack-challenge-1' });
    const slackRes = await fetch(`${serving.server.url}/slack/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...slackSignature(slackBody, nowSec(), SLACK_SECRET) }, body: slackBody });
    expect(slackRes.status).toBe(200);
    expect(await slackRes.json()).toEqual({ challenge: 'slack-challenge-1' });
    const feishuRes = await fetch(`${serving.server.url}/feishu/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ challenge: 'feishu-challenge-1', token: FEISHU_TOKEN, type: 'url_verification' }),
    });
    expect(feishuRes.status).toBe(200);
    expect(await feishuRes.json()).toEqual({ challenge: 'feishu-challenge-1' });
    const echostr = wecomEncrypt(WECOM.encodingAesKey, 'wecom-echo-1', WECOM.corpId);
    const timestamp = String(nowSec());
    const signature = wecomSignature(WECOM.token, timestamp, '42', echostr);
    const wecomRes = await fetch(`${serving.server.url}/wecom/callback?msg_signature=${signature}&timestamp=${timestamp}&nonce=42&echostr=${encodeURIComponent(echostr)}`);
    expect(wecomRes.status).toBe(200);
    expect(await wecomRes.text()).toBe('wecom-echo-1');

    // The quickstart finishes: its model answers on the same server.
    const url = serving.server.url;
    gate.resolve();
    const final = await serving.quickstart!.finished;
    expect(final).toMatchObject({ state: 'done', summary: 'model v1 (pretrained here) is serving' });
    const after = await health(serving);
    expect(after.body.model).toEqual({ name: 'teamllm', version: 'v1', kind: 'language-model' });
    expect(after.body.quickstart).toMatchObject({ state: 'done', message: 'the quickstart finished: model v1 (pretrained here) is serving' });
    const answered = await ask(serving, 'How many days of annual leave do I get?');
    expect(answered).toMatchObject({ model: 'teamllm', modelVersion: 'v1' });
    expect(answered.answer).not.toContain('being trained');
    expect(serving.server.url).toBe(url);
    // Both answers are in the one store: nothing restarted.
    expect((serving.runtime.store as SqliteStore).db.prepare('SELECT count(*) AS n FROM answers').get()).toEqual({ n: 3 });
    await serving.close();

    // The next start: a model serves (the stand-in wrote no quickstart state, so it counts as someone else's): no training.
    const second = await serve(config);
    expect(second.quickstart).toBeUndefined();
    const again = await health(second);
    expect(again.body.model.version).toBe('v1');
    expect(again.body.quickstart).toBeUndefined();
  });

  it('keeps answering retrieval-only when the quickstart fails, says why in /healthz, and the next start retries', async () => {
    const config = freshConfig();
    const failing: QuickstartRunner = async ({ reporter }) => {
      reporter.stage('tokenizer', true);
      reporter.stage('pretrain', false);
      throw new Error('pretraining diverged: the loss is NaN at step 12');
    };
    const serving = await serve(config, failing);
    const final = await serving.quickstart!.finished;
    expect(final).toMatchObject({ state: 'failed', error: 'pretraining diverged: the loss is NaN at step 12' });

    const { status, body } = await health(serving);
    expect(status).toBe(200);
    expect(body.model.kind).toBe('retrieval-only');
    expect(body.quickstart).toMatchObject({ state: 'failed', error: 'pretraining diverged: the loss is NaN at step 12' });
    expect(body.quickstart!.stage).toBeUndefined();
    expect(body.quickstart!.message).toBe(
      'the quickstart failed: pretraining diverged: the loss is NaN at step 12; answers are retrieval-only; the next start retries it, resuming from its checkpoints',
    );
    const reply = await ask(serving, 'How many days of annual leave do I get?');
    expect(reply).toMatchObject({ modelVersion: 'none', outcome: 'answered' });
    expect(reply.answer).toContain('25 days');
    expect(reply.answer).not.toContain('being trained');
    await serving.close();

    // Nothing was cached and no model serves: the next start runs the quickstart again.
    const gate = deferred();
    const retry = gatedQuickstart(config.home, gate.promise);
    const second = await serve(config, retry.runner);
    expect(second.quickstart).toBeDefined();
    await retry.reached;
    expect((await health(second)).body.quickstart).toMatchObject({ state: 'training', reason: 'no model is serving yet' });
    gate.resolve();
    expect((await second.quickstart!.finished).state).toBe('done');
    expect((await health(second)).body.model.version).toBe('v1');
  });

  it('with TEAMLLM_QUICKSTART=off serves retrieval-only with no training and no training line', async () => {
    const serving = await serve(freshConfig({ TEAMLLM_QUICKSTART: 'off' }));
    expect(serving.quickstart).toBeUndefined();
    const { body } = await health(serving);
    expect(body.model.kind).toBe('retrieval-only');
    expect(body.quickstart).toBeUndefined();
    const reply = await ask(serving, 'How many days of annual leave do I get?');
    expect(reply.answer).toContain('25 days');
    expect(reply.answer).not.toContain('⏳');
  });
});

describe('later starts', () => {
  it('count the base the quickstart left serving (SFT did not beat it) as its own: cached for the same inputs, retrained for changed ones', async () => {
    const config = freshConfig();
    const registry = new ModelRegistry(config.home);
    const base = await registry.register(modelDir, { source: 'pretrain' });
    await registry.promote(base.version);
    // What the default recipe leaves today: no fine-tuned version, its base serving.
    mkdirSync(join(config.home, 'quickstart'), { recursive: true });
    writeFileSync(join(config.home, 'quickstart', 'state.json'), JSON.stringify({ key: 'k1', recipe: 'default', finishedAt: new Date().toISOString(), baseVersion: base.version, seconds: {}, summary: 'model v1 (pretrained here) is serving' }));
    expect(await quickstartNeeded(config, 'k1')).toMatchObject({ needed: false, reason: expect.stringContaining('cached (v1: SFT did not beat its base)') });
    expect(await quickstartNeeded(config, 'k2')).toMatchObject({ needed: true, reason: 'the recipe or the documents changed' });
    // A model the quickstart did not leave serving is never replaced.
    const other = await registry.register(modelDir, { source: 'import' });
    await registry.promote(other.version);
    expect(await quickstartNeeded(config, 'k2')).toMatchObject({ needed: false, reason: 'model v2 is serving (not made by the quickstart)' });
  });
});

describe('the training line', () => {
  it('names the stage, the part of it running, the percentage and the time left, in the question’s language', async () => {
    const gate = deferred();
    const reached = deferred();
    const quickstart = new BackgroundQuickstart({
      recipe: 'default',
      reason: 'no model is serving yet',
      logger: silentLogger,
      runner: async ({ reporter }) => {
        reporter.stage('sft', false);
        reporter.progress({ stage: 'evaluate', step: 10, totalSteps: 25, etaSec: 30 });
        reached.resolve();
        await gate.promise;
        return { ran: false, reason: 'test' };
      },
    });
    expect(quickstart.notice({ question: 'Hi?' })).toBe(
      "⏳ This bot's own model is being trained. Until it is ready, answers are quoted from the knowledge base; the model takes over by itself when it is done.",
    );
    const finished = quickstart.start(async () => ({ name: 'retrieval-only (BM25)', version: 'none', kind: 'retrieval-only' }));
    await reached.promise;
    expect(quickstart.notice({ question: 'Hi?' })).toContain('(3/4 LoRA fine-tuning (evaluating): 40%, about 30 s left in this stage)');
    expect(quickstart.notice({ question: '你好？' })).toContain('（3/4 LoRA 微调（评估）：40%，本阶段约剩 30 秒）');

    // The line goes after the answer, on its own paragraph; nothing is added once training ended.
    const answerer = withNotice(new ScriptedAnswerer(['You get ', '25 days.']), (r) => quickstart.notice(r));
    const text = async () => {
      let out = '';
      for await (const e of answerer.answer({ question: 'Leave?', history: [], user: { id: 'u', platform: 'web' } as never, channel: 'c' })) if (e.type === 'token') out += e.text;
      return out;
    };
    expect(await text()).toMatch(/^You get 25 days\.\n\n⏳ This bot's own model is being trained \(3\/4/);
    gate.resolve();
    expect((await finished).state).toBe('done');
    expect(await text()).toBe('You get 25 days.');
  });
});
