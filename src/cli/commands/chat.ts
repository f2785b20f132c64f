import type { Command } from 'commander';
import { chatInTerminal } from '../../app/terminal-chat.ts';
import { withRuntime } from '../shared.ts';

/** `teamllm chat`. */
export function registerChat(program: Command): void {
  program
    .command('chat')
    .description('chat with the bot in the terminal (rate answers with + or -)')
    .action(async () => {
      await withRuntime(program, {}, async (runtime) => {
        await chatInTerminal(runtime, process.stdin, process.stdout);
      });
    });
}
