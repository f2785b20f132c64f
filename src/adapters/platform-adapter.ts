import type { Hono } from 'hono';
import type { Bot, Logger } from '../core/index.ts';
import type { TrustedProxies } from './http/client-address.ts';

/**
 * What a platform adapter gives the composition root: HTTP routes for the shared server
 * (webhook mode) and/or a connection of its own to start and stop (Socket Mode, long connection).
 */
export interface PlatformAdapter {
  readonly name: 'slack' | 'feishu' | 'wecom';
  /** Mounted at `/` on the one HTTP server (e.g. POST /slack/events). */
  readonly routes?: Hono;
  start?(): Promise<void>;
  stop?(): Promise<void>;
}

export interface AdapterContext {
  bot: Bot;
  logger: Logger;
  /** The adapter's configuration keys as given (SLACK_*, FEISHU_*, WECOM_*), already validated. */
  env: Record<string, string | undefined>;
  /** TEAMLLM_TRUSTED_PROXIES, for logging a refused callback's client address. */
  proxies?: TrustedProxies;
}
