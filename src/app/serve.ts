/**
 * `teamllm serve`: the runtime, the HTTP server, and — on a first start (no model serving, nothing
 * cached) — the quickstart in the background. The server listens at once: while the model trains,
 * answers are retrieval-only with a line saying how far the training is, /healthz shows the
 * progress, and platforms can verify their callback URLs; when the quickstart finishes, its model
 * takes over without a restart (src/app/background-quickstart.ts).
 */
import type { Logger } from '../core/index.ts';
import { BackgroundQuickstart, workerQuickstartRunner, type QuickstartRunner } from './background-quickstart.ts';
import type { Config } from './config.ts';
import { createLogger } from './logger.ts';
import { quickstartKey, quickstartNeeded, resolveRecipe, sampleInputs, type QuickstartReporter } from './quickstart.ts';
import { createRuntime, startServer, type RunningServer, type Runtime, type RuntimeOptions } from './runtime.ts';

export interface ServeOptions {
  logger?: Logger;
  /** Shown the quickstart's stages and progress too (the terminal's progress bars). */
  reporter?: QuickstartReporter;
  /** Runs the quickstart (default: runQuickstart in a worker thread); tests gate it here. */
  quickstartRunner?: QuickstartRunner;
  /** Told, before the server starts, that the quickstart will run in the background. */
  onQuickstart?: (quickstart: BackgroundQuickstart) => void;
  /** More runtime options (tests stub metrics or stages here). */
  runtime?: Omit<RuntimeOptions, 'logger' | 'fallbackNotice' | 'health'>;
  port?: number;
  host?: string;
  /** How often a promotion or rollback made by another process is picked up; default 5 s. */
  followMs?: number;
}

export interface Serving {
  runtime: Runtime;
  server: RunningServer;
  /** The first start's training, when this start runs it. */
  quickstart?: BackgroundQuickstart;
  /** Stops the quickstart (keeping its checkpoints), then the server and the runtime. */
  close(): Promise<void>;
}

export async function startServing(config: Config, options: ServeOptions = {}): Promise<Serving> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const quickstart = await backgroundQuickstart(config, logger, options);
  if (quickstart) options.onQuickstart?.(quickstart);
  const runtime = await createRuntime(config, {
    platformAdapters: true,
    startJobs: true,
    ...options.runtime,
    logger,
    ...(quickstart ? { fallbackNotice: (request) => quickstart.notice(request), health: () => ({ quickstart: quickstart.status }) } : {}),
  });
  let server: RunningServer;
  try {
    server = await startServer(runtime, options.port, options.host);
  } catch (err) {
    await runtime.close();
    throw err;
  }
  // A promotion or rollback made with `teamllm model` (another process) reaches this bot here.
  // Not while the first start trains: its hand-over loads the encoder first, then whatever serves.
  const follow = setInterval(() => {
    if (quickstart?.training) return;
    void runtime.models.activate().catch((err: unknown) => runtime.logger.error({ err }, 'could not load the promoted model'));
  }, options.followMs ?? 5000);
  follow.unref();
  // The hand-over: the encoder the quickstart trained, then its model (answers in flight finish on retrieval-only).
  void quickstart?.start(async () => {
    await runtime.knowledge.reloadEmbeddings();
    await runtime.models.activate();
    return runtime.bot.serving.model;
  });
  let closing: Promise<void> | undefined;
  return {
    runtime,
    server,
    ...(quickstart ? { quickstart } : {}),
    close() {
      closing ??= (async () => {
        clearInterval(follow);
        await quickstart?.stop();
        await Promise.all([server.close(), runtime.close()]);
      })();
      return closing;
    },
  };
}

/** The first start's quickstart, when this start needs one (not when opted out, cached, or another model serves). */
async function backgroundQuickstart(config: Config, logger: Logger, options: ServeOptions): Promise<BackgroundQuickstart | undefined> {
  if (config.quickstart === 'off') return undefined;
  const recipe = resolveRecipe(config.values.TEAMLLM_QUICKSTART_RECIPE);
  const t0 = performance.now();
  const need = await quickstartNeeded(config, await quickstartKey(recipe, sampleInputs()));
  if (!need.needed) {
    logger.info({ reason: need.reason, ms: Math.round(performance.now() - t0) }, 'quickstart: nothing to train');
    return undefined;
  }
  logger.info({ recipe: recipe.name, reason: need.reason }, 'quickstart: training the first model in the background; answering retrieval-only until it is ready');
  const runner =
    options.quickstartRunner ??
    // The quickstart's own log stays quiet unless a log level was asked for: its progress is on the terminal.
    workerQuickstartRunner({ config, recipe, logLevel: config.values.TEAMLLM_LOG_LEVEL ? config.logLevel : 'warn' });
  return new BackgroundQuickstart({ runner, recipe: recipe.name, reason: need.reason, logger, ...(options.reporter ? { reporter: options.reporter } : {}) });
}
