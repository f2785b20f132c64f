import type { AnswerEvent, AnswerRequest, Answerer, IncomingMessage, PostedReply, ReplyContent, ReplyTarget, Source } from '../src/core/index.ts';
import { AdminList, Bot, type BotOptions } from '../src/core/index.ts';
import { SqliteStore } from '../src/core/sqlite-store.ts';

export const SAMPLE_SOURCE: Source = { source: 'en/leave.md', title: 'Leave', text: 'Everyone gets 25 days of leave.', score: 3.2 };

/** An answerer with a scripted reply that records what it was asked. */
export class ScriptedAnswerer implements Answerer {
  readonly model = { name: 'scripted', version: 't1', kind: 'language-model' as const };
  readonly requests: AnswerRequest[] = [];
  /** The direct answer `done` names, when set. */
  direct: string | undefined;
  /** When set, a "don't know": no sources, these named as the closest sections. */
  near: Source[] | undefined;
  private held: Promise<void> | undefined;
  constructor(
    public tokens: string[] = ['You get ', '25 days ', 'of leave.'],
    public sources: Source[] = [SAMPLE_SOURCE],
    public tokenDelayMs = 0,
    public failWith?: Error,
  ) {}

  /**
   * Holds every answer, once asked (in `requests`), before its first event until the returned
   * function is called: what a test observes meanwhile happened before the answer, whatever the
   * machine's speed.
   */
  hold(): () => void {
    let release!: () => void;
    this.held = new Promise((resolve) => (release = resolve));
    return () => {
      this.held = undefined;
      release();
    };
  }

  async *answer(request: AnswerRequest): AsyncIterable<AnswerEvent> {
    this.requests.push(request);
    if (this.held) await this.held;
    yield this.near ? { type: 'sources', sources: [], near: this.near } : { type: 'sources', sources: this.sources };
    for (const text of this.tokens) {
      if (this.tokenDelayMs) await new Promise((r) => setTimeout(r, this.tokenDelayMs));
      if (this.failWith) throw this.failWith;
      yield { type: 'token', text };
    }
    yield { type: 'done', prompt: `Q: ${request.question}`, ...(this.direct !== undefined ? { direct: this.direct } : {}) };
  }
}

/** A ReplyTarget that keeps every post and update, in order. */
export class RecordingTarget implements ReplyTarget {
  readonly events: { kind: 'post' | 'update'; id: string; content: ReplyContent }[] = [];
  constructor(readonly streamIntervalMs = 0) {}

  async post(content: ReplyContent): Promise<PostedReply> {
    const id = `reply-${this.events.filter((e) => e.kind === 'post').length + 1}`;
    this.events.push({ kind: 'post', id, content });
    return { id, update: async (next) => void this.events.push({ kind: 'update', id, content: next }) };
  }

  get last(): ReplyContent | undefined {
    return this.events.at(-1)?.content;
  }

  get posts(): ReplyContent[] {
    return this.events.filter((e) => e.kind === 'post').map((e) => e.content);
  }
}

let counter = 0;
export function message(overrides: Partial<IncomingMessage> = {}): IncomingMessage {
  counter++;
  return {
    platform: 'slack',
    eventId: `Ev${counter}`,
    workspace: 'T1',
    channel: 'D1',
    messageId: `m${counter}`,
    user: { id: 'U1', name: 'Ann' },
    text: 'How many days of leave do I get?',
    isDirect: true,
    mentionsBot: false,
    attachments: [],
    ...overrides,
  };
}

export function makeBot(options: Partial<BotOptions> = {}): { bot: Bot; store: SqliteStore; answerer: ScriptedAnswerer } {
  const store = (options.store as SqliteStore | undefined) ?? new SqliteStore(':memory:');
  const answerer = (options.answerer as ScriptedAnswerer | undefined) ?? new ScriptedAnswerer();
  const bot = new Bot({ admins: new AdminList(['slack:UADMIN']), streamIntervalMs: 0, ...options, store, answerer });
  return { bot, store, answerer };
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
