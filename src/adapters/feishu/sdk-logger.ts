import type { Logger as SdkLogger } from '@larksuiteoapi/node-sdk';
import type { Logger } from '../../core/index.ts';

/**
 * The SDK logs raw axios errors, whose `config.headers` carry the tenant access token, and the
 * long-connection URL, whose query carries a connection ticket. Everything it says is therefore
 * flattened to short text here before it reaches our logs.
 */
export function sdkLogger(logger: Logger): SdkLogger {
  const log = logger.child({ component: 'feishu-sdk' });
  return {
    // The SDK reports every failed call, including ones we then retry successfully; our own
    // code logs the outcome as an error when it matters.
    error: (...msg) => log.warn({}, describeAll(msg)),
    warn: (...msg) => log.warn({}, describeAll(msg)),
    // "client ready" and friends: not worth an info line per start.
    info: (...msg) => log.debug({}, describeAll(msg)),
    debug: (...msg) => log.debug({}, describeAll(msg)),
    trace: () => {},
  };
}

function describeAll(msg: unknown[]): string {
  return msg
    .flat(3)
    .map(describe)
    .filter((s) => s.length > 0)
    .join(' ');
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return redactUrls(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value !== 'object') return '';
  const v = value as {
    message?: unknown;
    code?: unknown;
    msg?: unknown;
    status?: unknown;
    response?: { status?: unknown; data?: { code?: unknown; msg?: unknown } };
  };
  const parts: string[] = [];
  if (typeof v.message === 'string') parts.push(redactUrls(v.message));
  const status = v.response?.status ?? v.status;
  if (typeof status === 'number') parts.push(`HTTP ${status}`);
  const code = v.response?.data?.code ?? v.code;
  if (code !== undefined && (typeof code === 'number' || typeof code === 'string')) parts.push(`code=${code}`);
  const text = v.response?.data?.msg ?? v.msg;
  if (typeof text === 'string') parts.push(`msg=${redactUrls(text)}`);
  return parts.join(' ');
}

function redactUrls(text: string): string {
  return text.replace(/((?:wss?|https?):\/\/[^\s?]+)\?\S*/g, '$1?[redacted]');
}
