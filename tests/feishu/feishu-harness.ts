import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { AdminList, Bot, type Logger } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import type { PlatformAdapter } from '../../src/adapters/platform-adapter.ts';
import { createFeishuAdapter, type FeishuAdapterOptions } from '../../src/adapters/feishu/index.ts';
import { ScriptedAnswerer } from '../helpers.ts';
import { FakeFeishu } from './fake-feishu.ts';

export const VERIFICATION_TOKEN = 'vt-test-7f3c9a';
export const ENCRYPT_KEY = 'ek-test-4b2d8e1f';
export const ADMIN = 'ou_admin_0001';
export const USER = 'ou_user_0001';
export const TENANT = 'tenant_0001';

/** Feishu's encryption of pushed events: AES-256-CBC, key sha256(encrypt key), random IV prepended, base64. */
export function encryptLikeFeishu(encryptKey: string, plaintext: string): string {
  const key = createHash('sha256').update(encryptKey).digest();
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  return Buffer.concat([iv, cipher.update(plaintext, 'utf8'), cipher.final()]).toString('base64');
}

/** X-Lark-Signature: sha256_hex(timestamp + nonce + encryptKey + raw body). */
export function signLikeFeishu(timestamp: string, nonce: string, encryptKey: string, body: string): string {
  return createHash('sha256').update(timestamp + nonce + encryptKey + body).digest('hex');
}

export function newAppId(): string {
  return `cli_${randomBytes(8).toString('hex')}`;
}

/** A logger that keeps every line, to check that nothing secret is ever written. */
export class RecordingLogger implements Logger {
  readonly lines: string[] = [];
  debug(obj: object, msg?: string) {
    this.push('debug', obj, msg);
  }
  info(obj: object, msg?: string) {
    this.push('info', obj, msg);
  }
  warn(obj: object, msg?: string) {
    this.push('warn', obj, msg);
  }
  error(obj: object, msg?: string) {
    this.push('error', obj, msg);
  }
  child(): Logger {
    return this;
  }
  private push(level: string, obj: object, msg?: string) {
    const err = (obj as { err?: unknown }).err;
    // What pino's error serializer would print: own enumerable properties, message and stack.
    const errText = err instanceof Error ? JSON.stringify({ ...err, message: err.message, stack: err.stack }) : '';
    this.lines.push(`${level} ${msg ?? ''} ${safeJson(obj)} ${errText}`);
  }
}

function safeJson(obj: object): string {
  try {
    return JSON.stringify(obj);
  } catch {
    return '[unserialisable]';
  }
}

export interface DeliverOptions {
  encrypt?: boolean;
  /** true: sign correctly; 'bad': sign with the wrong key; false: no signature headers. */
  sign?: boolean | 'bad';
}

export interface Harness {
  fake: FakeFeishu;
  bot: Bot;
  store: SqliteStore;
  answerer: ScriptedAnswerer;
  adapter: PlatformAdapter;
  logger: RecordingLogger;
  appId: string;
  url: string;
  deliver(payload: object, options?: DeliverOptions): Promise<{ status: number; body: Record<string, unknown> }>;
  postRaw(body: string, headers?: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  env?: Record<string, string | undefined>;
  answerer?: ScriptedAnswerer;
  adapter?: FeishuAdapterOptions;
}

/** The adapter mounted on a local HTTP server, talking to a fake Feishu. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const appId = newAppId();
  const appSecret = `secret-${randomBytes(6).toString('hex')}`;
  const fake = await FakeFeishu.start(appId, appSecret);
  const store = new SqliteStore(':memory:');
  const answerer = options.answerer ?? new ScriptedAnswerer();
  const logger = new RecordingLogger();
  const bot = new Bot({ store, answerer, admins: new AdminList([`feishu:${ADMIN}`]), streamIntervalMs: 10, logger });
  const env = {
    FEISHU_APP_ID: appId,
    FEISHU_APP_SECRET: appSecret,
    FEISHU_VERIFICATION_TOKEN: VERIFICATION_TOKEN,
    FEISHU_ENCRYPT_KEY: ENCRYPT_KEY,
    FEISHU_DOMAIN: fake.url,
    FEISHU_MODE: 'webhook',
    ...options.env,
  };
  const adapter = await createFeishuAdapter(
    { bot, logger, env },
    { streamIntervalMs: 10, retry: { attempts: 3, baseDelayMs: 20, timeoutMs: 2000 }, ...options.adapter },
  );
  const app = new Hono();
  if (adapter.routes) app.route('/', adapter.routes);
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const encryptKey = env.FEISHU_ENCRYPT_KEY;

  const postRaw = async (body: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}/feishu/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  };

  return {
    fake,
    bot,
    store,
    answerer,
    adapter,
    logger,
    appId,
    url,
    postRaw,
    async deliver(payload, opts = {}) {
      const plain = JSON.stringify(payload);
      const encrypt = opts.encrypt ?? Boolean(encryptKey);
      const body = encrypt ? JSON.stringify({ encrypt: encryptLikeFeishu(encryptKey!, plain) }) : plain;
      const headers: Record<string, string> = {};
      const sign = opts.sign ?? Boolean(encryptKey);
      if (sign) {
        const timestamp = String(Math.floor(Date.now() / 1000));
        const nonce = randomBytes(8).toString('hex');
        headers['X-Lark-Request-Timestamp'] = timestamp;
        headers['X-Lark-Request-Nonce'] = nonce;
        headers['X-Lark-Signature'] = signLikeFeishu(timestamp, nonce, sign === 'bad' ? 'not-the-key' : (encryptKey ?? ''), body);
      }
      return postRaw(body, headers);
    },
    async close() {
      await adapter.stop?.();
      await bot.close(2000);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fake.close();
      await store.close();
    },
  };
}

let seq = 0;
const next = () => `${Date.now().toString(36)}${(++seq).toString(36)}`;

export interface MessageEventInput {
  eventId?: string;
  messageId?: string;
  chatType?: 'p2p' | 'group';
  chatId?: string;
  sender?: string;
  messageType?: string;
  /** The message content object (stringified into `content`). */
  content?: Record<string, unknown>;
  text?: string;
  mentions?: { key: string; openId: string; name: string }[];
  rootId?: string;
  parentId?: string;
  threadId?: string;
  token?: string;
}

/** im.message.receive_v1, schema 2.0, shaped as in Feishu's event docs. */
export function messageEvent(input: MessageEventInput = {}): Record<string, unknown> {
  const messageId = input.messageId ?? `om_${next()}`;
  const now = String(Date.now());
  return {
    schema: '2.0',
    header: {
      event_id: input.eventId ?? `ev_${next()}`,
      token: input.token ?? VERIFICATION_TOKEN,
      create_time: now,
      event_type: 'im.message.receive_v1',
      tenant_key: TENANT,
      app_id: 'cli_placeholder',
    },
    event: {
      sender: {
        sender_id: { union_id: 'on_union_1', user_id: 'u_1', open_id: input.sender ?? USER },
        sender_type: 'user',
        tenant_key: TENANT,
      },
      message: {
        message_id: messageId,
        ...(input.rootId ? { root_id: input.rootId } : {}),
        ...(input.parentId ?? input.rootId ? { parent_id: input.parentId ?? input.rootId } : {}),
        create_time: now,
        update_time: now,
        chat_id: input.chatId ?? (input.chatType === 'group' ? 'oc_group_1' : 'oc_p2p_1'),
        ...(input.threadId ? { thread_id: input.threadId } : {}),
        chat_type: input.chatType ?? 'p2p',
        message_type: input.messageType ?? 'text',
        content: JSON.stringify(input.content ?? { text: input.text ?? 'How many days of leave do I get?' }),
        mentions: (input.mentions ?? []).map((m) => ({
          key: m.key,
          id: { union_id: `on_${m.openId}`, user_id: '', open_id: m.openId },
          name: m.name,
          tenant_key: TENANT,
        })),
        user_agent: 'Mozilla/5.0',
      },
    },
  };
}

/** im.message.reaction.created_v1 / deleted_v1. */
export function reactionEvent(messageId: string, emoji: string, user = USER, created = true): Record<string, unknown> {
  return {
    schema: '2.0',
    header: {
      event_id: `ev_${next()}`,
      token: VERIFICATION_TOKEN,
      create_time: String(Date.now()),
      event_type: created ? 'im.message.reaction.created_v1' : 'im.message.reaction.deleted_v1',
      tenant_key: TENANT,
      app_id: 'cli_placeholder',
    },
    event: {
      message_id: messageId,
      reaction_type: { emoji_type: emoji },
      operator_type: 'user',
      user_id: { open_id: user, union_id: 'on_union_1', user_id: null },
      action_time: String(Date.now()),
    },
  };
}

/** card.action.trigger (the current card callback), as in Feishu's card callback docs. */
export function cardActionEvent(messageId: string, value: unknown, user = USER, chatId = 'oc_p2p_1', eventId = `ev_${next()}`): Record<string, unknown> {
  return {
    schema: '2.0',
    header: {
      event_id: eventId,
      token: VERIFICATION_TOKEN,
      create_time: String(Date.now() * 1000),
      event_type: 'card.action.trigger',
      tenant_key: TENANT,
      app_id: 'cli_placeholder',
    },
    event: {
      operator: { tenant_key: TENANT, user_id: 'u_1', open_id: user, union_id: 'on_union_1' },
      token: 'c-card-update-token',
      action: { value, tag: 'button' },
      host: 'im_message',
      context: { open_message_id: messageId, open_chat_id: chatId },
    },
  };
}

/** Elements of a card, whatever its phase. */
export function elements(card: Record<string, unknown> | undefined): Record<string, unknown>[] {
  return ((card?.elements as Record<string, unknown>[] | undefined) ?? []);
}

export function cardText(card: Record<string, unknown> | undefined): string {
  return JSON.stringify(card ?? {});
}

export function voteButtons(card: Record<string, unknown> | undefined): Record<string, unknown>[] {
  const action = elements(card).find((e) => e.tag === 'action');
  return (action?.actions as Record<string, unknown>[] | undefined) ?? [];
}

/** The "↻ Another answer" button of a final card (the third, after 👍 and 👎). */
export function anotherAnswerButton(card: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  return voteButtons(card).find((b) => (b.value as { action?: string } | undefined)?.action === 'teamllm_another_answer');
}

/** "Is the answer in one of these sections?": the section buttons of a "don't know" card. */
export function sectionButtons(card: Record<string, unknown> | undefined): Record<string, unknown>[] {
  return elements(card)
    .filter((e) => e.tag === 'action')
    .flatMap((e) => (e.actions as Record<string, unknown>[] | undefined) ?? [])
    .filter((b) => (b.value as { action?: string } | undefined)?.action === 'teamllm_from_section');
}

/** A final answer card: 👍, 👎 and "↻ Another answer". */
export function isFinal(card: Record<string, unknown> | undefined): boolean {
  return voteButtons(card).length === 3;
}
