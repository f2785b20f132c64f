import type { RespondFn, webApi } from '@slack/bolt';
import type { Logger, PostedReply, ReplyContent, ReplyImage, ReplyTarget } from '../../core/index.ts';
import { TOO_LONG_ERRORS, describeSlackError, slackErrorOf } from './api-errors.ts';
import { renderCompact, renderReply, type SlackMessage } from './message-blocks.ts';

export interface ThreadTargetOptions {
  client: webApi.WebClient;
  channel: string;
  /** Reply in this thread; undefined posts at the top of the conversation (a DM outside threads). */
  threadTs?: string;
  streamIntervalMs: number;
  logger: Logger;
}

/**
 * Replies in a channel or DM with chat.postMessage, then grows the answer with chat.update. The
 * first message's ts is the reply id (reactions on it are votes); a long final answer continues
 * in further messages of the same thread.
 */
export class SlackThreadTarget implements ReplyTarget {
  readonly streamIntervalMs: number;

  constructor(private readonly options: ThreadTargetOptions) {
    this.streamIntervalMs = options.streamIntervalMs;
  }

  async post(content: ReplyContent): Promise<PostedReply> {
    const [first, ...rest] = renderReply(content);
    let ts: string;
    let overflow = rest;
    try {
      ts = await this.postMessage(first!);
    } catch (err) {
      if (!TOO_LONG_ERRORS.has(slackErrorOf(err) ?? '')) throw err;
      this.options.logger.warn({ slack: describeSlackError(err), channel: this.options.channel }, 'Slack refused the reply as too long; posting it shortened');
      ts = await this.postMessage(renderCompact(content));
      overflow = [];
    }
    const reply = new SlackPostedReply(this, ts);
    await reply.syncOverflow(overflow);
    return reply;
  }

  /**
   * Posts an image in the same thread with Slack's upload flow (files.getUploadURLExternal, the
   * bytes to the upload URL, files.completeUploadExternal sharing it here). Needs the files:write scope.
   */
  async uploadImage(image: ReplyImage): Promise<void> {
    const { client, channel, threadTs } = this.options;
    const file = { file: Buffer.from(image.data), filename: image.filename, title: image.title, alt_text: image.altText };
    await (threadTs ? client.filesUploadV2({ ...file, channel_id: channel, thread_ts: threadTs }) : client.filesUploadV2({ ...file, channel_id: channel }));
  }

  async postMessage(message: SlackMessage): Promise<string> {
    const { client, channel, threadTs } = this.options;
    const result = await client.chat.postMessage({
      channel,
      ...(threadTs ? { thread_ts: threadTs } : {}),
      text: message.text,
      blocks: message.blocks,
      unfurl_links: false,
      unfurl_media: false,
    });
    if (!result.ts) throw new Error('chat.postMessage returned no ts');
    return result.ts;
  }

  async updateMessage(ts: string, message: SlackMessage): Promise<void> {
    await this.options.client.chat.update({ channel: this.options.channel, ts, text: message.text, blocks: message.blocks });
  }

  async deleteMessage(ts: string): Promise<void> {
    await this.options.client.chat.delete({ channel: this.options.channel, ts });
  }

  get logger(): Logger {
    return this.options.logger;
  }

  get channel(): string {
    return this.options.channel;
  }
}

class SlackPostedReply implements PostedReply {
  /** The continuation messages of a long reply, in order. */
  private overflow: string[] = [];

  constructor(
    private readonly target: SlackThreadTarget,
    readonly id: string,
  ) {}

  async update(content: ReplyContent): Promise<void> {
    const [first, ...rest] = renderReply(content);
    let overflow = rest;
    try {
      await this.target.updateMessage(this.id, first!);
    } catch (err) {
      if (!TOO_LONG_ERRORS.has(slackErrorOf(err) ?? '')) throw err;
      this.target.logger.warn({ slack: describeSlackError(err), channel: this.target.channel }, 'Slack refused the update as too long; showing it shortened');
      await this.target.updateMessage(this.id, renderCompact(content));
      overflow = [];
    }
    // While streaming only the first message changes; the rest of a long answer is written once, at the end.
    if (content.phase !== 'streaming') await this.syncOverflow(overflow);
  }

  async syncOverflow(messages: SlackMessage[]): Promise<void> {
    for (const [i, message] of messages.entries()) {
      const ts = this.overflow[i];
      if (ts) await this.target.updateMessage(ts, message);
      else this.overflow.push(await this.target.postMessage(message));
    }
    for (const ts of this.overflow.splice(messages.length)) {
      await this.target.deleteMessage(ts).catch((err: unknown) => this.target.logger.warn({ slack: describeSlackError(err) }, 'could not delete a stale continuation message'));
    }
  }
}

/** Slack accepts at most five messages on one response_url. */
const RESPONSE_URL_MAX_MESSAGES = 5;

/**
 * Replies to a slash command through its response_url, visible only to the user who ran it
 * (admin output such as /train status is nobody else's business).
 */
export class ResponseUrlTarget implements ReplyTarget {
  readonly streamIntervalMs = 1000;

  constructor(
    private readonly respond: RespondFn,
    private readonly triggerId: string,
  ) {}

  async post(content: ReplyContent): Promise<PostedReply> {
    for (const message of renderReply(content).slice(0, RESPONSE_URL_MAX_MESSAGES - 1)) {
      await this.respond({ response_type: 'ephemeral', replace_original: false, text: message.text, blocks: message.blocks });
    }
    return {
      id: `command:${this.triggerId}`,
      update: async (next) => {
        const [message] = renderReply(next);
        await this.respond({ response_type: 'ephemeral', replace_original: true, text: message!.text, blocks: message!.blocks });
      },
    };
  }
}
