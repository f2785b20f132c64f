import type { Command } from 'commander';
import { finishedJob, queueTrainingJob, resumeLastJob, trainEmbeddingsHere, trainingStatus } from '../../app/training-jobs.ts';
import { jobProgressBar } from '../job-progress-bar.ts';
import { CliError, trainingParams, withRuntime } from '../shared.ts';

const TRAIN_KINDS = ['tokenizer', 'pretrain', 'sft', 'embeddings', 'reward', 'rlhf', 'selector'];

/** `teamllm train <stage>|status|resume`. */
export function registerTrain(program: Command): void {
  const train = program.command('train').description(`train a stage (${TRAIN_KINDS.join(', ')}), or: status, resume, tokenizer`);
  train
    .argument('<stage>', `${TRAIN_KINDS.join('|')}|status|resume`)
    .option('--config <file>', 'training parameters as YAML/JSON (key: value)')
    .option('--data <path>', 'training data (file or folder; comma separated for several)')
    .option('--base <version>', 'sft, reward, rlhf: the model version to tune, ours or an imported chat model (default: the serving one, else the newest)')
    .option('--algo <name>', 'rlhf: ppo (against the reward model), kto (single 👍/👎) or dpo (pairs); default ppo')
    .option('--set <key=value...>', 'training parameters, e.g. --set maxIters=500 preset=nanogpt-cpu')
    .action(async (stage: string, opts: { config?: string; data?: string; base?: string; algo?: string; set?: string[] }) => {
      await withRuntime(program, {}, async (runtime) => {
        const actor = { id: `console:${runtime.consoleUser}`, isAdmin: true };
        if (stage === 'status') {
          process.stdout.write(`${await trainingStatus(runtime)}\n`);
          return;
        }
        if (stage === 'embeddings') {
          // In-process: it re-embeds the knowledge base into this home's Chroma collections.
          const bar = jobProgressBar();
          const trained = await trainEmbeddingsHere(runtime, actor.id, (p) => bar.update(p));
          bar.stop();
          const liked = trained.likedQuestions ? `, with ${trained.likedQuestions} question${trained.likedQuestions === 1 ? '' : 's'} whose answers people liked` : '';
          process.stdout.write(`Encoder ${trained.encoder} trained${liked}; ${trained.reembedded} passages re-embedded. Run teamllm eval retrieval to see whether it helps.\n`);
          return;
        }
        let job: { id: number };
        if (stage === 'resume') {
          const resumed = await resumeLastJob(runtime, actor.id);
          if (!resumed) throw new CliError('there is no stopped or interrupted job to resume');
          job = resumed.job;
          process.stderr.write(`Resuming job #${resumed.resumes.id} (${resumed.resumes.kind}) as job #${job.id}\n`);
        } else {
          if (!runtime.jobs.kinds.includes(stage)) {
            throw new CliError(`"${stage}" cannot be trained in this version (available: ${runtime.jobs.kinds.join(', ')})`, 2);
          }
          job = await queueTrainingJob(runtime, stage, { ...trainingParams(opts), ...(opts.algo ? { algo: opts.algo } : {}) }, actor.id);
          process.stderr.write(`Job #${job.id} (${stage}) in ${runtime.config.home}/runs — Ctrl+C stops it, keeping the last checkpoint\n`);
        }
        const bar = jobProgressBar();
        runtime.jobs.on('progress', (j, p) => j.id === job.id && bar.update(p));
        const onInterrupt = () => {
          process.stderr.write('\nStopping: saving a checkpoint (teamllm train resume continues)…\n');
          void runtime.jobs.stop();
        };
        process.once('SIGINT', onInterrupt);
        await runtime.jobs.idle();
        process.off('SIGINT', onInterrupt);
        bar.stop();
        const done = await finishedJob(runtime, job.id);
        process.stdout.write(`${done.text}\n`);
        if (done.lossChart) process.stdout.write(`loss curves: ${done.lossChart}\n`);
        if (!done.succeeded) process.exitCode = 1;
      }, true, { startJobs: true });
    });
}
