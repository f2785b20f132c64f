import type { Command } from 'commander';
import { CliError, withRuntime } from '../shared.ts';

/** `teamllm model list|promote|rollback|verify|import`. */
export function registerModel(program: Command): void {
  program
    .command('model')
    .description(
      'model versions: list, promote <version>, rollback (a running bot follows within seconds), verify [version] (files against their recorded sha256), ' +
        'import <folder|file.gguf> (an open chat model: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM; ' +
        'or an open encoder: BertModel, XLMRobertaModel, then teamllm kb reindex --encoder <version>)',
    )
    .argument('<action>', 'list|promote|rollback|verify|import')
    .argument('[version]', 'a version (promote, verify), or the folder or .gguf file to import')
    .option('--name <name>', 'import: a name to record with the version (e.g. bge-small-en-v1.5, qwen2.5-0.5b-instruct)')
    .action(async (action: string, version: string | undefined, opts: { name?: string }) => {
      await withRuntime(program, {}, async (runtime) => {
        const actor = { id: `console:${runtime.consoleUser}`, isAdmin: true };
        if (action === 'list') process.stdout.write(`${await runtime.models.list()}\n`);
        else if (action === 'promote') {
          if (!version) throw new CliError('usage: teamllm model promote <version>');
          process.stdout.write(`${await runtime.models.promote(version, actor).catch((e: Error) => Promise.reject(new CliError(e.message)))}\n`);
        } else if (action === 'rollback') {
          process.stdout.write(`${await runtime.models.rollback(actor).catch((e: Error) => Promise.reject(new CliError(e.message)))}\n`);
        } else if (action === 'verify') {
          const result = await runtime.models.verify(version).catch((e: Error) => Promise.reject(new CliError(e.message)));
          process.stdout.write(`${result.text}\n`);
          if (!result.ok) process.exitCode = 1;
        } else if (action === 'import') {
          if (!version) throw new CliError('usage: teamllm model import <folder|file.gguf> [--name N]');
          process.stdout.write(`${await runtime.models.importModel(version, opts.name ? { name: opts.name } : {}, actor).catch((e: Error) => Promise.reject(new CliError(e.message)))}\n`);
        } else throw new CliError(`unknown model action "${action}" (list, promote, rollback, verify, import)`);
      });
    });
}
