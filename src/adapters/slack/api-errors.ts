/**
 * What went wrong in a Slack Web API call, in a form fit for logs: the SDK's error code, Slack's
 * own error string (`channel_not_found`, `msg_too_long`...), the HTTP status or Retry-After.
 * Read by shape rather than `instanceof`, so errors from any copy of the SDK are understood.
 */
export interface SlackApiFailure {
  code: string;
  slackError?: string;
  status?: number;
  retryAfterSec?: number;
  message: string;
}

export function describeSlackError(err: unknown): SlackApiFailure {
  if (!(err instanceof Error)) return { code: 'unknown', message: String(err) };
  const e = err as Error & { code?: unknown; data?: { error?: unknown }; statusCode?: unknown; retryAfter?: unknown };
  return {
    code: typeof e.code === 'string' ? e.code : err.name,
    ...(typeof e.data?.error === 'string' ? { slackError: e.data.error } : {}),
    ...(typeof e.statusCode === 'number' ? { status: e.statusCode } : {}),
    ...(typeof e.retryAfter === 'number' ? { retryAfterSec: e.retryAfter } : {}),
    message: err.message,
  };
}

/** Slack's error string for a platform error (`{ok:false, error}`), else undefined. */
export function slackErrorOf(err: unknown): string | undefined {
  return describeSlackError(err).slackError;
}

/** Errors that mean "this rendering is too big for Slack", which a shorter one can fix. */
export const TOO_LONG_ERRORS = new Set(['msg_too_long', 'msg_blocks_too_long', 'invalid_blocks']);
