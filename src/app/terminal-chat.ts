/** `teamllm chat`: the console adapter on the runtime's bot, as the operator's own user. */
import type { Readable, Writable } from 'node:stream';
import { runConsoleChat } from '../adapters/console/index.ts';
import type { Runtime } from './runtime.ts';

export function chatInTerminal(runtime: Runtime, input: Readable, output: Writable): Promise<void> {
  return runConsoleChat({ bot: runtime.bot, input, output, user: runtime.consoleUser });
}
