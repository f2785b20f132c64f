import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import type { Logger } from '../../src/core/index.ts';
import type { PlatformAdapter } from '../../src/adapters/platform-adapter.ts';
import { createSlackAdapter, type SlackAdapterOptions } from '../../src/adapters/slack/index.ts';
import { makeBot, ScriptedAnswerer } from '../helpers.ts';
import { FakeSlack } from './fake-slack.ts';

export const SIGNING_SECRET = 'test-signing-secret-8f2a';
export const BOT_TOKEN = 'xoxb-test-token';
export const APP_TOKEN = 'xapp-test-token';

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

/** A logger that keeps every line, so tests can assert what was logged (and what was not). */
export function recordingLogger(entries: LogEntry[] = []): Logger & { entries: LogEntry[] } {
  const make = (bindings: Record<string, unknown>): Logger & { entries: LogEntry[] } => {
    const write = (level: LogEntry['level']) => (obj: object, msg?: string) => void entries.push({ level, obj: { ...bindings, ...obj }, msg });
    return { entries, debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error'), child: (more) => make({ ...bindings, ...more }) };
  };
  return make({});
}

/** Signs a body exactly as Slack does: v0=hex(HMAC-SHA256(secret, "v0:" + ts + ":" + body)). */
export function slackSignature(body: string, timestamp: number, secret = SIGNING_SECRET): Record<string, string> {
  const signature = `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
  return { 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': signature };
}

export const nowSec = () => Math.floor(Date.now() / 1000);

export interface Harness {
  slack: FakeSlack;
  adapter: PlatformAdapter;
  bot: ReturnType<typeof makeBot>['bot'];
  store: ReturnType<typeof makeBot>['store'];
  answerer: ScriptedAnswerer;
  logger: ReturnType<typeof recordingLogger>;
  /** Base URL of the teamllm HTTP server (HTTP mode only). */
  url: string;
  /** POSTs a signed JSON body to /slack/events. */
  postEvent(payload: unknown, headers?: Record<string, string>): Promise<Response>;
  /** POSTs a signed form body (slash commands, interactivity) to /slack/events. */
  postForm(fields: Record<string, string>, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

export async function startHarness(options: { socketMode?: boolean; adapter?: SlackAdapterOptions } = {}): Promise<Harness> {
  const slack = await FakeSlack.start();
  const answerer = new ScriptedAnswerer();
  const logger = recordingLogger();
  const { bot, store } = makeBot({ answerer, logger, streamIntervalMs: 10, rateLimit: { perMinute: 1000, burst: 1000 } });
  const adapter = await createSlackAdapter(
    {
      bot,
      logger,
      env: {
        SLACK_BOT_TOKEN: BOT_TOKEN,
        SLACK_SIGNING_SECRET: SIGNING_SECRET,
        SLACK_API_URL: slack.apiUrl,
        ...(options.socketMode ? { SLACK_APP_TOKEN: APP_TOKEN } : {}),
      },
    },
    { streamIntervalMs: 50, retryConfig: { retries: 2, factor: 1, minTimeout: 10, maxTimeout: 20 }, ...options.adapter },
  );
  let server: ServerType | undefined;
  let url = '';
  if (adapter.routes) {
    const http = new Hono();
    http.route('/', adapter.routes);
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: http.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  const post = (body: string, contentType: string, headers: Record<string, string>) =>
    fetch(`${url}/slack/events`, { method: 'POST', headers: { 'content-type': contentType, ...slackSignature(body, nowSec()), ...headers }, body });
  return {
    slack,
    adapter,
    bot,
    store,
    answerer,
    logger,
    url,
    postEvent: (payload, headers = {}) => post(typeof payload === 'string' ? payload : JSON.stringify(payload), 'application/json', headers),
    postForm: (fields, headers = {}) => post(new URLSearchParams(fields).toString(), 'application/x-www-form-urlencoded', headers),
    async close() {
      await adapter.stop?.();
      await bot.close(1000);
      if (server) {
        const s = server;
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
      await slack.close();
      await store.close();
    },
  };
}

let eventCounter = 0;
let tsCounter = 0;

/** A fresh message ts, as Slack writes them. */
export function nextTs(): string {
  return `1710000000.${String(++tsCounter).padStart(6, '0')}`;
}

/** An Events API envelope as Slack delivers it (https://api.slack.com/apis/events-api#callback-field). */
export function eventCallback(event: Record<string, unknown>, eventId = `Ev${Date.now()}${++eventCounter}`): Record<string, unknown> {
  return {
    token: 'legacy-verification-token',
    team_id: 'T1',
    api_app_id: 'A1',
    event: { event_ts: event.ts ?? nextTs(), ...event },
    type: 'event_callback',
    event_id: eventId,
    event_time: nowSec(),
    authorizations: [{ enterprise_id: null, team_id: 'T1', user_id: 'UBOT', is_bot: true, is_enterprise_install: false }],
    is_ext_shared_channel: false,
    event_context: `4-${eventId}`,
  };
}

export function appMention(text: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'app_mention', user: 'U1', text, ts: nextTs(), channel: 'C1', team: 'T1', ...extra };
}

export function directMessage(text: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'message', user: 'U1', text, ts: nextTs(), channel: 'D1', channel_type: 'im', team: 'T1', ...extra };
}

export function channelMessage(text: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'message', user: 'U1', text, ts: nextTs(), channel: 'C1', channel_type: 'channel', team: 'T1', ...extra };
}

/** A slash command's form fields (https://api.slack.com/interactivity/slash-commands#app_command_handling). */
export function slashCommand(slack: FakeSlack, command: string, text: string, userId: string): Record<string, string> {
  const trigger = `trig.${++eventCounter}`;
  return {
    token: 'legacy-verification-token',
    team_id: 'T1',
    team_domain: 'acme',
    channel_id: 'C1',
    channel_name: 'general',
    user_id: userId,
    user_name: userId.toLowerCase(),
    command,
    text,
    api_app_id: 'A1',
    is_enterprise_install: 'false',
    response_url: slack.responseUrl(trigger),
    trigger_id: trigger,
  };
}

/** A block_actions payload for a click on one of the buttons under a posted answer (👍, 👎, another answer). */
export function voteClick(
  slack: FakeSlack,
  input: { actionId: string; answerId: string; userId: string; channel: string; message: { ts: string; text: string; blocks: unknown[]; thread_ts?: string }; blockId?: string; value?: string },
): Record<string, unknown> {
  const trigger = `trig.${++eventCounter}`;
  return {
    type: 'block_actions',
    user: { id: input.userId, username: input.userId.toLowerCase(), name: input.userId.toLowerCase(), team_id: 'T1' },
    api_app_id: 'A1',
    token: 'legacy-verification-token',
    container: { type: 'message', message_ts: input.message.ts, channel_id: input.channel, is_ephemeral: false },
    trigger_id: trigger,
    team: { id: 'T1', domain: 'acme' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: input.channel, name: 'general' },
    message: { type: 'message', user: 'UBOT', bot_id: 'BBOT', ts: input.message.ts, ...(input.message.thread_ts ? { thread_ts: input.message.thread_ts } : {}), text: input.message.text, blocks: input.message.blocks },
    state: { values: {} },
    response_url: slack.responseUrl(trigger),
    actions: [
      {
        action_id: input.actionId,
        block_id: input.blockId ?? 'teamllm_votes',
        text: { type: 'plain_text', text: '👍', emoji: true },
        value: input.value ?? input.answerId,
        type: 'button',
        action_ts: `${nowSec()}.000100`,
      },
    ],
  };
}
