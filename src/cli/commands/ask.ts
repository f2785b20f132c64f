import type { Command } from 'commander';
import { askOnce } from '../../app/ask.ts';
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
        const { failed, ...reply } = await askOnce(runtime, words.join(' '));
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ answer: reply.answer, direct: reply.direct, sources: reply.sources, model: reply.model, answerId: reply.answerId })}\n`);
        } else {
          process.stdout.write(`${reply.answer}\n`);
          reply.sources.forEach((s, i) => process.stdout.write(`[${i + 1}] ${s.title} — ${s.source}\n`));
        }
        if (failed) throw new CliError('the answer failed; see the log above');
      });
    });
}
