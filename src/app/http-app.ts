import { Hono } from 'hono';
import { routePath } from 'hono/route';
import { isStoreBusy, type Logger, type ModelInfo } from '../core/index.ts';
import type { Metrics } from './metrics.ts';
import { DEFAULT_MAX_BODY_BYTES, limitBody } from '../adapters/http/body-limit.ts';

export interface HttpAppOptions {
  logger: Logger;
  metrics: Metrics;
  serving: () => ModelInfo;
  /** Routes each enabled adapter contributes, mounted at `/`. */
  routes: Hono[];
  /** More fields for /healthz (e.g. the first start's training progress). */
  health?: () => Record<string, unknown>;
}

/** The one HTTP server: adapters' routes plus /healthz and /metrics. */
export function createHttpApp(options: HttpAppOptions): Hono {
  const { logger, metrics } = options;
  const started = Date.now();
  const app = new Hono();

  app.use(async (c, next) => {
    await next();
    // The matched route pattern, not the raw path: unknown paths must not explode label cardinality.
    const route = c.res.status === 404 ? 'unmatched' : routePath(c);
    metrics.httpRequests.inc({ method: c.req.method, route, status: String(c.res.status) });
  });

  // A ceiling for every route, before any handler reads a byte; routes set tighter limits of their own.
  app.use(limitBody(DEFAULT_MAX_BODY_BYTES));

  // Always 200 while the process answers (load balancers keep sending traffic): a degraded part
  // (the vector store down, the promoted model refused) shows as status "degraded" plus details.
  app.get('/healthz', (c) =>
    c.json({ status: 'ok', uptimeSeconds: Math.round((Date.now() - started) / 1000), model: options.serving(), ...options.health?.() }),
  );
  app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));

  for (const routes of options.routes) app.route('/', routes);

  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => {
    if (isStoreBusy(err)) {
      // Another process holds the database past the busy timeout: this request fails, clearly; the server goes on.
      logger.error({ err, path: c.req.path }, 'the database stayed locked past its busy timeout');
      return c.json({ error: 'the database is locked by another process (still busy after its timeout); try again in a moment' }, 503);
    }
    logger.error({ err, path: c.req.path }, 'request failed');
    return c.json({ error: 'internal error' }, 500);
  });
  return app;
}
