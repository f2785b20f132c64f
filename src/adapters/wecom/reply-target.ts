import type { PostedReply, ReplyContent, ReplyImage, ReplyTarget } from '../../core/index.ts';

/**
 * A self-built app cannot edit a message it sent, so a placeholder and streamed updates would
 * each become a message of their own (and eat into the 30 per minute). Only what is final is
 * sent: the answer, a notice or an error; "thinking" and "streaming" states are dropped.
 */
export class WecomReplyTarget implements ReplyTarget {
  readonly updatable = false;

  constructor(
    /** Stands in for a message id: nothing is sent when the Bot first posts, so WeCom has none yet. */
    private readonly replyId: string,
    private readonly deliver: (content: ReplyContent) => Promise<void>,
    /** Sends an image message (media/upload, then message/send msgtype image). */
    private readonly deliverImage?: (image: ReplyImage) => Promise<void>,
  ) {}

  async uploadImage(image: ReplyImage): Promise<void> {
    if (!this.deliverImage) throw new Error('this WeCom target cannot send images');
    await this.deliverImage(image);
  }

  async post(content: ReplyContent): Promise<PostedReply> {
    await this.sendIfFinal(content);
    return { id: this.replyId, update: (next) => this.sendIfFinal(next) };
  }

  private async sendIfFinal(content: ReplyContent): Promise<void> {
    if (content.phase === 'thinking' || content.phase === 'streaming') return;
    await this.deliver(content);
  }
}
