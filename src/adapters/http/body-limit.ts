import type { MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';

/** The ceiling for any route that does not set its own: platform callbacks are the largest bodies we take. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/**
 * Refuses a request body over `maxBytes` with 413. Hono's bodyLimit checks Content-Length up
 * front and, for a chunked body, counts the bytes as they stream in and stops reading at the
 * limit, so an oversized body is never buffered whole (the server then drains or drops the rest).
 * The one way every route limits its body.
 */
export function limitBody(maxBytes: number, as: 'json' | 'text' = 'json'): MiddlewareHandler {
  const message = `request body too large (${maxBytes >= 1024 * 1024 ? `${maxBytes / (1024 * 1024)} MB` : `${Math.round(maxBytes / 1024)} KB`} max)`;
  return bodyLimit({ maxSize: maxBytes, onError: (c) => (as === 'json' ? c.json({ error: message }, 413) : c.text(message, 413)) });
}
