import { Command } from 'commander';
import { ConfigError } from '../app/config.ts';
import { createLogger } from '../app/logger.ts';
import { CliError } from './shared.ts';
import { registerServe } from './commands/serve.ts';
import { registerQuickstart } from './commands/quickstart.ts';
import { registerChat } from './commands/chat.ts';
import { registerAsk } from './commands/ask.ts';
import { registerKb } from './commands/kb.ts';
import { registerTrain } from './commands/train.ts';
import { registerModel } from './commands/model.ts';
import { registerEval } from './commands/eval.ts';
import { registerData } from './commands/data.ts';

/** The `teamllm` command line: program options here, each command group in src/cli/commands/ (registered in help order). */
export function buildProgram(): Command {
  const program = new Command('teamllm')
    .description("Your company's own language model in its team chat")
    .option('-c, --config <file>', 'configuration file (YAML or JSON with the same keys as the environment); before the command')
    // `train --config` is the training configuration: program options only count before the command.
    .enablePositionalOptions()
    .showHelpAfterError();

  registerServe(program);
  registerQuickstart(program);
  registerChat(program);
  registerAsk(program);
  registerKb(program);
  registerTrain(program);
  registerModel(program);
  registerEval(program);
  registerData(program);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof CliError) {
      process.stderr.write(`teamllm: ${err.message}\n`);
      process.exitCode = err instanceof CliError ? err.code : 2;
      return;
    }
    createLogger('error').error({ err }, 'teamllm failed');
    process.exitCode = 1;
  }
}
