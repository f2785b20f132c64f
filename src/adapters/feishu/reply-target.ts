import { createHash } from 'node:crypto';
import type { PostedReply, ReplyContent, ReplyImage, ReplyTarget } from '../../core/index.ts';
import { answerCard } from './answer-card.ts';
import type { AnswerCards } from './answer-cards.ts';
import type { FeishuApi } from './feishu-api.ts';

export interface Question {
  messageId: string;
  /** Reply inside the thread the question was asked in (reply_in_thread). */
  inThread: boolean;
  isDirect: boolean;
  /**
   * What the replies' idempotency uuids derive from, when not `messageId`: "another answer"
   * replies to the same answer card once per click, and Feishu drops a repeated uuid.
   */
  uuidSeed?: string;
}

/**
 * Answers one question: the first post replies to the question with a card, later updates PATCH
 * that card. The posted card's message_id is the PostedReply id, so reactions on it find the answer.
 */
export class FeishuReplyTarget implements ReplyTarget {
  private posts = 0;

  constructor(
    private readonly api: FeishuApi,
    private readonly question: Question,
    private readonly answers: AnswerCards,
    readonly streamIntervalMs: number,
  ) {}

  async post(content: ReplyContent): Promise<PostedReply> {
    const uuid = replyUuid(this.question.uuidSeed ?? this.question.messageId, ++this.posts);
    const id = await this.api.replyCard(this.question.messageId, answerCard(content), { inThread: this.question.inThread, uuid });
    this.answers.remember({ messageId: id, content, isDirect: this.question.isDirect, inThread: this.question.inThread });
    return {
      id,
      update: async (next) => {
        await this.api.patchCard(id, answerCard(next));
        this.answers.remember({ messageId: id, content: next, isDirect: this.question.isDirect, inThread: this.question.inThread });
      },
    };
  }

  /** Uploads the image (im/v1/images), then replies with an image message in the same thread. */
  async uploadImage(image: ReplyImage): Promise<void> {
    const key = await this.api.uploadImage(Buffer.from(image.data));
    await this.api.replyImage(this.question.messageId, key, { inThread: this.question.inThread, uuid: replyUuid(this.question.uuidSeed ?? this.question.messageId, ++this.posts) });
  }
}

/** Feishu drops a second reply with the same uuid within an hour; it must be at most 50 characters. */
function replyUuid(questionId: string, n: number): string {
  return `tl-${createHash('sha256').update(`${questionId}#${n}`).digest('hex').slice(0, 40)}`;
}
