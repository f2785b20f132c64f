import type { Command } from 'commander';
import { WebReplyChannel } from '../../adapters/web/index.ts';
import { CliError, withRuntime } from '../shared.ts';

/** `teamllm ask`. */
export function registerAsk(program: Command): void {
  program
    .command('ask')
    .description('ask one question and print the answer')
    .argument('<question...>')
    .option('--json', 'print {answer, direct, sources, model} as JSON')
    .action(async (words: string[], opts: { json?: boolean }) => {
      await withRuntime(program, {}, async (runtime) => {
        const channel = new WebReplyChannel(() => {});
        const question = words.join(' ');
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
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify({ answer: reply?.text ?? '', direct: reply?.direct ?? '', sources: reply?.sources ?? [], model: runtime.bot.serving.model.name, answerId: result.answerId ?? null })}\n`,
          );
        } else {
          process.stdout.write(`${reply?.text ?? ''}\n`);
          reply?.sources?.forEach((s, i) => process.stdout.write(`[${i + 1}] ${s.title} — ${s.source}\n`));
        }
        if (result.outcome === 'error' || result.outcome === 'cancelled') throw new CliError('the answer failed; see the log above');
      });
    });
}
