/**
 * `teamllm ask`: one question through the whole answer path (dedupe, rate limit, retrieval, the
 * serving answerer, the answer record), the reply caught as the web chat would receive it.
 */
import { WebReplyChannel } from '../adapters/web/index.ts';
import type { Runtime } from './runtime.ts';

export async function askOnce(runtime: Runtime, question: string) {
  const channel = new WebReplyChannel(() => {});
  const result = await runtime.bot.handle(
    {
      platform: 'console',
      eventId: `ask-${process.pid}-${Date.now()}`,
      workspace: '',
      channel: 'cli',
      messageId: `ask-${Date.now()}`,
      user: { id: runtime.consoleUser },
      text: question,
      isDirect: true,
      mentionsBot: true,
      attachments: [],
    },
    channel,
  );
  const reply = channel.latest;
  return {
    answer: reply?.text ?? '',
    direct: reply?.direct ?? '',
    sources: reply?.sources ?? [],
    model: runtime.bot.serving.model.name,
    answerId: result.answerId ?? null,
    failed: result.outcome === 'error' || result.outcome === 'cancelled',
  };
}
