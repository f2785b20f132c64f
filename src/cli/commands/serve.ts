import type { Command } from 'commander';
import { loadConfig } from '../../app/config.ts';
import { startServing, type Serving } from '../../app/serve.ts';
import type { BackgroundQuickstart } from '../../app/background-quickstart.ts';
import { formatDuration } from '../../app/training-jobs.ts';
import { terminalQuickstartReporter } from '../quickstart-reporter.ts';

/** The end of a first start's background training, on the terminal. */
function announceBackgroundQuickstart(quickstart: BackgroundQuickstart, reporter: { stop(): void }): void {
  const started = performance.now();
  quickstart.once('finished', (status) => {
    reporter.stop();
    const took = formatDuration((performance.now() - started) / 1000);
    if (status.state === 'done') process.stderr.write(`\nQuickstart done in ${took}: ${status.summary}. It answers from now on (no restart needed).\n\n`);
    else if (status.state === 'failed') {
      process.stderr.write(`\nThe quickstart failed after ${took}: ${status.error}\nThe bot keeps answering with quotes from the knowledge base (/healthz says why); the next start retries, resuming from its checkpoints.\n\n`);
    }
  });
}

/** `teamllm serve`. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the bot: web chat and every enabled platform adapter on one HTTP server')
    .option('--adapters <list>', 'comma list of web,slack,feishu,wecom')
    .option('--port <n>', 'HTTP port')
    .option('--host <host>', 'interface to listen on')
    .action(async (opts: { adapters?: string; port?: string; host?: string }) => {
      const config = loadConfig({
        file: program.opts<{ config?: string }>().config,
        overrides: {
          ...(opts.adapters ? { TEAMLLM_ADAPTERS: opts.adapters } : {}),
          ...(opts.port ? { TEAMLLM_PORT: opts.port } : {}),
          ...(opts.host ? { TEAMLLM_HOST: opts.host } : {}),
        },
      });
      // The server listens at once; a first start trains the model in the background (src/app/serve.ts).
      const reporter = terminalQuickstartReporter();
      let serving: Serving;
      try {
        serving = await startServing(config, { reporter, onQuickstart: (q) => announceBackgroundQuickstart(q, reporter) });
      } catch (err) {
        // Whatever stopped the start ends the process: one clear line, a non-zero status, and no
        // child left behind (the bundled Chroma is killed on exit: rag/chroma-server.ts).
        reporter.stop();
        const message = err instanceof Error ? err.message : String(err);
        process.stderr.write(`teamllm serve: could not start: ${message.split('\n')[0]}\n`);
        if (process.env.TEAMLLM_LOG_LEVEL === 'debug' && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
        process.exit(/TEAMLLM_QUICKSTART_RECIPE/.test(message) ? 2 : 1);
      }
      const { runtime, server } = serving;
      runtime.logger.info(
        { url: server.url, adapters: config.adapters, model: runtime.bot.serving.model.name, home: config.home },
        `teamllm is serving: open ${server.url} for the web chat`,
      );
      process.stderr.write(`\nteamllm is ready: web chat at ${server.url}  (Ctrl+C to stop)\n`);
      if (serving.quickstart) {
        process.stderr.write(
          `\nFirst start: training this bot's own model on the sample handbook in the background (recipe "${serving.quickstart.status.recipe}"; about 3 minutes on 2 quiet cores, once).\n` +
            `Until it is ready the bot answers with quotes from the knowledge base and says how far the training is (also at ${server.url}/healthz);\n` +
            `then the trained model takes over, no restart needed. TEAMLLM_QUICKSTART=off skips the training. Ctrl+C stops; the next start resumes.\n\n`,
        );
      } else process.stderr.write('\n');
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        if (serving.quickstart?.training) process.stderr.write('\nStopping the quickstart: saving a checkpoint (the next start resumes)…\n');
        runtime.logger.info({ signal }, 'shutting down: finishing answers in flight');
        reporter.stop();
        await serving.close();
        process.exit(0);
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
    });
}
