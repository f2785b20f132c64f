import { randomBytes } from 'node:crypto';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, startServer, type RunningServer, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';
import { FakeFeishu } from '../feishu/fake-feishu.ts';
import { encryptLikeFeishu, messageEvent, signLikeFeishu } from '../feishu/feishu-harness.ts';
import { ScriptedAnswerer, waitFor } from '../helpers.ts';
import { startFakePlatforms } from './fake-platforms.ts';
import { FakeSlack } from '../slack/fake-slack.ts';
import { directMessage, eventCallback, slackSignature, nowSec } from '../slack/harness.ts';
import { FakeWecom } from '../wecom/fake-wecom.ts';
import { encryptedCallback, textMessageXml } from '../wecom/wecom-protocol.ts';

// One process, one HTTP server, three platforms: credentials in the configuration are all it takes.
const SLACK_SECRET = 'all-platforms-signing-secret';
const FEISHU_KEY = 'all-platforms-encrypt-key';
const WECOM = { corpId: 'wwcorp0001', agentId: '1000002', secret: 'wecom-secret', token: 'wecomtoken', encodingAesKey: randomBytes(32).toString('base64').replace(/[^A-Za-z0-9]/g, 'a').slice(0, 43) };

let slack: FakeSlack;
let feishu: FakeFeishu;
let wecom: FakeWecom;
let runtime: Runtime;
let server: RunningServer;

beforeAll(async () => {
  let platformEnv: Record<string, string>;
  ({ slack, feishu, wecom, env: platformEnv } = await startFakePlatforms({ slackSecret: SLACK_SECRET, feishuKey: FEISHU_KEY, wecom: WECOM }, 'xoxb-all-platforms'));
  const home = mkdtempSync(join(tmpdir(), 'teamllm-all-'));
  const env = { TEAMLLM_HOME: home, ...platformEnv };
  const config = loadConfig({ env, cwd: home });
  expect(config.adapters).toEqual(['web', 'slack', 'feishu', 'wecom']);
  runtime = await createRuntime(config, { logger: silentLogger, answerer: new ScriptedAnswerer(), platformAdapters: true, defaultMetrics: false });
  server = await startServer(runtime, 0, '127.0.0.1');
});

afterAll(async () => {
  await server?.close();
  await runtime?.close();
  await Promise.all([slack?.close(), feishu?.close(), wecom?.close()]);
});

describe('teamllm serve with every platform configured', () => {
  it('answers on Slack, Feishu, WeCom and the web through one server and one store', async () => {
    const slackBody = JSON.stringify(eventCallback(directMessage('How many days of leave?')));
    const slackRes = await fetch(`${server.url}/slack/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...slackSignature(slackBody, nowSec(), SLACK_SECRET) },
      body: slackBody,
    });
    expect(slackRes.status).toBe(200);

    const feishuBody = JSON.stringify({ encrypt: encryptLikeFeishu(FEISHU_KEY, JSON.stringify(messageEvent({ text: 'How many days of leave?' }))) });
    const ts = String(nowSec());
    const nonce = randomBytes(8).toString('hex');
    const feishuRes = await fetch(`${server.url}/feishu/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Lark-Request-Timestamp': ts, 'X-Lark-Request-Nonce': nonce, 'X-Lark-Signature': signLikeFeishu(ts, nonce, FEISHU_KEY, feishuBody) },
      body: feishuBody,
    });
    expect(feishuRes.status).toBe(200);

    const callback = encryptedCallback(WECOM, textMessageXml({ corpId: WECOM.corpId, from: 'zhangsan', content: 'How many days of leave?', msgId: '7001', agentId: WECOM.agentId }));
    const wecomRes = await fetch(`${server.url}/wecom/callback?${callback.query}`, { method: 'POST', body: callback.body });
    expect(wecomRes.status).toBe(200);

    const web = await fetch(`${server.url}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'How many days of leave?' }) });
    expect(((await web.json()) as { answer: string }).answer).toBe('You get 25 days of leave.');

    await waitFor(async () => {
      const counts = (runtime.store as SqliteStore).db.prepare('SELECT platform, count(*) AS n FROM answers GROUP BY platform ORDER BY platform').all();
      return JSON.stringify(counts) === JSON.stringify([{ platform: 'feishu', n: 1 }, { platform: 'slack', n: 1 }, { platform: 'web', n: 1 }, { platform: 'wecom', n: 1 }]);
    }, 15_000);
    await waitFor(() => slack.callsTo('chat.update').some((c) => String(c.args.text ?? '').includes('25 days')) && wecom.sent.length > 0 && feishu.cards.length > 0, 15_000);
    expect(wecom.sent.some((m) => JSON.stringify(m.body).includes('25 days'))).toBe(true);
    expect(JSON.stringify(feishu.cards[0]!.states.at(-1))).toContain('25 days');
  });
});
