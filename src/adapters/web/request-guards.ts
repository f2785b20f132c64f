import type { MiddlewareHandler } from 'hono';

/**
 * For state-changing /api/* requests: the body must be declared JSON, and a browser's `Origin`,
 * when sent, must be this host or an allowed origin. A page on another site can post text/plain
 * or a form without a CORS preflight; insisting on application/json forces one (which we never
 * answer), and the Origin check refuses what gets through anyway. Callers without a browser
 * (curl, services) send no Origin and are unaffected.
 */
export function requireJsonFromAllowedOrigin(allowedOrigins: string[]): MiddlewareHandler {
  const allowed = new Set(allowedOrigins.map((o) => o.replace(/\/+$/, '').toLowerCase()));
  return async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD' || c.req.method === 'OPTIONS') return next();
    const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') return c.json({ error: 'Content-Type must be application/json' }, 415);
    const origin = c.req.header('origin');
    if (origin !== undefined && !sameHost(origin, c.req.header('host')) && !allowed.has(origin.toLowerCase())) {
      return c.json({ error: `requests from origin ${origin} are not allowed (TEAMLLM_ALLOWED_ORIGINS)` }, 403);
    }
    return next();
  };
}

function sameHost(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    return new URL(origin).host.toLowerCase() === host.toLowerCase();
  } catch {
    return false; // "null" (sandboxed frames, file://) and garbage
  }
}
