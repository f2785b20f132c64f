import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Bot, IncomingMessage, Logger } from '../../core/index.ts';
import { ANOTHER_ANSWER_ACTION, FROM_SECTION_ACTION, type CardActionReply } from './answer-card.ts';
import type { AnswerCards } from './answer-cards.ts';
import type { FeishuApi } from './feishu-api.ts';
import { FeishuReplyTarget } from './reply-target.ts';

const AnotherAnswerValue = z.union([
  z.object({ action: z.literal(ANOTHER_ANSWER_ACTION), answerId: z.string().min(1).max(128) }),
  // "Is the answer in one of these sections?": the same question, answered from the section clicked.
  z.object({ action: z.literal(FROM_SECTION_ACTION), answerId: z.string().min(1).max(128), source: z.string().min(1).max(1000), title: z.string().max(1000) }),
]);

/** A click as card.action.trigger (or the legacy callback) reports it, after normalizeCardAction. */
export interface AnotherAnswerClick {
  /** The clicked card's message. */
  messageId: string;
  chatId: string;
  operator: { openId: string; name?: string | undefined };
  /** event_id of card.action.trigger, or the legacy callback's per-click token. */
  clickId: string | undefined;
  tenantKey: string;
  value: unknown;
}

export interface AnotherAnswerDeps {
  bot: Bot;
  api: FeishuApi;
  answers: AnswerCards;
  logger: Logger;
  streamIntervalMs: number;
}

/**
 * "↻ Another answer" on an answer card: the callback is answered at once with a toast (Feishu
 * waits 3 s at most), and the new answer is generated afterwards, posted as a reply to the clicked
 * card like any answer (streamed, with its own buttons). Only from the chat the answer was given
 * in: a forwarded card clicked elsewhere, or an answer the store no longer has, gets a toast and
 * nothing in the chat.
 */
export class AnotherAnswer {
  constructor(private readonly deps: AnotherAnswerDeps) {}

  async click(click: AnotherAnswerClick): Promise<CardActionReply> {
    const { bot, api, answers, logger, streamIntervalMs } = this.deps;
    const value = AnotherAnswerValue.safeParse(click.value);
    if (!value.success) {
      logger.warn({ messageId: click.messageId }, 'malformed "another answer" button value refused');
      return { toast: { type: 'error', content: 'This button is damaged, so nothing was done. Ask your question again instead.' } };
    }
    const { answerId } = value.data;
    const section = value.data.action === FROM_SECTION_ACTION ? { source: value.data.source, title: value.data.title } : undefined;
    const where = { platform: 'feishu' as const, workspace: click.tenantKey, channel: click.chatId };
    const check = await bot.canRegenerate(answerId, where);
    if (!check.ok) {
      logger.info({ answerId, chatId: click.chatId, reason: check.reason }, '"another answer" refused');
      return {
        toast: {
          type: 'warning',
          content:
            check.reason === 'unknown_answer'
              ? 'I no longer have this answer on record, so I cannot give another one. Please ask the question again.'
              : 'This answer was given in another chat: ask for another answer there.',
        },
      };
    }
    const clickId = click.clickId ?? randomUUID();
    const posted = answers.get(answerId);
    const isDirect = posted?.isDirect ?? false;
    const target = new FeishuReplyTarget(
      api,
      // Replying to a card inside a thread stays in that thread whatever reply_in_thread says.
      { messageId: click.messageId, inThread: posted?.inThread ?? false, isDirect, uuidSeed: `another:${clickId}` },
      answers,
      streamIntervalMs,
    );
    const msg: IncomingMessage = {
      platform: 'feishu',
      // One click, one answer: Feishu's redelivery of the callback carries the same event_id.
      eventId: `another:${clickId}`,
      workspace: click.tenantKey,
      channel: click.chatId,
      ...(check.answer.thread ? { thread: check.answer.thread } : {}),
      messageId: `another:${clickId}`,
      user: { id: click.operator.openId, ...(click.operator.name ? { name: click.operator.name } : {}) },
      text: '',
      ...(section ? { fromSection: { answer: answerId, ...section } } : { regenerate: answerId }),
      isDirect,
      mentionsBot: true,
      attachments: [],
      receivedAt: Date.now(),
    };
    // Not awaited: generating takes longer than Feishu waits for the callback's answer.
    void bot.handle(msg, target).then(
      (result) => logger.info({ answerId, outcome: result.outcome, newAnswerId: result.answerId }, '"another answer" handled'),
      (err: unknown) => logger.error({ err, answerId }, 'could not give another answer on Feishu'),
    );
    return { toast: { type: 'info', content: section ? 'Answering from that section…' : 'Working on another answer…' } };
  }
}
