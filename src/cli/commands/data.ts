import type { Command } from 'commander';
import { EXPORT_KINDS, exportDataset, type ExportKind } from '../../training/feedback-datasets.ts';
import { CliError, withRuntime } from '../shared.ts';

/** `teamllm data export`. */
export function registerData(program: Command): void {
  const data = program.command('data').description('datasets from the answer and feedback records');
  data
    .command('export')
    .description('write a JSONL dataset to stdout')
    .requiredOption('--kind <kind>', EXPORT_KINDS.join('|'))
    .option('--no-anonymous-votes', 'leave out votes of anonymous web sessions (docs/feedback-loop.md)')
    .action(async (opts: { kind: string; anonymousVotes: boolean }) => {
      if (!EXPORT_KINDS.includes(opts.kind as ExportKind)) throw new CliError(`--kind must be one of ${EXPORT_KINDS.join(', ')}`);
      await withRuntime(program, { TEAMLLM_SAMPLE_KB: 'false' }, async (runtime) => {
        let n = 0;
        for await (const row of exportDataset(runtime.store, opts.kind as ExportKind, opts.anonymousVotes ? {} : { anonymousVotes: false })) {
          process.stdout.write(`${JSON.stringify(row)}\n`);
          n++;
        }
        process.stderr.write(`${n} ${opts.kind} examples\n`);
      });
    });
}
