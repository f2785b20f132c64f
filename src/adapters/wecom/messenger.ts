import type { Logger, ReplyContent, Vote } from '../../core/index.ts';
import type { WecomApiClient } from './api-client.ts';
import { MemberSendQueue, type Outgoing, type SendClock, type SendLimit } from './member-send-queue.ts';
import { feedbackCard, formatAnswer, modelLine, textMessages, type WecomFormat } from './message-format.ts';

export interface WecomMessengerOptions {
  client: WecomApiClient;
  agentId: number;
  format: WecomFormat;
  logger: Logger;
  memberLimits?: SendLimit[];
  /** The per-member queue's clock (tests pace it by hand); default Date.now and setTimeout. */
  sendClock?: SendClock;
}

/** Everything the adapter sends to a member, paced per member by one queue. */
export class WecomMessenger {
  private readonly queue: MemberSendQueue;

  constructor(private readonly options: WecomMessengerOptions) {
    this.queue = new MemberSendQueue((user, message) => this.sendNow(user, message), {
      logger: options.logger,
      ...(options.memberLimits ? { limits: options.memberLimits } : {}),
      ...(options.sendClock ? { now: options.sendClock.now, sleep: options.sendClock.sleep } : {}),
    });
  }

  /** Notices, command output and errors: plain text, which every WeCom client shows. */
  sendText(user: string, text: string): Promise<void> {
    return this.queue.enqueue(user, textMessages(text, 'text'));
  }

  /** The final answer with its sources and model line, then the 👍/👎 card. */
  sendAnswer(user: string, content: ReplyContent & { answerId: string }): Promise<void> {
    const { format } = this.options;
    const footer = modelLine(content.model);
    const styledFooter = footer ? (format === 'markdown' ? `<font color="comment">${footer}</font>` : `— ${footer}`) : '';
    const body = [formatAnswer(content, format), styledFooter].filter(Boolean).join('\n\n');
    const messages: Outgoing[] = [...textMessages(body, format), { kind: 'template_card', card: feedbackCard(content.answerId, undefined, content.near) }];
    return this.queue.enqueue(user, messages);
  }

  /** An image (training loss curves): uploaded as temporary media, then sent in the member's queue. */
  async sendImage(user: string, image: { data: Uint8Array; filename: string }): Promise<void> {
    const mediaId = await this.options.client.uploadMedia('image', image.filename, image.data);
    await this.queue.enqueue(user, [{ kind: 'image', mediaId }]);
  }

  /** Shows the member's vote on the card they clicked (the response code is good for one update). */
  async showVote(user: string, responseCode: string, answerId: string, vote: Vote | undefined): Promise<void> {
    await this.options.client.updateTemplateCard({
      userids: [user],
      agentid: this.options.agentId,
      response_code: responseCode,
      template_card: feedbackCard(answerId, vote),
    });
  }

  drained(): Promise<void> {
    return this.queue.drained();
  }

  private async sendNow(user: string, message: Outgoing): Promise<void> {
    const payload = message.kind === 'template_card' ? message.card : message.kind === 'image' ? { media_id: message.mediaId } : { content: message.content };
    const result = await this.options.client.sendMessage({
      touser: user,
      agentid: this.options.agentId,
      msgtype: message.kind,
      [message.kind]: payload,
    });
    // A member outside the app's visible range is reported here rather than as an error.
    if (result.invaliduser) this.options.logger.warn({ user, kind: message.kind }, 'WeCom did not deliver: member not in the app\'s visible range');
  }
}
