import { ReceiverMultipleAckError, verifySlackRequest, type App, type Receiver, type ReceiverEvent } from '@slack/bolt';
import { Hono } from 'hono';
import type { Logger } from '../../core/index.ts';
import { limitBody } from '../http/body-limit.ts';

export interface HttpReceiverOptions {
  signingSecret: string;
  logger: Logger;
  /** Where Slack posts events, interactivity and slash commands. */
  path?: string;
  /** Answer Slack by then even if no listener acknowledged: Slack gives up at 3 s and retries. */
  ackTimeoutMs?: number;
  /** The clock (tests move it). */
  now?: () => number;
}

type Outcome = { kind: 'ack'; body: unknown } | { kind: 'done' } | { kind: 'failed'; err: unknown } | { kind: 'timeout' };

const MAX_BODY_BYTES = 1024 * 1024;
/** Slack's own window: requests signed more than 5 minutes away from now are refused. */
const MAX_CLOCK_SKEW_S = 5 * 60;

/**
 * A Bolt receiver living on the shared Hono server: it checks Slack's signature on the raw body
 * with Bolt's own `verifySlackRequest`, answers `url_verification` and `ssl_check`, and hands
 * everything else to `App.processEvent`, answering the HTTP request as soon as a listener acks.
 */
export class HonoReceiver implements Receiver {
  readonly routes = new Hono();
  private app: App | undefined;

  constructor(private readonly options: HttpReceiverOptions) {
    const path = options.path ?? '/slack/events';
    this.routes.post(
      path,
      limitBody(MAX_BODY_BYTES),
      async (c) => {
        const raw = await c.req.text();
        const isForm = (c.req.header('content-type') ?? '').startsWith('application/x-www-form-urlencoded');
        // Slack's certificate check carries no signature and no event: acknowledge and read nothing.
        if (isForm && new URLSearchParams(raw).get('ssl_check') === '1') return c.body(null, 200);

        // Bolt's check refuses only timestamps more than 5 minutes old; one from the future would
        // stay replayable until then, so it is refused too.
        const timestamp = Number(c.req.header('x-slack-request-timestamp'));
        if (Number.isFinite(timestamp) && timestamp - (options.now?.() ?? Date.now()) / 1000 > MAX_CLOCK_SKEW_S) {
          options.logger.warn({ timestamp }, 'refused a Slack request: timestamp in the future');
          return c.json({ error: 'invalid or stale Slack signature' }, 401);
        }
        try {
          verifySlackRequest({
            signingSecret: options.signingSecret,
            body: raw,
            headers: {
              'x-slack-signature': c.req.header('x-slack-signature') ?? '',
              'x-slack-request-timestamp': Number(c.req.header('x-slack-request-timestamp')),
            },
          });
        } catch (err) {
          options.logger.warn({ reason: (err as Error).message }, 'refused a Slack request: bad or stale signature');
          return c.json({ error: 'invalid or stale Slack signature' }, 401);
        }

        let body: unknown;
        try {
          body = isForm ? parseForm(raw) : JSON.parse(raw);
        } catch {
          return c.json({ error: `malformed ${isForm ? 'form' : 'JSON'} body` }, 400);
        }
        if (typeof body !== 'object' || body === null || Array.isArray(body)) return c.json({ error: 'body must be an object' }, 400);
        const payload = body as Record<string, unknown>;
        if (payload.type === 'url_verification') {
          if (typeof payload.challenge !== 'string') return c.json({ error: 'url_verification without a challenge' }, 400);
          return c.json({ challenge: payload.challenge });
        }
        const malformed = malformedPayload(payload);
        if (malformed) return c.json({ error: malformed }, 400);
        if (!this.app) return c.json({ error: 'Slack app not ready' }, 503);

        const retryNum = Number.parseInt(c.req.header('x-slack-retry-num') ?? '', 10);
        const retryReason = c.req.header('x-slack-retry-reason');
        const outcome = await this.dispatch(payload, Number.isNaN(retryNum) ? undefined : retryNum, retryReason);
        switch (outcome.kind) {
          case 'ack':
            if (outcome.body === undefined || outcome.body === '') return c.body(null, 200);
            return typeof outcome.body === 'string' ? c.text(outcome.body) : c.json(outcome.body as object);
          case 'failed':
            return c.json({ error: 'the event could not be processed' }, 500);
          default:
            // Nothing to say (no listener for this payload, or a slow one): a 2xx stops Slack's retries.
            return c.body(null, 200);
        }
      },
    );
  }

  init(app: App): void {
    this.app = app;
  }

  /** The routes are served by the shared server, so there is nothing to start or stop. */
  async start(): Promise<void> {}

  async stop(): Promise<void> {}

  private dispatch(body: Record<string, unknown>, retryNum: number | undefined, retryReason: string | undefined): Promise<Outcome> {
    const { logger } = this.options;
    return new Promise<Outcome>((settle) => {
      let acked = false;
      let answered = false;
      const answer = (outcome: Outcome) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        settle(outcome);
      };
      const timer = setTimeout(() => {
        logger.warn({ type: body.type }, 'no Slack listener acknowledged in time; answering 200');
        answer({ kind: 'timeout' });
      }, this.options.ackTimeoutMs ?? 2500);
      const event: ReceiverEvent = {
        body,
        ...(retryNum !== undefined ? { retryNum } : {}),
        ...(retryReason ? { retryReason } : {}),
        ack: async (response?: unknown) => {
          if (acked) throw new ReceiverMultipleAckError();
          acked = true;
          answer({ kind: 'ack', body: response });
        },
      };
      this.app!.processEvent(event).then(
        () => answer({ kind: 'done' }),
        (err: unknown) => {
          logger.error({ err, type: body.type }, 'Slack event processing failed');
          answer({ kind: 'failed', err });
        },
      );
    });
  }
}

/**
 * Shapes Bolt's routing reads without checking (it throws on them, which would be a 500 and a
 * retry from Slack): a signed body is Slack's, but its fields are still checked before use.
 */
function malformedPayload(payload: Record<string, unknown>): string | undefined {
  const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if ('event' in payload && !(isObject(payload.event) && typeof (payload.event as Record<string, unknown>).type === 'string')) return 'event must be an object with a type';
  if ('actions' in payload && !Array.isArray(payload.actions)) return 'actions must be a list';
  for (const key of ['user', 'channel', 'team', 'container', 'message', 'view'] as const) {
    if (key in payload && payload[key] !== null && typeof payload[key] !== 'string' && !isObject(payload[key])) return `${key} must be an object`;
  }
  return undefined;
}

/** Slash commands arrive as plain form fields; interactivity as a form field `payload` holding JSON. */
function parseForm(raw: string): unknown {
  const form = new URLSearchParams(raw);
  const payload = form.get('payload');
  return payload !== null ? JSON.parse(payload) : Object.fromEntries(form);
}
