import type { Logger } from '../core/index.ts';
import { PgStore } from '../core/pg-store.ts';
import { SqliteStore, storeFile } from '../core/sqlite-store.ts';
import type { Config } from './config.ts';

/**
 * The store of answers, votes, conversations, audit log, jobs and event claims: PostgreSQL when
 * TEAMLLM_DATABASE_URL is set (shared by every process), else SQLite under TEAMLLM_HOME.
 */
export type AppStore = SqliteStore | PgStore;

export interface OpenStoreOptions {
  logger?: Logger;
  /** SQLite only: how long a write waits for a locked database (default 5 s). */
  busyTimeoutMs?: number;
}

export async function openStore(config: Config, options: OpenStoreOptions = {}): Promise<AppStore> {
  const auditRetentionMs = config.auditRetentionDays * 86_400_000;
  if (config.database) {
    const store = await PgStore.open(config.database.url, {
      poolSize: config.database.poolSize,
      auditRetentionMs,
      onPoolError: (err) => options.logger?.warn({ err: err.message }, 'a PostgreSQL connection failed; the next query reconnects'),
    });
    // The location is shown without the password.
    options.logger?.info({ store: store.location, poolSize: config.database.poolSize }, 'using the PostgreSQL store');
    return store;
  }
  return new SqliteStore(storeFile(config.home), {
    auditRetentionMs,
    ...(options.busyTimeoutMs !== undefined ? { busyTimeoutMs: options.busyTimeoutMs } : {}),
  });
}
