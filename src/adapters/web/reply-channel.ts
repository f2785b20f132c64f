import type { PostedReply, ReplyContent, ReplyTarget } from '../../core/index.ts';

/** A ReplyTarget for HTTP callers: every post and update is handed to `onContent`. */
export class WebReplyChannel implements ReplyTarget {
  readonly streamIntervalMs: number;
  latest: ReplyContent | undefined;
  private posts = 0;

  constructor(
    private readonly onContent: (content: ReplyContent) => void | Promise<void>,
    streamIntervalMs = 50,
  ) {
    this.streamIntervalMs = streamIntervalMs;
  }

  async post(content: ReplyContent): Promise<PostedReply> {
    const id = `web-reply-${++this.posts}`;
    await this.emit(content);
    return { id, update: (next) => this.emit(next) };
  }

  private async emit(content: ReplyContent): Promise<void> {
    this.latest = content;
    await this.onContent(content);
  }
}
