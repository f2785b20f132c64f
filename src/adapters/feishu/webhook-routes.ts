import type { CardActionHandler, EventDispatcher } from '@larksuiteoapi/node-sdk';
import { Hono } from 'hono';
import type { Logger } from '../../core/index.ts';
import { limitBody } from '../http/body-limit.ts';
import { MalformedEventError } from './incoming-messages.ts';
import { isLegacyCardAction, type FeishuRequestVerifier } from './request-verifier.ts';

export const FEISHU_EVENTS_PATH = '/feishu/events';

export interface WebhookDeps {
  verifier: FeishuRequestVerifier;
  events: EventDispatcher;
  legacyCards: CardActionHandler;
  logger: Logger;
}

/**
 * POST /feishu/events: the event subscription URL and the card callback URL in one. Requests are
 * verified here on their raw bytes, then handed, decrypted, to the SDK's dispatchers. Handlers
 * only validate and start work, so Feishu gets its answer well within its 3 s.
 */
export function feishuRoutes(deps: WebhookDeps): Hono {
  const { verifier, events, legacyCards, logger } = deps;
  const app = new Hono();

  app.post(
    FEISHU_EVENTS_PATH,
    limitBody(1024 * 1024),
    async (c) => {
      const raw = await c.req.text();
      const verified = verifier.verify(raw, (name) => c.req.header(name));
      if (!verified.ok) {
        logger.warn({ status: verified.status, reason: verified.error }, 'Feishu callback refused');
        return c.json({ error: verified.error }, verified.status);
      }
      const payload = verified.payload;
      if (payload.type === 'url_verification') return c.json({ challenge: payload.challenge });

      try {
        if (isLegacyCardAction(payload)) {
          // The handler reads the signature headers off the prototype, as the SDK's adapters arrange.
          const data = Object.assign(Object.create({ headers: {} }) as object, payload);
          return c.json(((await legacyCards.invoke(data)) as object | undefined) ?? {});
        }
        const result: unknown = await events.invoke(payload, { needCheck: false });
        // Unknown event types come back as a "no handle" string: still a 200, or Feishu retries for hours.
        return c.json(typeof result === 'object' && result !== null ? result : {});
      } catch (err) {
        if (err instanceof MalformedEventError) {
          logger.warn({ reason: err.message }, 'malformed Feishu event refused');
          return c.json({ error: err.message }, 400);
        }
        throw err;
      }
    },
  );
  return app;
}
