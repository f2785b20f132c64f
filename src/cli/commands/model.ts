import type { Command } from 'commander';
import { CliError, withRuntime } from '../shared.ts';
import { EXPORT_DTYPES, EXPORT_FORMATS, type ExportDtype, type ExportFormat } from '../../app/model-service.ts';

/** `teamllm model list|promote|rollback|verify|import|export`. */
export function registerModel(program: Command): void {
  program
    .command('model')
    .description(
      'model versions: list, promote <version>, rollback (a running bot follows within seconds), verify [version] (files against their recorded sha256), ' +
        'import <folder|file.gguf> (an open chat model: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM; ' +
        'or an open encoder: BertModel, XLMRobertaModel, then teamllm kb reindex --encoder <version>), ' +
        'export <version> --format hf|gguf|peft [--dtype f32|f16|bf16|q8_0] <dir> (an imported chat model, an adapter merged into its base, as a Hugging Face folder or a llama.cpp GGUF file; an adapter version alone as PEFT\'s folder)',
    )
    .argument('<action>', 'list|promote|rollback|verify|import|export')
    .argument('[version]', 'a version (promote, verify, export), or the folder or .gguf file to import')
    .argument('[dir]', 'export: the folder to write (new or empty)')
    .option('--format <format>', 'export: hf (a Hugging Face folder), gguf (llama.cpp, Ollama) or peft (a LoRA adapter version: PEFT\'s adapter folder)')
    .option('--name <name>', 'import: a name to record with the version (e.g. bge-small-en-v1.5, qwen2.5-0.5b-instruct)')
    .option('--base <version>', 'import of a PEFT LoRA adapter folder (adapter_config.json): the imported chat model version it goes on')
    .option(
      '--dtype <dtype>',
      "import, chat models: the precision weights are held in when served, bf16, int8 or f32 (default: the file's own: BF16 stays bf16, F16 f16, Q8_0 int8); " +
        "export: f32, f16, bf16 or q8_0 (gguf only) (default: the weights' own; Q8_0 ones f32 in a folder)",
    )
    .action(async (action: string, version: string | undefined, dir: string | undefined, opts: { name?: string; dtype?: string; format?: string; base?: string }) => {
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
          if (!version) throw new CliError('usage: teamllm model import <folder|file.gguf> [--name N] [--dtype bf16|int8|f32] | <peft-adapter-folder> --base <version>');
          if (opts.dtype !== undefined && !['bf16', 'int8', 'f32'].includes(opts.dtype)) throw new CliError(`--dtype must be bf16, int8 or f32, not "${opts.dtype}"`);
          const options = { ...(opts.name ? { name: opts.name } : {}), ...(opts.dtype ? { dtype: opts.dtype as 'bf16' | 'int8' | 'f32' } : {}), ...(opts.base ? { base: opts.base } : {}) };
          process.stdout.write(`${await runtime.models.importModel(version, options, actor).catch((e: Error) => Promise.reject(new CliError(e.message)))}\n`);
        } else if (action === 'export') {
          const usage = 'usage: teamllm model export <version> --format hf|gguf|peft [--dtype f32|f16|bf16|q8_0] <dir>';
          if (!version || !dir || !opts.format) throw new CliError(usage);
          if (!(EXPORT_FORMATS as readonly string[]).includes(opts.format)) throw new CliError(`--format must be hf, gguf or peft, not "${opts.format}"`);
          if (opts.dtype !== undefined && !(EXPORT_DTYPES as readonly string[]).includes(opts.dtype)) throw new CliError(`--dtype must be f32, f16, bf16 or q8_0 for export, not "${opts.dtype}"`);
          const options = { format: opts.format as ExportFormat, target: dir, ...(opts.dtype ? { dtype: opts.dtype as ExportDtype } : {}) };
          process.stdout.write(`${await runtime.models.exportModel(version, options, actor).catch((e: Error) => Promise.reject(new CliError(e.message)))}\n`);
        } else throw new CliError(`unknown model action "${action}" (list, promote, rollback, verify, import, export)`);
      });
    });
}
