import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { Bot, HandleResult, IncomingMessage, Logger, ReplyContent } from '../../core/index.ts';
import { WebReplyChannel } from './reply-channel.ts';
import { CHAT_PAGE } from './chat-page.ts';
import { limitBody } from '../http/body-limit.ts';
import { TrustedProxies } from '../http/client-address.ts';
import { WebSessions } from './web-session.ts';
import { requireJsonFromAllowedOrigin } from './request-guards.ts';

export interface WebAdapterOptions {
  bot: Bot;
  logger: Logger;
  /** Bearer token that makes a caller the `web:admin` user. */
  adminToken?: string;
  /** Signs anonymous session cookies (the runtime keeps one per data folder). */
  sessionSecret: string;
  /** TEAMLLM_SERVICE_TOKENS: name -> bearer token of a service that may name the user it asks for. */
  serviceTokens?: Record<string, string>;
  /** TEAMLLM_TRUSTED_PROXIES: the only peers whose X-Forwarded-For and user header are believed. */
  proxies?: TrustedProxies;
  /** TEAMLLM_AUTH_USER_HEADER: the header an authenticating proxy sets (e.g. x-auth-request-email). */
  authUserHeader?: string;
  /** TEAMLLM_ALLOWED_ORIGINS: other origins whose pages may post to /api/* (same host always may). */
  allowedOrigins?: string[];
}

const MAX_QUESTION_CHARS = 4000;
const ID = z.string().regex(/^[\w.:@-]{1,128}$/, 'letters, digits and . : @ _ - only, at most 128');

const ChatBody = z
  .object({
    text: z.string().trim().min(1, 'must not be empty').max(MAX_QUESTION_CHARS, `at most ${MAX_QUESTION_CHARS} characters`).optional(),
    /** "Another answer": the id of an answer given in this conversation; its question is asked again. */
    regenerate: z.string().min(1).max(128).optional(),
    /** "Answer from this section": an answer given in this conversation and a section it named (`near` or `sources`). */
    fromSection: z.object({ answer: z.string().min(1).max(128), source: z.string().min(1).max(1000), title: z.string().max(1000) }).strict().optional(),
    user: ID.optional(),
    conversation: ID.optional(),
    /** Client-chosen id: a retried POST with the same id is not answered twice. */
    messageId: ID.optional(),
  })
  .refine((b) => [b.text, b.regenerate, b.fromSection].filter((x) => x !== undefined).length === 1, {
    message: 'give one of text (a question), regenerate (an answer id) or fromSection ({answer, source, title})',
    path: ['text'],
  });

const FeedbackBody = z.object({
  answerId: z.string().min(1).max(128),
  value: z.union([z.literal(1), z.literal(-1), z.literal(0)]),
  comment: z.string().max(2000).optional(),
  user: ID.optional(),
});

/**
 * Who is asking. `kind` says what vouches for the id: the admin token, a service token (which may
 * name the user it asks for), the authenticating proxy (single sign-on), or only our own cookie.
 */
export type Identity = { id: string; admin: boolean; kind: 'admin' | 'service' | 'sso' | 'anonymous'; rateLimitKey?: string };

const SSO_USER = /^[\w.+@-]{1,254}$/;

export const WEB_ADMIN_ID = 'admin';

/**
 * The web front end: the chat page at `/`, `POST /api/chat` (JSON), `POST /api/chat/stream`
 * (server-sent events) and `POST /api/feedback`. Identity comes from what can vouch for it
 * (docs/configuration.md "Web identity"): the admin token, a service token, the single sign-on
 * proxy's user header, else an anonymous signed-cookie session. A name never grants rights.
 */
export function webRoutes(options: WebAdapterOptions): Hono {
  const { bot, logger } = options;
  const app = new Hono();
  const digest = (token: string) => createHash('sha256').update(token).digest();
  const expectedToken = options.adminToken ? digest(options.adminToken) : undefined;
  const services = Object.entries(options.serviceTokens ?? {}).map(([name, token]) => ({ name, digest: digest(token) }));
  const proxies = options.proxies ?? new TrustedProxies();
  const sessions = new WebSessions(options.sessionSecret);

  /** `user` in a body is believed only from the admin or a service: anyone else could type any name. */
  const identify = (c: Context, declared: string | undefined): Identity => {
    const header = c.req.header('authorization');
    if (header?.startsWith('Bearer ')) {
      const given = digest(header.slice(7));
      if (expectedToken && timingSafeEqual(given, expectedToken)) {
        // The admin asking on someone's behalf speaks as them, without admin rights.
        return declared ? { id: `guest:${declared}`, admin: false, kind: 'service' } : { id: WEB_ADMIN_ID, admin: true, kind: 'admin' };
      }
      const service = services.find((s) => timingSafeEqual(given, s.digest));
      if (service) return { id: declared ? `guest:${declared}` : `service:${service.name}`, admin: false, kind: 'service' };
    }
    if (options.authUserHeader && proxies.fromProxy(c)) {
      const user = c.req.header(options.authUserHeader)?.trim().toLowerCase();
      if (user && SSO_USER.test(user)) return { id: `sso:${user}`, admin: false, kind: 'sso' };
    }
    // A fresh cookie costs nothing, so anonymous sessions share their address's rate limit.
    return { id: `anon:${sessions.sessionId(c)}`, admin: false, kind: 'anonymous', rateLimitKey: `web:anonymous@${proxies.clientAddress(c)}` };
  };

  const toMessage = (body: z.infer<typeof ChatBody>, who: Identity): IncomingMessage => {
    const messageId = body.messageId ?? randomUUID();
    return {
      platform: 'web',
      eventId: `${who.id}/${messageId}`,
      workspace: '',
      channel: who.id,
      // Without a conversation id every API call stands alone.
      thread: body.conversation ?? messageId,
      messageId,
      user: { id: who.id, name: who.kind === 'service' && body.user ? body.user : who.id },
      ...(who.rateLimitKey ? { rateLimitKey: who.rateLimitKey } : {}),
      text: body.text ?? '',
      ...(body.regenerate ? { regenerate: body.regenerate } : {}),
      ...(body.fromSection ? { fromSection: body.fromSection } : {}),
      isDirect: true,
      mentionsBot: true,
      attachments: [],
      receivedAt: Date.now(),
    };
  };

  app.get('/', (c) => c.html(CHAT_PAGE));

  app.use('/api/*', limitBody(64 * 1024));
  app.use('/api/*', requireJsonFromAllowedOrigin(options.allowedOrigins ?? []));

  app.post('/api/chat', async (c) => {
    const body = await parseBody(c, ChatBody);
    if (!body.ok) return c.json({ error: body.error }, 400);
    const who = identify(c, body.value.user);
    const channel = new WebReplyChannel(() => {});
    const result = await bot.handle(toMessage(body.value, who), channel);
    const failure = statusFor(result);
    if (failure) return c.json({ error: failure.error, answer: channel.latest?.text ?? null }, failure.status);
    return c.json(chatResponse(result, channel.latest));
  });

  app.post('/api/chat/stream', async (c) => {
    const body = await parseBody(c, ChatBody);
    if (!body.ok) return c.json({ error: body.error }, 400);
    const who = identify(c, body.value.user);
    return streamSSE(c, async (stream) => {
      const channel = new WebReplyChannel(async (content) => {
        if (!stream.aborted) await stream.writeSSE({ event: 'update', data: JSON.stringify(updatePayload(content)) });
      });
      // The answer is recorded even if the browser goes away mid-stream.
      const result = await bot.handle(toMessage(body.value, who), channel);
      const failure = statusFor(result);
      const done = failure ? { error: failure.error, status: failure.status } : chatResponse(result, channel.latest);
      if (!stream.aborted) await stream.writeSSE({ event: 'done', data: JSON.stringify(done) });
    });
  });

  app.post('/api/feedback', async (c) => {
    const body = await parseBody(c, FeedbackBody);
    if (!body.ok) return c.json({ error: body.error }, 400);
    const who = identify(c, body.value.user);
    const result = await bot.vote({
      answerId: body.value.answerId,
      platform: 'web',
      userId: who.id,
      value: body.value.value,
      ...(body.value.comment ? { comment: body.value.comment } : {}),
      // Anyone can mint a session, so a session's vote counts only on an answer it was given.
      ...(who.kind === 'anonymous' ? { onlyOwnAnswer: true } : {}),
    });
    if (!result.ok && result.reason === 'not_own_answer') {
      return c.json({ error: 'an anonymous session may vote only on answers it received; sign in to vote on others' }, 403);
    }
    if (!result.ok) {
      logger.warn({ answerId: body.value.answerId }, 'vote for an unknown answer refused');
      return c.json({ error: `no answer with id ${body.value.answerId}` }, 404);
    }
    return c.json({ ok: true, up: result.up, down: result.down });
  });

  return app;
}

async function parseBody<T extends z.ZodType>(c: Context, schema: T): Promise<{ ok: true; value: z.infer<T> } | { ok: false; error: string }> {
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    return { ok: false, error: 'body must be a JSON object (Content-Type: application/json)' };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, error: parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') };
  }
  return { ok: true, value: parsed.data };
}

function statusFor(result: HandleResult): { status: 409 | 429 | 503 | 500; error: string } | undefined {
  switch (result.outcome) {
    case 'duplicate':
      return { status: 409, error: 'this messageId was already answered' };
    case 'rate_limited':
      return { status: 429, error: 'too many questions; wait a little' };
    case 'shutting_down':
      return { status: 503, error: 'the bot is shutting down' };
    case 'store_busy':
      return { status: 503, error: 'the database is locked by another process (still busy after its timeout); try again in a moment' };
    case 'error':
    case 'cancelled':
      return { status: 500, error: 'the answer failed; see the server log' };
    default:
      return undefined;
  }
}

function updatePayload(content: ReplyContent) {
  return {
    phase: content.phase,
    text: content.text,
    ...(content.sources ? { sources: content.sources } : {}),
    ...(content.near ? { near: content.near } : {}),
    ...(content.direct !== undefined ? { direct: content.direct } : {}),
    ...(content.answerId ? { answerId: content.answerId } : {}),
    ...(content.model ? { model: content.model.name, modelKind: content.model.kind } : {}),
  };
}

function chatResponse(result: HandleResult, latest: ReplyContent | undefined) {
  return {
    answerId: result.answerId ?? null,
    answer: latest?.text ?? '',
    direct: latest?.direct ?? '',
    sources: latest?.sources ?? [],
    /** After a "don't know": the sections found closest, to point at with `fromSection`. */
    near: latest?.near ?? [],
    model: latest?.model?.name ?? null,
    modelVersion: latest?.model?.version ?? null,
    outcome: result.outcome,
  };
}
