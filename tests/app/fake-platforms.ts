/**
 * The three platforms played by local servers (FakeSlack, FakeFeishu, FakeWecom) and the
 * configuration that points a runtime at them: what an all-platforms test needs before it starts.
 */
import { randomBytes } from 'node:crypto';
import { FakeFeishu } from '../feishu/fake-feishu.ts';
import { FakeSlack } from '../slack/fake-slack.ts';
import { FakeWecom } from '../wecom/fake-wecom.ts';

export interface PlatformSecrets {
  slackSecret: string;
  feishuKey: string;
  wecom: { corpId: string; agentId: string; secret: string; token: string; encodingAesKey: string };
}

export interface FakePlatforms {
  slack: FakeSlack;
  feishu: FakeFeishu;
  wecom: FakeWecom;
  /** SLACK_*, FEISHU_* and WECOM_* settings for a runtime that talks to these fakes. */
  env: Record<string, string>;
}

export async function startFakePlatforms(s: PlatformSecrets, slackBotToken: string): Promise<FakePlatforms> {
  const slack = await FakeSlack.start();
  const feishu = await FakeFeishu.start(`cli_${randomBytes(8).toString('hex')}`, 'feishu-secret');
  const wecom = await FakeWecom.start(s.wecom.corpId, s.wecom.secret);
  const env = {
    SLACK_BOT_TOKEN: slackBotToken,
    SLACK_SIGNING_SECRET: s.slackSecret,
    SLACK_API_URL: slack.apiUrl,
    FEISHU_APP_ID: feishu.appId,
    FEISHU_APP_SECRET: feishu.appSecret,
    FEISHU_ENCRYPT_KEY: s.feishuKey,
    FEISHU_DOMAIN: feishu.url,
    WECOM_CORP_ID: s.wecom.corpId,
    WECOM_AGENT_ID: s.wecom.agentId,
    WECOM_SECRET: s.wecom.secret,
    WECOM_TOKEN: s.wecom.token,
    WECOM_ENCODING_AES_KEY: s.wecom.encodingAesKey,
    WECOM_API_BASE: wecom.url,
  };
  return { slack, feishu, wecom, env };
}
