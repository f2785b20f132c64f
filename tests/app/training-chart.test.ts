import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, startServer, type RunningServer, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger, type ReplyImage } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { ChatTrainingService } from '../../src/training/chat-training-service.ts';
import { JobRunner } from '../../src/training/jobs/job-runner.ts';
import { FakeFeishu } from '../feishu/fake-feishu.ts';
import { cardText, encryptLikeFeishu, messageEvent, signLikeFeishu } from '../feishu/feishu-harness.ts';
import { RecordingTarget, waitFor } from '../helpers.ts';
import { FakeWecom } from '../wecom/fake-wecom.ts';
import { encryptedCallback, textMessageXml } from '../wecom/wecom-protocol.ts';

// The loss curves of a finished job: uploaded where the reply target can take images (Feishu:
// im/v1/images, then an image message in the thread), else a link to the admin page.
const STAGE = new URL('../training/fixtures/counting-stage.ts', import.meta.url).href;
const ADMIN = 'ou_admin_chart';
const KEY = 'training-chart-encrypt-key';

describe('loss curves in Feishu', () => {
  let feishu: FakeFeishu;
  let runtime: Runtime;
  let server: RunningServer;

  beforeAll(async () => {
    feishu = await FakeFeishu.start(`cli_${randomBytes(8).toString('hex')}`, 'feishu-chart-secret');
    const home = mkdtempSync(join(tmpdir(), 'teamllm-chart-'));
    const env = { TEAMLLM_HOME: home, TEAMLLM_ADMINS: `feishu:${ADMIN}`, FEISHU_APP_ID: feishu.appId, FEISHU_APP_SECRET: feishu.appSecret, FEISHU_ENCRYPT_KEY: KEY, FEISHU_DOMAIN: feishu.url };
    runtime = await createRuntime(loadConfig({ env, cwd: home }), { logger: silentLogger, platformAdapters: true, startJobs: true, defaultMetrics: false, stages: { count: STAGE } });
    server = await startServer(runtime, 0, '127.0.0.1');
  });

  afterAll(async () => {
    await server?.close();
    await runtime?.close();
    await feishu?.close();
  });

  it('uploads the chart and replies with an image message in the job thread', async () => {
    const event = messageEvent({ text: '/train count steps=4 delayMs=5 chart=true', sender: ADMIN, chatType: 'p2p' });
    const questionId = (event.event as { message: { message_id: string } }).message.message_id;
    const body = JSON.stringify({ encrypt: encryptLikeFeishu(KEY, JSON.stringify(event)) });
    const ts = String(Math.floor(Date.now() / 1000));
    const nonce = randomBytes(8).toString('hex');
    const res = await fetch(`${server.url}/feishu/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Lark-Request-Timestamp': ts, 'X-Lark-Request-Nonce': nonce, 'X-Lark-Signature': signLikeFeishu(ts, nonce, KEY, body) },
      body,
    });
    expect(res.status).toBe(200);
    await waitFor(() => feishu.images.some((i) => i.repliedTo.length > 0), 15_000);
    const [image] = feishu.images;
    expect(image!.bytes.subarray(1, 4).toString()).toBe('PNG');
    expect(image!.repliedTo).toEqual([{ questionId, messageId: expect.any(String), replyInThread: false }]);
    // The job's card, edited to its end; no link needed where the image went up.
    const card = feishu.cards.filter((c) => c.questionId === questionId).find((c) => cardText(c.states.at(-1)).includes('Job #1 count'))!;
    const final = cardText(card.states.at(-1));
    expect(final).toMatch(/— succeeded/);
    expect(final).not.toMatch(/Loss curves:/);
  });
});

describe('loss curves in WeCom', () => {
  const WECOM = { corpId: 'wwchart0001', agentId: '1000003', secret: 'wecom-chart-secret', token: 'wecomcharttoken', encodingAesKey: randomBytes(32).toString('base64').replace(/[^A-Za-z0-9]/g, 'a').slice(0, 43) };
  let wecom: FakeWecom;
  let runtime: Runtime;
  let server: RunningServer;

  beforeAll(async () => {
    wecom = await FakeWecom.start(WECOM.corpId, WECOM.secret);
    const home = mkdtempSync(join(tmpdir(), 'teamllm-chart-wecom-'));
    const env = {
      TEAMLLM_HOME: home,
      TEAMLLM_ADMINS: 'wecom:lisi',
      WECOM_CORP_ID: WECOM.corpId,
      WECOM_AGENT_ID: WECOM.agentId,
      WECOM_SECRET: WECOM.secret,
      WECOM_TOKEN: WECOM.token,
      WECOM_ENCODING_AES_KEY: WECOM.encodingAesKey,
      WECOM_API_BASE: wecom.url,
    };
    runtime = await createRuntime(loadConfig({ env, cwd: home }), { logger: silentLogger, platformAdapters: true, startJobs: true, defaultMetrics: false, stages: { count: STAGE } });
    server = await startServer(runtime, 0, '127.0.0.1');
  });

  afterAll(async () => {
    await server?.close();
    await runtime?.close();
    await wecom?.close();
  });

  it('uploads the chart as temporary media and sends it as an image message after the job result', async () => {
    const callback = encryptedCallback(WECOM, textMessageXml({ corpId: WECOM.corpId, from: 'lisi', content: '/train count steps=3 delayMs=5 chart=true', msgId: '8001', agentId: WECOM.agentId }));
    expect((await fetch(`${server.url}/wecom/callback?${callback.query}`, { method: 'POST', body: callback.body })).status).toBe(200);
    await waitFor(() => wecom.sent.some((m) => m.body.msgtype === 'image'), 15_000);
    expect(wecom.media).toHaveLength(1);
    expect(wecom.media[0]).toMatchObject({ type: 'image', filename: 'job-1-count-loss.png' });
    expect(wecom.media[0]!.bytes.subarray(1, 4).toString()).toBe('PNG');
    const toLisi = wecom.sent.filter((m) => m.body.touser === 'lisi');
    const image = toLisi.findIndex((m) => m.body.msgtype === 'image');
    expect(toLisi[image]!.body.image).toEqual({ media_id: wecom.media[0]!.mediaId });
    // The job's result came first (WeCom cannot edit messages: only final texts are sent), without a link.
    const jobMessages = toLisi.slice(0, image).map((m) => m.body.text?.content ?? m.body.markdown?.content ?? '').filter((t) => /Job #1 count/.test(t));
    // Progress edits are not sent where messages cannot be edited: the job's first message and its result only.
    expect(jobMessages).toHaveLength(2);
    const result = jobMessages.at(-1)!;
    expect(result).toMatch(/— succeeded/);
    expect(result).not.toMatch(/Loss curves:/);
  });
});

describe('loss curves where the target cannot take images', () => {
  const setup = (publicUrl?: string) => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-chart-link-'));
    const store = new SqliteStore(join(home, 'teamllm.db'));
    const runner = new JobRunner({ store, home, stages: { count: STAGE }, logger: silentLogger, persistEveryMs: 0 });
    const service = new ChatTrainingService(runner, store, silentLogger, { updateEveryMs: 10, ...(publicUrl ? { publicUrl } : {}) });
    return { runner, service };
  };
  const finalText = async (service: ChatTrainingService, runner: JobRunner, target: RecordingTarget) => {
    await runner.init();
    await service.start('count', { steps: '3', delayMs: '5', chart: 'true' }, { id: 'slack:UADMIN', isAdmin: true }, target);
    await runner.idle();
    await waitFor(() => target.events.some((e) => /— succeeded/.test(e.content.text)));
    await waitFor(() => /Loss curves/.test(target.last?.text ?? ''));
    return target.last!.text;
  };

  it('links to the chart on the admin page at TEAMLLM_PUBLIC_URL', async () => {
    const { runner, service } = setup('https://teamllm.example.com');
    const text = await finalText(service, runner, new RecordingTarget());
    expect(text).toContain('Loss curves: https://teamllm.example.com/admin/jobs/1/loss.png (admin page: https://teamllm.example.com/admin)');
  });

  it('posts the link when an upload fails', async () => {
    const { runner, service } = setup('https://teamllm.example.com');
    const target = Object.assign(new RecordingTarget(), {
      uploadImage: async (_image: ReplyImage) => {
        throw new Error('missing_scope: files:write');
      },
    });
    const text = await finalText(service, runner, target);
    expect(target.posts.at(-1)!.text).toBe(text);
    expect(text).toMatch(/^Loss curves: https:\/\/teamllm\.example\.com\/admin\/jobs\/1\/loss\.png/);
  });
});
