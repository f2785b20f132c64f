import type { Logger } from '../../core/index.ts';
import { utf8Length, WECOM_TEXT_LIMIT_BYTES } from './utf8-split.ts';

export interface SendLimit {
  max: number;
  windowMs: number;
}

/**
 * WeCom's per-member caps for one app. Messages past them are dropped by WeCom without an error,
 * so the adapter has to stay under them itself.
 */
export const WECOM_MEMBER_LIMITS: SendLimit[] = [
  { max: 30, windowMs: 60_000 },
  { max: 1000, windowMs: 3_600_000 },
];

export type Outgoing =
  /** `continues` marks the second and later pieces of one split text: they rejoin without a separator. */
  | { kind: 'text' | 'markdown'; content: string; continues?: boolean }
  | { kind: 'template_card'; card: Record<string, unknown> }
  /** An image uploaded as temporary media (media/upload). */
  | { kind: 'image'; mediaId: string };

interface Job {
  message: Outgoing;
  done: (err?: unknown) => void;
}

interface MemberState {
  jobs: Job[];
  sentAt: number[];
  running: boolean;
}

/** Where the queue reads the time and waits for a window to pass. */
export interface SendClock {
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

export interface MemberSendQueueOptions extends Partial<SendClock> {
  limits?: SendLimit[];
  maxBytes?: number;
  logger: Logger;
}

/**
 * Sends each member's messages in order, one at a time, within WeCom's per-member limits. When a
 * member is at the limit, texts that piled up meanwhile are merged (up to the byte limit) so the
 * backlog costs as few messages as possible.
 */
export class MemberSendQueue {
  private readonly members = new Map<string, MemberState>();
  private readonly limits: SendLimit[];
  private readonly maxBytes: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly longestWindow: number;
  private idle: (() => void)[] = [];

  constructor(
    private readonly send: (user: string, message: Outgoing) => Promise<void>,
    private readonly options: MemberSendQueueOptions,
  ) {
    this.limits = options.limits ?? WECOM_MEMBER_LIMITS;
    this.maxBytes = options.maxBytes ?? WECOM_TEXT_LIMIT_BYTES;
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.longestWindow = Math.max(0, ...this.limits.map((l) => l.windowMs));
  }

  /** Queues messages for one member; resolves once all were sent, or rejects with the first failure. */
  enqueue(user: string, messages: Outgoing[]): Promise<void> {
    if (this.members.size > 1000) this.sweep();
    let state = this.members.get(user);
    if (!state) this.members.set(user, (state = { jobs: [], sentAt: [], running: false }));
    const results = messages.map(
      (message) => new Promise<void>((resolve, reject) => state.jobs.push({ message, done: (err) => (err === undefined ? resolve() : reject(err)) })),
    );
    if (!state.running) void this.pump(user, state);
    return Promise.allSettled(results).then((settled) => {
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw failed.reason;
    });
  }

  /** Messages waiting or being sent, across all members. */
  get pending(): number {
    let n = 0;
    for (const state of this.members.values()) n += state.jobs.length;
    return n;
  }

  /** Resolves when every queue is empty. */
  drained(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private async pump(user: string, state: MemberState): Promise<void> {
    state.running = true;
    let throttled = false;
    while (state.jobs.length > 0) {
      const wait = this.waitMs(state);
      if (wait > 0) {
        if (!throttled) this.options.logger.info({ user, waitMs: wait, queued: state.jobs.length }, 'WeCom per-member limit reached; queueing');
        throttled = true;
        await this.sleep(wait);
        continue;
      }
      const batch = throttled ? this.takeMergeable(state) : [state.jobs[0]!];
      const message = batch.length === 1 ? batch[0]!.message : merge(batch.map((j) => j.message));
      let error: unknown;
      try {
        await this.send(user, message);
      } catch (err) {
        error = err ?? new Error('send failed');
      }
      // Counted when the call returns, the latest moment WeCom can have counted it (a token fetch may delay the call).
      state.sentAt.push(this.now());
      state.jobs.splice(0, batch.length);
      for (const job of batch) job.done(error);
    }
    state.running = false;
    this.forgetOld(user, state);
    if (this.pending === 0) for (const resolve of this.idle.splice(0)) resolve();
  }

  /** Milliseconds until every limit allows one more message. */
  private waitMs(state: MemberState): number {
    const now = this.now();
    state.sentAt = state.sentAt.filter((t) => now - t < this.longestWindow);
    let wait = 0;
    for (const { max, windowMs } of this.limits) {
      const inWindow = state.sentAt.filter((t) => now - t < windowMs);
      if (inWindow.length >= max) wait = Math.max(wait, inWindow[inWindow.length - max]! + windowMs - now);
    }
    return wait;
  }

  /** The head job plus the following texts of the same kind that fit in one message with it. */
  private takeMergeable(state: MemberState): Job[] {
    const head = state.jobs[0]!;
    const batch = [head];
    if (head.message.kind !== 'text' && head.message.kind !== 'markdown') return batch;
    let bytes = utf8Length(head.message.content);
    for (const job of state.jobs.slice(1)) {
      const m = job.message;
      if (m.kind !== head.message.kind || (m.kind !== 'text' && m.kind !== 'markdown')) break;
      const added = utf8Length(m.content) + (m.continues ? 0 : 2);
      if (bytes + added > this.maxBytes) break;
      bytes += added;
      batch.push(job);
    }
    return batch;
  }

  /** Members who stopped asking keep their send times until the longest window has passed. */
  private sweep(): void {
    for (const [user, state] of this.members) if (!state.running) this.forgetOld(user, state);
  }

  private forgetOld(user: string, state: MemberState): void {
    const now = this.now();
    state.sentAt = state.sentAt.filter((t) => now - t < this.longestWindow);
    if (state.jobs.length === 0 && state.sentAt.length === 0) this.members.delete(user);
  }
}

function merge(messages: Outgoing[]): Outgoing {
  const first = messages[0]!;
  if (first.kind !== 'text' && first.kind !== 'markdown') return first;
  let content = '';
  for (const m of messages) {
    if (m.kind !== 'text' && m.kind !== 'markdown') continue;
    content += content && !m.continues ? `\n\n${m.content}` : m.content;
  }
  return { kind: first.kind, content };
}
