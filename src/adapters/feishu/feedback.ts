import { normalizeCardAction, normalizeReaction } from '@larksuiteoapi/node-sdk';
import { z } from 'zod';
import type { Bot, Logger, Vote } from '../../core/index.ts';
import { ANOTHER_ANSWER_ACTION, FROM_SECTION_ACTION, answerCard, VOTE_ACTION, type CardActionReply, type VoteTally } from './answer-card.ts';
import type { AnswerCards, PostedAnswer } from './answer-cards.ts';
import type { AnotherAnswer } from './another-answer.ts';
import type { FeishuApi } from './feishu-api.ts';
import { MalformedEventError } from './incoming-messages.ts';

const VoteValue = z.object({
  action: z.literal(VOTE_ACTION),
  answerId: z.string().min(1).max(128),
  vote: z.union([z.literal(1), z.literal(-1)]),
});

/** Reactions that count as a vote; Feishu's emoji keys, compared case-insensitively. */
const UP = new Set(['THUMBSUP', 'OK', 'DONE', 'APPLAUSE', 'FINGERHEART', 'LGTM']);
const DOWN = new Set(['THUMBSDOWN']);

export function reactionVote(emojiType: string): Vote | undefined {
  const key = emojiType.toUpperCase();
  if (UP.has(key)) return 1;
  if (DOWN.has(key)) return -1;
  return undefined;
}

export interface FeedbackDeps {
  bot: Bot;
  api: FeishuApi;
  answers: AnswerCards;
  logger: Logger;
  /** "↻ Another answer" clicks, which arrive through the same callback. */
  anotherAnswer?: AnotherAnswer;
}

/** 👍/👎 from card buttons (card.action.trigger) and from emoji reactions on an answer. */
export class Feedback {
  constructor(private readonly deps: FeedbackDeps) {}

  /** card.action.trigger (and the legacy card callback): answered within the request. */
  async cardAction(data: unknown): Promise<CardActionReply> {
    const raw = (data ?? {}) as Record<string, unknown>;
    // The legacy callback names the clicker at the top level rather than under `operator`.
    const action = normalizeCardAction({
      ...raw,
      operator: (raw.operator as { open_id?: string } | undefined) ?? { open_id: raw.open_id as string | undefined },
    } as Parameters<typeof normalizeCardAction>[0]);
    if (!action) throw new MalformedEventError('card action without operator, message or chat');
    const parsed = parseValue(action.action.value);
    const kind = (parsed as { action?: unknown } | null)?.action;
    if (this.deps.anotherAnswer && (kind === ANOTHER_ANSWER_ACTION || kind === FROM_SECTION_ACTION)) {
      const clickId = raw.event_id ?? raw.token;
      const tenantKey = raw.tenant_key ?? (raw.operator as { tenant_key?: unknown } | undefined)?.tenant_key;
      return this.deps.anotherAnswer.click({
        messageId: action.messageId,
        chatId: action.chatId,
        operator: { openId: action.operator.openId, name: action.operator.name },
        clickId: typeof clickId === 'string' && clickId ? clickId : undefined,
        tenantKey: typeof tenantKey === 'string' ? tenantKey : '',
        value: parsed,
      });
    }
    const value = VoteValue.safeParse(parsed);
    if (!value.success) return { toast: { type: 'info', content: 'This button is not handled by teamllm.' } };

    const { answerId, vote } = value.data;
    const result = await this.deps.bot.vote({ answerId, platform: 'feishu', userId: action.operator.openId, value: vote });
    if (!result.ok) return { toast: { type: 'warning', content: 'This answer is no longer known, so the vote was not recorded.' } };
    this.deps.logger.info({ answerId, vote, via: 'button' }, 'Feishu vote recorded');
    const toast: CardActionReply['toast'] = {
      type: 'success',
      content: vote === 1 ? 'Thanks! Marked as helpful 👍' : 'Thanks! Marked as not helpful 👎 — it helps us improve.',
    };
    const posted = this.deps.answers.get(answerId);
    if (!posted) return { toast };
    return { toast, card: { type: 'raw', data: this.refreshed(posted, vote, result) } };
  }

  /** The legacy callback answers with the card itself (or nothing to keep it). */
  async legacyCardAction(data: unknown): Promise<object> {
    const reply = await this.cardAction(data);
    return reply.card?.data ?? {};
  }

  /** im.message.reaction.created_v1 / deleted_v1: validated now, recorded in the background. */
  reaction(data: unknown, change: 'added' | 'removed'): void {
    const raw = (data ?? {}) as Parameters<typeof normalizeReaction>[0];
    const reaction = normalizeReaction(raw, change);
    if (!reaction) throw new MalformedEventError('reaction event without message_id, emoji_type or user_id.open_id');
    if (raw.operator_type && raw.operator_type !== 'user') return;
    const vote = reactionVote(reaction.emojiType);
    if (vote === undefined) return;
    void this.recordReaction(reaction.messageId, reaction.operator.openId, change === 'added' ? vote : 0, vote).catch((err: unknown) =>
      this.deps.logger.error({ err, messageId: reaction.messageId }, 'could not record a Feishu reaction vote'),
    );
  }

  private async recordReaction(messageId: string, userId: string, value: Vote | 0, emojiVote: Vote): Promise<void> {
    // A removed reaction withdraws only the vote it gave, not a different one clicked since.
    const result = await this.deps.bot.voteOnReply('feishu', messageId, userId, value, undefined, value === 0 ? emojiVote : undefined);
    if (!result?.ok) {
      this.deps.logger.debug({ messageId }, 'Feishu reaction on a message that is not an answer; ignored');
      return;
    }
    this.deps.logger.info({ answerId: result.answerId, vote: value, via: 'reaction' }, 'Feishu vote recorded');
    const posted = this.deps.answers.get(result.answerId);
    if (!posted) return;
    // Keep the counts on the card in step with reactions too; cosmetic, so failures are only logged.
    await this.deps.api
      .patchCard(posted.messageId, this.refreshed(posted, value === 0 ? undefined : value, result))
      .catch((err: unknown) => this.deps.logger.warn({ err, messageId: posted.messageId }, 'could not refresh the vote counts on a Feishu card'));
  }

  private refreshed(posted: PostedAnswer, vote: Vote | undefined, tally: VoteTally): object {
    const content = { ...posted.content };
    if (posted.isDirect && vote !== undefined) content.vote = vote;
    else delete content.vote;
    this.deps.answers.remember({ ...posted, content });
    return answerCard(content, { up: tally.up, down: tally.down });
  }
}

function parseValue(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}
