import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { Bot, HandleResult, IncomingMessage, Logger, ReplyContent } from '../../core/index.ts';
import { WebReplyChannel } from './reply-channel.ts';
import { CHAT_PAGE } from './chat-page.ts';

export interface WebAdapterOptions {
  bot: Bot;
  logger: Logger;
  /** Bearer token that makes a caller the `web:admin` user. */
  adminToken?: string;
}

const MAX_QUESTION_CHARS = 4000;
const ID = z.string().regex(/^[\w.:@-]{1,128}$/, 'letters, digits and . : @ _ - only, at most 128');

const ChatBody = z.object({
  text: z.string().trim().min(1, 'must not be empty').max(MAX_QUESTION_CHARS, `at most ${MAX_QUESTION_CHARS} characters`),
  user: ID.optional(),
  conversation: ID.optional(),
  /** Client-chosen id: a retried POST with the same id is not answered twice. */
  messageId: ID.optional(),
});

const FeedbackBody = z.object({
  answerId: z.string().min(1).max(128),
  value: z.union([z.literal(1), z.literal(-1), z.literal(0)]),
  comment: z.string().max(2000).optional(),
  user: ID.optional(),
});

type Identity = { id: string; admin: boolean };

export const WEB_ADMIN_ID = 'admin';

/**
 * The web front end: the chat page at `/`, `POST /api/chat` (JSON), `POST /api/chat/stream`
 * (server-sent events) and `POST /api/feedback`. Web callers name themselves, so a name never
 * grants rights: they are `guest:<name>`, and only the admin token makes a caller `admin`.
 */
export function webRoutes(options: WebAdapterOptions): Hono {
  const { bot, logger } = options;
  const app = new Hono();
  const expectedToken = options.adminToken ? createHash('sha256').update(options.adminToken).digest() : undefined;

  const identify = (c: Context, declared: string | undefined): Identity => {
    const header = c.req.header('authorization');
    if (expectedToken && header?.startsWith('Bearer ')) {
      const given = createHash('sha256').update(header.slice(7)).digest();
      if (timingSafeEqual(given, expectedToken)) return { id: WEB_ADMIN_ID, admin: true };
    }
    return { id: `guest:${declared ?? 'anonymous'}`, admin: false };
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
      user: { id: who.id, name: body.user ?? who.id },
      text: body.text,
      isDirect: true,
      mentionsBot: true,
      attachments: [],
      receivedAt: Date.now(),
    };
  };

  app.get('/', (c) => c.html(CHAT_PAGE));

  app.use('/api/*', bodyLimit({ maxSize: 64 * 1024, onError: (c) => c.json({ error: 'request body too large (64 KB max)' }, 413) }));

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
    });
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
    model: latest?.model?.name ?? null,
    modelVersion: latest?.model?.version ?? null,
    outcome: result.outcome,
  };
}
