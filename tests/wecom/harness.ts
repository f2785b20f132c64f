import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { createWecomAdapter, type WecomAdapterOptions } from '../../src/adapters/wecom/index.ts';
import type { PlatformAdapter } from '../../src/adapters/platform-adapter.ts';
import { AdminList, Bot, type Logger } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { ScriptedAnswerer } from '../helpers.ts';
import { FakeWecom } from './fake-wecom.ts';
import { encryptedCallback } from './wecom-protocol.ts';

export const SECRETS = {
  corpId: 'ww1a2b3c4d5e6f7a8b',
  agentId: '1000002',
  secret: 'app-secret-never-logged-9f8e7d',
  token: 'callbackTokenQDG6eK',
  // 43 characters, as WeCom generates them.
  encodingAesKey: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C',
};

export function wecomEnv(apiBase: string): Record<string, string> {
  return {
    WECOM_CORP_ID: SECRETS.corpId,
    WECOM_AGENT_ID: SECRETS.agentId,
    WECOM_SECRET: SECRETS.secret,
    WECOM_TOKEN: SECRETS.token,
    WECOM_ENCODING_AES_KEY: SECRETS.encodingAesKey,
    WECOM_API_BASE: apiBase,
  };
}

export interface LogEntry {
  level: string;
  obj: Record<string, unknown>;
  msg?: string;
}

/** A logger that keeps every line, so tests can look for warnings and for leaked secrets. */
export function recordingLogger(entries: LogEntry[] = [], bindings: Record<string, unknown> = {}): Logger & { entries: LogEntry[] } {
  const at = (level: string) => (obj: object, msg?: string) => void entries.push({ level, obj: { ...bindings, ...obj }, ...(msg ? { msg } : {}) });
  return {
    entries,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => recordingLogger(entries, { ...bindings, ...more }),
  };
}

export interface Harness {
  fake: FakeWecom;
  bot: Bot;
  store: SqliteStore;
  answerer: ScriptedAnswerer;
  adapter: PlatformAdapter;
  logger: ReturnType<typeof recordingLogger>;
  url: string;
  /** POSTs a WeCom callback: the inner XML encrypted and signed as WeCom does. */
  post(innerXml: string, overrides?: Parameters<typeof encryptedCallback>[2]): Promise<Response>;
  postRaw(query: string, body: string): Promise<Response>;
  close(): Promise<void>;
}

export async function startHarness(
  options: { answerer?: ScriptedAnswerer; adapter?: WecomAdapterOptions; admins?: string[] } = {},
): Promise<Harness> {
  const fake = await FakeWecom.start(SECRETS.corpId, SECRETS.secret);
  const store = new SqliteStore(':memory:');
  const answerer = options.answerer ?? new ScriptedAnswerer();
  const logger = recordingLogger();
  const bot = new Bot({
    store,
    answerer,
    admins: new AdminList(options.admins ?? ['wecom:UADMIN']),
    streamIntervalMs: 10,
    logger,
  });
  const adapter = await createWecomAdapter(
    {
      bot,
      logger,
      env: wecomEnv(fake.url),
    },
    { retryDelayMs: 5, ...options.adapter },
  );
  const app = new Hono();
  app.route('/', adapter.routes!);
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const postRaw = (query: string, body: string) =>
    fetch(`${url}/wecom/callback?${query}`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body });
  return {
    fake,
    bot,
    store,
    answerer,
    adapter,
    logger,
    url,
    postRaw,
    post: (innerXml, overrides) => {
      const { query, body } = encryptedCallback(SECRETS, innerXml, overrides);
      return postRaw(query, body);
    },
    async close() {
      await adapter.stop?.();
      await bot.close(1000);
      await new Promise<void>((r) => {
        server.close(() => r());
        if ('closeAllConnections' in server) server.closeAllConnections();
      });
      await fake.close();
      await store.close();
    },
  };
}
