import type { Command } from 'commander';
import type { JobRecord } from '../../core/index.ts';
import { ChatTrainingService } from '../../training/chat-training-service.ts';
import { formatJob } from '../../training/jobs/job-format.ts';
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
    .option('--base <version>', 'sft: the model version to fine-tune (default: the serving one, else the newest)')
    .option('--algo <name>', 'rlhf: ppo (against the reward model), kto (single 👍/👎) or dpo (pairs); default ppo')
    .option('--set <key=value...>', 'training parameters, e.g. --set maxIters=500 preset=nanogpt-cpu')
    .action(async (stage: string, opts: { config?: string; data?: string; base?: string; algo?: string; set?: string[] }) => {
      await withRuntime(program, {}, async (runtime) => {
        const actor = { id: `console:${runtime.consoleUser}`, isAdmin: true };
        if (stage === 'status') {
          process.stdout.write(`${await new ChatTrainingService(runtime.jobs, runtime.store, runtime.logger).status()}\n`);
          return;
        }
        if (stage === 'embeddings') {
          // In-process: it re-embeds the knowledge base into this home's Chroma collections.
          const bar = jobProgressBar();
          const trained = await runtime.knowledge.trainEmbeddings({ onProgress: (p) => bar.update({ stage: 'encoder', step: p.step, totalSteps: p.steps, loss: p.loss }) });
          bar.stop();
          await runtime.store.audit({ actor: actor.id, action: 'train', detail: { kind: 'embeddings', encoder: trained.info.id } });
          process.stdout.write(`Encoder ${trained.info.id} trained; ${trained.reembedded} passages re-embedded. Run teamllm eval retrieval to see whether it helps.\n`);
          return;
        }
        let job: JobRecord;
        if (stage === 'resume') {
          const jobs = await runtime.store.listJobs(50);
          const resumed = new Set(jobs.flatMap((j) => (j.resumes ? [j.resumes] : [])));
          const last = jobs.find((j) => (j.status === 'interrupted' || j.status === 'stopped') && !resumed.has(j.id));
          if (!last) throw new CliError('there is no stopped or interrupted job to resume');
          job = await runtime.jobs.enqueue(last.kind, last.params, actor.id, last);
          process.stderr.write(`Resuming job #${last.id} (${last.kind}) as job #${job.id}\n`);
        } else {
          if (!runtime.jobs.kinds.includes(stage)) {
            throw new CliError(`"${stage}" cannot be trained in this version (available: ${[...runtime.jobs.kinds, 'embeddings'].join(', ')})`, 2);
          }
          job = await runtime.jobs.enqueue(stage, { ...trainingParams(opts), ...(opts.algo ? { algo: opts.algo } : {}) }, actor.id);
          await runtime.store.audit({ actor: actor.id, action: 'train', detail: { job: job.id, kind: stage, params: job.params } });
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
        const done = (await runtime.store.getJob(job.id))!;
        process.stdout.write(`${formatJob(done)}\n`);
        if (done.result?.files && typeof (done.result.files as Record<string, string>).lossChart === 'string') {
          process.stdout.write(`loss curves: ${(done.result.files as Record<string, string>).lossChart}\n`);
        }
        if (done.status !== 'succeeded') process.exitCode = 1;
      }, true, { startJobs: true });
    });
}
