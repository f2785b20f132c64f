import { LogLevel, type Logger as BoltLogger } from '@slack/bolt';
import type { Logger } from '../../core/index.ts';

/**
 * Bolt and its Web API / Socket Mode clients log through our logger, so their lines land in
 * the same structured log. (Their debug lines already redact tokens.)
 */
export function boltLogger(logger: Logger): BoltLogger {
  let level = LogLevel.INFO;
  let name = 'slack';
  const forward = (write: (obj: object, msg?: string) => void) => (...parts: unknown[]) => {
    const err = parts.find((p) => p instanceof Error);
    const text = parts
      .filter((p) => !(p instanceof Error))
      .map((p) => (typeof p === 'string' ? p : safeJson(p)))
      .join(' ');
    write.call(logger, { component: name, ...(err ? { err } : {}) }, text || (err as Error | undefined)?.message);
  };
  return {
    debug: forward(logger.debug),
    info: forward(logger.info),
    warn: forward(logger.warn),
    error: forward(logger.error),
    setLevel(next) {
      level = next;
    },
    getLevel() {
      return level;
    },
    setName(next) {
      name = next;
    },
  };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
