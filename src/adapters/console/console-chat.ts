import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Bot, PostedReply, ReplyContent, ReplyTarget } from '../../core/index.ts';

export interface ConsoleChatOptions {
  bot: Bot;
  input: Readable;
  output: Writable;
  /** The local operator's name; the terminal user is `console:<user>`. */
  user: string;
}

const RATE = /^(\+|-|\/good|\/bad|👍|👎)(?:\s+([\s\S]*))?$/u;

/**
 * `teamllm chat`: ask in the terminal, watch the answer stream, see its sources, rate it with
 * `+` or `-` (a comment may follow). Commands (/help, /kb ...) go to the bot as typed.
 */
export async function runConsoleChat({ bot, input, output, user }: ConsoleChatOptions): Promise<void> {
  const conversation = randomUUID();
  const rl = createInterface({ input, terminal: false });
  const write = (s: string) => output.write(s);
  let lastAnswerId: string | undefined;

  write(`teamllm chat — ${describe(bot)}\nAsk a question; rate the last answer with + or - (a comment may follow); /help for commands, /quit to leave.\n`);
  write('> ');
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === '/quit' || line === '/exit') break;
    if (!line) {
      write('> ');
      continue;
    }
    const rating = RATE.exec(line);
    if (rating) {
      if (!lastAnswerId) write('There is no answer to rate yet.\n');
      else {
        const value = rating[1] === '+' || rating[1] === '/good' || rating[1] === '👍' ? 1 : -1;
        const comment = rating[2]?.trim();
        const result = await bot.vote({ answerId: lastAnswerId, platform: 'console', userId: user, value, ...(comment ? { comment } : {}) });
        write(result.ok ? `${value === 1 ? '👍' : '👎'} recorded — thank you.\n` : 'That answer is no longer known.\n');
      }
      write('> ');
      continue;
    }
    const target = new ConsoleReplyTarget(write);
    const messageId = randomUUID();
    const result = await bot.handle(
      {
        platform: 'console',
        eventId: messageId,
        workspace: '',
        channel: 'terminal',
        thread: conversation,
        messageId,
        user: { id: user, name: user },
        text: line,
        isDirect: true,
        mentionsBot: true,
        attachments: [],
      },
      target,
    );
    if (result.answerId) lastAnswerId = result.answerId;
    write('> ');
  }
  rl.close();
}

function describe(bot: Bot): string {
  const model = bot.serving.model;
  return model.kind === 'retrieval-only' ? 'no model trained yet: answers quote the knowledge base' : `model ${model.name} ${model.version}`;
}

/** Prints streamed text as it grows; reprints when an update is not a continuation. */
class ConsoleReplyTarget implements ReplyTarget {
  readonly streamIntervalMs = 30;
  private printed = '';

  constructor(private readonly write: (s: string) => void) {}

  async post(content: ReplyContent): Promise<PostedReply> {
    this.show(content);
    return { id: 'console', update: async (next) => this.show(next) };
  }

  private show(content: ReplyContent): void {
    if (content.phase === 'thinking') {
      this.write('… ');
      return;
    }
    const text = content.text;
    if (text.startsWith(this.printed)) this.write(text.slice(this.printed.length));
    else this.write(`\n${text}`);
    this.printed = text;
    if (content.phase === 'streaming') return;
    this.write('\n');
    if (content.sources?.length) {
      this.write('Sources:\n');
      content.sources.forEach((s, i) => this.write(`  [${i + 1}] ${s.title} — ${s.source}\n`));
    }
    if (content.answerId) this.write('Rate this answer: + or - (a comment may follow)\n');
  }
}
