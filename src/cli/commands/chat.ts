import type { Command } from 'commander';
import { runConsoleChat } from '../../adapters/console/index.ts';
import { withRuntime } from '../shared.ts';

/** `teamllm chat`. */
export function registerChat(program: Command): void {
  program
    .command('chat')
    .description('chat with the bot in the terminal (rate answers with + or -)')
    .action(async () => {
      await withRuntime(program, {}, async (runtime) => {
        await runConsoleChat({ bot: runtime.bot, input: process.stdin, output: process.stdout, user: runtime.consoleUser });
      });
    });
}
