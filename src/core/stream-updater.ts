import type { Logger } from './logger.ts';
import type { PostedReply, ReplyContent } from './types.ts';

/**
 * Streams a growing reply into a posted message without outrunning the platform: at most one
 * update in flight and at most one per interval. Intermediate states may be skipped (the next
 * update carries the latest text); the final state never is.
 */
export class StreamUpdater {
  private latest: ReplyContent | undefined;
  private inFlight: Promise<void> | undefined;
  private lastSentAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly reply: PostedReply,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  push(content: ReplyContent): void {
    this.latest = content;
    this.schedule();
  }

  /** Sends `content` as the last update, after any update in flight. */
  async finish(content: ReplyContent): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.latest = undefined;
    await this.inFlight;
    await this.send(content);
  }

  private schedule(): void {
    if (this.inFlight || this.timer) return;
    const wait = Math.max(0, this.lastSentAt + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const content = this.latest;
      this.latest = undefined;
      if (!content) return;
      this.inFlight = this.send(content).finally(() => {
        this.inFlight = undefined;
        if (this.latest) this.schedule();
      });
    }, wait);
  }

  private async send(content: ReplyContent): Promise<void> {
    this.lastSentAt = Date.now();
    try {
      await this.reply.update(content);
    } catch (err) {
      // A failed intermediate update (rate limit, network) must not lose the answer: the final one retries.
      this.logger.warn({ err, phase: content.phase }, 'reply update failed');
      if (content.phase === 'final' || content.phase === 'error') throw err;
    }
  }
}
