import { z } from 'zod';
import type { Bot, IncomingMessage, Logger } from '../../core/index.ts';
import type { AnswerCards } from './answer-cards.ts';
import type { FeishuApi } from './feishu-api.ts';
import { messageText } from './message-text.ts';
import { BoundedMap } from './recent.ts';
import { FeishuReplyTarget } from './reply-target.ts';

/** A signed callback whose payload lacks what its event type promises. */
export class MalformedEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedEventError';
  }
}

const optionalId = z
  .string()
  .nullish()
  .transform((v) => (v ? v : undefined));

/** im.message.receive_v1 as the SDK hands it over: header and event fields side by side. */
const ReceiveEvent = z.object({
  event_id: z.string().min(1),
  tenant_key: optionalId,
  sender: z.object({
    sender_id: z.object({ open_id: optionalId, user_id: optionalId, union_id: optionalId }),
    sender_type: z.string(),
  }),
  message: z.object({
    message_id: z.string().min(1),
    root_id: optionalId,
    parent_id: optionalId,
    thread_id: optionalId,
    chat_id: z.string().min(1),
    chat_type: z.string(),
    message_type: z.string(),
    content: z.string(),
    mentions: z
      .array(z.object({ key: z.string(), id: z.object({ open_id: optionalId }).nullish(), name: z.string().nullish() }))
      .nullish(),
  }),
});
type ReceiveEvent = z.infer<typeof ReceiveEvent>;

export interface IncomingMessagesDeps {
  bot: Bot;
  api: FeishuApi;
  answers: AnswerCards;
  logger: Logger;
  streamIntervalMs: number;
}

/**
 * im.message.receive_v1: acknowledged at once, answered in the background. Each message is
 * answered once: redeliveries with the same event_id stop here, and the core's persistent dedupe
 * is keyed on the message_id, which also catches the same message arriving under a new event_id.
 */
export class IncomingMessages {
  private readonly recentEvents = new BoundedMap<string, true>(5000);
  private readonly notified = new BoundedMap<string, true>(2000);

  constructor(private readonly deps: IncomingMessagesDeps) {}

  receive(data: unknown): void {
    const parsed = ReceiveEvent.safeParse(data);
    if (!parsed.success) throw new MalformedEventError(`im.message.receive_v1: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
    const event = parsed.data;
    if (this.recentEvents.seen(event.event_id, true)) {
      this.deps.logger.info({ eventId: event.event_id }, 'Feishu redelivered an event; dropped');
      return;
    }
    void this.answer(event).catch((err: unknown) =>
      this.deps.logger.error({ err, eventId: event.event_id, messageId: event.message.message_id }, 'could not answer a Feishu message'),
    );
  }

  private async answer(event: ReceiveEvent): Promise<void> {
    const { bot, api, answers, logger, streamIntervalMs } = this.deps;
    if (event.sender.sender_type !== 'user') return;
    const m = event.message;
    const sender = event.sender.sender_id.open_id ?? event.sender.sender_id.user_id ?? event.sender.sender_id.union_id;
    if (!sender) return;
    const isDirect = m.chat_type === 'p2p';
    const mentions = (m.mentions ?? []).map((x) => ({ key: x.key, id: { open_id: x.id?.open_id }, name: x.name ?? undefined }));
    // Only needed to tell the bot's mention from other people's.
    const botOpenId =
      mentions.length > 0
        ? await api.ownOpenId().catch((err: unknown) => {
            logger.error({ err }, 'could not get the bot open_id from /open-apis/bot/v3/info; @-mentions of the bot go unnoticed');
            return undefined;
          })
        : undefined;

    // A thread's root is the question that started it; a topic's first message is its own root.
    const threadRoot = m.thread_id ? (m.root_id ?? m.message_id) : undefined;
    const target = new FeishuReplyTarget(api, { messageId: m.message_id, inThread: threadRoot !== undefined, isDirect }, answers, streamIntervalMs);

    const content = messageText(m.message_type, m.content, mentions, botOpenId);
    if (!content) {
      if (isDirect && !this.notified.seen(m.message_id, true)) {
        await target.post({ phase: 'notice', text: 'I can read text and rich-text messages only — please type your question.' });
      }
      return;
    }
    // A quoted reply that addresses the bot continues the conversation of the message it quotes.
    const thread = threadRoot ?? (!isDirect && content.mentionsBot ? m.root_id : undefined);
    const msg: IncomingMessage = {
      platform: 'feishu',
      eventId: m.message_id,
      workspace: event.tenant_key ?? '',
      channel: m.chat_id,
      ...(thread ? { thread } : {}),
      messageId: m.message_id,
      user: { id: sender },
      text: content.text,
      isDirect,
      mentionsBot: content.mentionsBot,
      attachments: [],
      receivedAt: Date.now(),
    };
    const result = await bot.handle(msg, target);
    logger.debug({ messageId: m.message_id, outcome: result.outcome }, 'Feishu message handled');
  }
}
