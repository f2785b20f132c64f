import type { Command } from 'commander';
import { DATASET_KINDS, datasetRows } from '../../app/dataset-export.ts';
import { CliError, withRuntime } from '../shared.ts';

/** `teamllm data export`. */
export function registerData(program: Command): void {
  const data = program.command('data').description('datasets from the answer and feedback records');
  data
    .command('export')
    .description('write a JSONL dataset to stdout')
    .requiredOption('--kind <kind>', DATASET_KINDS.join('|'))
    .option('--no-anonymous-votes', 'leave out votes of anonymous web sessions (docs/feedback-loop.md)')
    .action(async (opts: { kind: string; anonymousVotes: boolean }) => {
      if (!DATASET_KINDS.includes(opts.kind)) throw new CliError(`--kind must be one of ${DATASET_KINDS.join(', ')}`);
      await withRuntime(program, { TEAMLLM_SAMPLE_KB: 'false' }, async (runtime) => {
        let n = 0;
        for await (const row of datasetRows(runtime, opts.kind, { anonymousVotes: opts.anonymousVotes })) {
          process.stdout.write(`${JSON.stringify(row)}\n`);
          n++;
        }
        process.stderr.write(`${n} ${opts.kind} examples\n`);
      });
    });
}
