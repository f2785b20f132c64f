import type { Command } from 'commander';
import { loadConfig, type Config } from '../../app/config.ts';
import { describeInputs, quickstartInputs, resolveRecipe, runQuickstart } from '../../app/quickstart.ts';
import { createLogger } from '../../app/logger.ts';
import { formatDuration } from '../../app/training-jobs.ts';
import { terminalQuickstartReporter } from '../quickstart-reporter.ts';
import { CliError } from '../shared.ts';

/** First-start training with progress bars on stderr; Ctrl+C stops it (the next start resumes). */
async function quickstart(config: Config, force: boolean): Promise<void> {
  const logger = createLogger(config.values.TEAMLLM_LOG_LEVEL ? config.logLevel : 'warn');
  let recipe;
  let inputs;
  try {
    recipe = resolveRecipe(config.values.TEAMLLM_QUICKSTART_RECIPE);
    inputs = await quickstartInputs(config);
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
  const reporter = terminalQuickstartReporter();
  const controller = new AbortController();
  const onInterrupt = () => {
    process.stderr.write('\nStopping the quickstart: saving a checkpoint (the next start resumes)…\n');
    controller.abort();
  };
  process.once('SIGINT', onInterrupt);
  const started = performance.now();
  let announced = false;
  try {
    const outcome = await runQuickstart({
      config,
      logger,
      recipe,
      inputs,
      force,
      signal: controller.signal,
      reporter: {
        ...reporter,
        stage(name, cached) {
          if (!announced) {
            announced = true;
            process.stderr.write(
              `\n${inputs.sample ? 'First start: training' : 'Training'} this bot's own model on ${describeInputs(inputs)} (recipe "${recipe.name}"; ${inputs.sample ? 'about 3 minutes' : 'a few minutes for 20 documents'} on 2 quiet cores, once).\n` +
                `Set TEAMLLM_QUICKSTART=off to skip it (retrieval-only answers, or your own model). Ctrl+C stops; the next start resumes.\n\n`,
            );
          }
          reporter.stage(name, cached);
        },
      },
    });
    if (outcome.ran) process.stderr.write(`\nQuickstart done in ${formatDuration(outcome.seconds)}: ${outcome.state.summary}.\n`);
    else logger.info({ reason: outcome.reason, ms: Math.round(performance.now() - started) }, 'quickstart: nothing to train');
  } catch (err) {
    reporter.stop();
    if (controller.signal.aborted) throw new CliError((err as Error).message, 130);
    throw err;
  } finally {
    reporter.stop();
    process.off('SIGINT', onInterrupt);
  }
}

/** `teamllm quickstart`. */
export function registerQuickstart(program: Command): void {
  program
    .command('quickstart')
    .description("train the bot's first model on the sample handbook, or on a folder of your documents (serve runs this first when no model is serving; TEAMLLM_QUICKSTART=off skips it)")
    .option('--docs <dir>', "the company's documents (md, txt, html, pdf, docx; recursively) instead of the sample handbook: trained on, and the knowledge base holds them (TEAMLLM_QUICKSTART_DOCS)")
    .option('--questions <file>', 'JSONL question set for the promotion gate (question + answer or must_contain; its test split, else all); default: generated questions of held-out passages')
    .option('--force', 'train even when a model is serving or the quickstart is cached')
    .action(async (opts: { docs?: string; questions?: string; force?: boolean }) => {
      const config = loadConfig({
        file: program.opts<{ config?: string }>().config,
        overrides: {
          ...(opts.docs ? { TEAMLLM_QUICKSTART_DOCS: opts.docs } : {}),
          ...(opts.questions ? { TEAMLLM_QUICKSTART_QUESTIONS: opts.questions } : {}),
        },
      });
      await quickstart(config, opts.force === true);
    });
}
