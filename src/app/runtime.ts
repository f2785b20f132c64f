import { userInfo } from 'node:os';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import type { Hono } from 'hono';
import { AdminList, Bot, type AnswerRequest, type Answerer, type Logger } from '../core/index.ts';
import type { AdapterContext, PlatformAdapter } from '../adapters/platform-adapter.ts';
import { adminRoutes, WEB_ADMIN_ID, webRoutes } from '../adapters/web/index.ts';
import { TrustedProxies } from '../adapters/http/client-address.ts';
import { sessionSecret } from './session-secret.ts';
import { LocalChatModel } from '../model/langchain-chat-model.ts';
import { ModelRegistry } from '../model/registry.ts';
import type { LlamaCppOptions } from '../model/import/llama-cpp-chat-model.ts';
import { openKnowledgeBase, type LocalKnowledgeBase, type OpenedKnowledgeBases, type OpenKnowledgeBaseOptions } from '../rag/index.ts';
import { ChatTrainingService, jobLossChart } from '../training/chat-training-service.ts';
import { JobRunner } from '../training/jobs/job-runner.ts';
import { TRAINING_STAGES } from '../training/stages/index.ts';
import type { Config } from './config.ts';
import { withNotice } from './background-quickstart.ts';
import { createHttpApp } from './http-app.ts';
import { installAutoPromotion } from './job-promotion.ts';
import { createLogger } from './logger.ts';
import { openStore, type AppStore } from './store.ts';
import { PgStore } from '../core/pg-store.ts';
import { PgKnowledgeSync } from '../rag/pg-knowledge-sync.ts';
import { Metrics } from './metrics.ts';
import { RegistryModelService } from './model-service.ts';
import { loadSampleKnowledgeBase } from './sample-kb.ts';
import { answerConstraint, answerGeneration, answerSettings } from '../model/answer-settings.ts';
import { qaPromptMessages } from '../rag/qa-prompt-messages.ts';
import { ModelCandidateScorer } from '../rag/model-candidate-scorer.ts';

export { PACKAGE_ROOT, SAMPLE_KB_DIR } from './sample-kb.ts';

/** Platform adapters, loaded only when enabled (their SDKs are not needed otherwise). */
const ADAPTER_FACTORIES: Record<'slack' | 'feishu' | 'wecom', (ctx: AdapterContext) => Promise<PlatformAdapter>> = {
  slack: async (ctx) => (await import('../adapters/slack/index.ts')).createSlackAdapter(ctx),
  feishu: async (ctx) => (await import('../adapters/feishu/index.ts')).createFeishuAdapter(ctx),
  wecom: async (ctx) => (await import('../adapters/wecom/index.ts')).createWecomAdapter(ctx),
};

export interface Runtime {
  config: Config;
  logger: Logger;
  /** SQLite, or PostgreSQL when TEAMLLM_DATABASE_URL is set (app/store.ts). */
  store: AppStore;
  kb: LocalKnowledgeBase;
  knowledge: OpenedKnowledgeBases;
  models: RegistryModelService;
  bot: Bot;
  metrics: Metrics;
  http: Hono;
  adapters: PlatformAdapter[];
  /** The training job queue (runs jobs in worker threads). */
  jobs: JobRunner;
  /** The local terminal operator's id (`console:<user>`): they own the data folder, so they are an admin. */
  consoleUser: string;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  logger?: Logger;
  /** Replaces the default answerer (tests and benchmarks stub the model here). */
  answerer?: Answerer;
  /** Skip default process metrics (benchmarks create many runtimes). */
  defaultMetrics?: boolean;
  /** Create the enabled platform adapters (only `serve` talks to platforms). */
  platformAdapters?: boolean;
  /** Start the job queue: mark jobs a dead process left running as interrupted, run queued ones. */
  startJobs?: boolean;
  /** Job kind -> stage module URL (tests add stand-in stages). */
  stages?: Record<string, string>;
  /**
   * A line added to the answers of the retrieval-only fallback while it returns one (while the
   * first start's quickstart trains the bot's model: src/app/background-quickstart.ts).
   */
  fallbackNotice?: (request: AnswerRequest) => string | undefined;
  /** More fields for the body of GET /healthz (the background quickstart's status). */
  health?: () => Record<string, unknown>;
  /** How long a write waits for a locked SQLite database before its request fails (default 5 s). */
  busyTimeoutMs?: number;
  /** Knowledge-base options (tests shorten the vector store's probe and restart delays). */
  knowledge?: Pick<OpenKnowledgeBaseOptions, 'probe' | 'bundledChroma'>;
  /** With TEAMLLM_SERVING_ENGINE=llama.cpp: llama.cpp's threads, KV cache type and flash attention (tests: one thread, an F32 cache). */
  llamaCpp?: Pick<LlamaCppOptions, 'threads' | 'kvCacheType' | 'flashAttention' | 'specifier'>;
}

/** The composition root: builds stores, knowledge base, answerer, bot and HTTP routes from a Config. */
export async function createRuntime(config: Config, options: RuntimeOptions = {}): Promise<Runtime> {
  const logger = options.logger ?? createLogger(config.logLevel);
  // A shared models folder set in a config file reaches the training stages too: they open the
  // registry in worker threads, which read it from the environment (ModelRegistry).
  if (config.modelsDir && !process.env.TEAMLLM_MODELS_DIR) process.env.TEAMLLM_MODELS_DIR = config.modelsDir;
  const store = await openStore(config, { logger, ...(options.busyTimeoutMs !== undefined ? { busyTimeoutMs: options.busyTimeoutMs } : {}) });
  const metrics = new Metrics(options.defaultMetrics ?? true);
  let knowledge: OpenedKnowledgeBases | undefined;
  let sync: PgKnowledgeSync | undefined;
  try {
    // On PostgreSQL the knowledge bases are shared: every process follows one change feed.
    if (store instanceof PgStore) {
      sync = new PgKnowledgeSync(store, { logger });
      await sync.start();
    }
    knowledge = await openKnowledgeBase({
      home: config.home,
      ...(sync ? { sync } : {}),
      ...(config.chromaUrl ? { chromaUrl: config.chromaUrl } : {}),
      logger,
      observer: { vectorStoreDown: () => metrics.vectorStoreDown() },
      ...(options.knowledge ?? {}),
    });
    return await assemble(config, options, logger, store, metrics, knowledge);
  } catch (err) {
    // A start that fails leaves nothing running: the Chroma child and the databases are closed.
    await knowledge?.close().catch(() => undefined);
    await sync?.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw err;
  }
}

async function assemble(config: Config, options: RuntimeOptions, logger: Logger, store: AppStore, metrics: Metrics, knowledge: OpenedKnowledgeBases): Promise<Runtime> {
  const proxies = new TrustedProxies(config.web.trustedProxies);
  const kb = knowledge.kb;
  if (config.sampleKnowledgeBase) await loadSampleKnowledgeBase(kb, config.home, logger);
  const consoleUser = userInfo().username || 'operator';
  const admins = new AdminList([
    ...config.admins,
    `console:${consoleUser}`,
    ...(config.adminToken ? [`web:${WEB_ADMIN_ID}`] : []),
  ]);
  // Channels bound to their own knowledge base search only that one (opened now, so answers never wait on it).
  for (const name of new Set(Object.values(config.channelKnowledgeBases))) await knowledge.get(name);
  const scope = (request: AnswerRequest) => {
    const name = config.channelKnowledgeBases[`${request.user.platform}:${request.channel}`];
    return name ? { knowledgeBase: name } : undefined;
  };
  // No model (none trained yet, or the serving one refused): the rules choose the answer among the
  // passages' spans, as the served answerer does without its model's score.
  const retrievalOnly = options.answerer ?? knowledge.answerer({ scope, candidates: config.answerDecoding === 'candidates' });
  const fallback = options.fallbackNotice ? withNotice(retrievalOnly, options.fallbackNotice) : retrievalOnly;
  const jobs = new JobRunner({
    store,
    home: config.home,
    stages: options.stages ?? TRAINING_STAGES,
    logger,
    ...(config.database ? { databaseUrl: config.database.url } : {}),
    ...(config.modelsDir ? { runsDir: join(config.modelsDir, 'runs') } : {}),
    ...(config.jobLeaseMs !== undefined ? { leaseMs: config.jobLeaseMs } : {}),
  });
  const registry = new ModelRegistry(config.home, config.modelsDir);
  const models = new RegistryModelService({
    registry,
    store,
    ...(store instanceof PgStore ? { serialise: <T>(work: () => Promise<T>) => store.withPromotionLock(work) } : {}),
    logger,
    fallback,
    // An imported open chat model (teamllm model import): retrieval and the "don't know" gate as
    // the candidate answerer, the answer generated through the model's own chat template.
    chatWorker: config.chatModelThread === 'worker',
    servingEngine: config.servingEngine === 'llama.cpp' ? { engine: 'llama.cpp', ...options.llamaCpp } : 'teamllm',
    chatAnswererFor: (chat, version) =>
      knowledge.answerer({
        chat,
        model: { name: version.name ?? version.architecture ?? 'imported chat model', version: version.version, kind: 'language-model' },
        scope,
      }),
    // The project's own model behind LangChain, fed the chat template it was fine-tuned on.
    // Prompted as SFT trained it and the QA evaluation scored it (answer-settings.ts).
    answererFor: (model) => {
      if (config.answerDecoding === 'candidates') {
        // The model chooses among answers proposed from the passages (rag/candidate-answerer.ts).
        return knowledge.answerer({ scorer: new ModelCandidateScorer(model, answerSettings(model)), scope });
      }
      const settings = answerSettings(model, config.answerDecoding);
      return knowledge.answerer({
        llm: new LocalChatModel({ model, generation: answerGeneration(settings), constrain: answerConstraint(model, settings) }),
        model: { name: 'teamllm', version: model.info.version, kind: 'language-model' },
        passages: settings.passages,
        messages: qaPromptMessages(model, settings),
        scope,
      });
    },
  });
  const bot = new Bot({
    store,
    answerer: fallback,
    admins,
    kb,
    training: new ChatTrainingService(jobs, store, logger, config.publicUrl ? { publicUrl: config.publicUrl } : {}),
    models,
    rateLimit: config.rateLimit,
    // Shared by every process on PostgreSQL: a user cannot get N times the limit from N processes.
    ...(store instanceof PgStore ? { rateLimiter: (perMinute: number, burst: number) => store.rateLimiter(perMinute, burst) } : {}),
    memory: config.memory,
    logger,
    observer: metrics,
  });
  models.attach(bot);
  if (!options.answerer) await models.activate();
  // The one promotion rule: a finished job's model serves only if its evaluation gate passed.
  installAutoPromotion(jobs, { registry, models, logger });
  // `/train embeddings` writes a new encoder only when its gate passed: use it, re-embedding the knowledge bases.
  jobs.onSucceeded(async (job) => {
    if (job.kind === 'embeddings' && (job.result as { gate?: { passed?: boolean } } | undefined)?.gate?.passed) await knowledge.reloadEmbeddings();
    return undefined;
  });
  if (options.startJobs) await jobs.init();
  /**
   * The parts running degraded, for /healthz (still 200: the bot answers) and the admin page:
   * `status` becomes "degraded" and `degraded` names them; details beside (docs/operations.md).
   */
  const degradedHealth = () => {
    const vectorStore = knowledge.vectorStore;
    const modelFallback = models.fallback;
    const degraded = [...(vectorStore.state === 'down' ? ['vector_store'] : []), ...(modelFallback ? ['model'] : [])];
    return { ...(degraded.length > 0 ? { status: 'degraded' } : {}), degraded, vectorStore, ...(modelFallback ? { modelFallback } : {}) };
  };
  metrics.watch(() => {
    const vectorStore = knowledge.vectorStore;
    return {
      vectorStoreDown: vectorStore.state === 'down',
      modelFallback: models.fallback !== undefined,
      lexicalOnlySearches: vectorStore.lexicalOnlySearches,
      chromaRestarts: vectorStore.restarts,
    };
  });
  const routes: Hono[] = [];
  if (config.adapters.includes('web')) {
    routes.push(
      webRoutes({
        bot,
        logger,
        ...(config.adminToken ? { adminToken: config.adminToken } : {}),
        sessionSecret: sessionSecret(config.home),
        serviceTokens: config.web.serviceTokens,
        proxies,
        ...(config.web.authUserHeader ? { authUserHeader: config.web.authUserHeader } : {}),
        allowedOrigins: config.web.allowedOrigins,
      }),
    );
  }
  if (config.adminToken) {
    routes.push(
      adminRoutes({
        adminToken: config.adminToken,
        logger,
        sessionTtlMs: config.web.adminSessionMs,
        proxies,
        data: {
          jobs: (limit) => store.listJobs(limit),
          job: (id) => store.getJob(id),
          lossChart: jobLossChart,
          models: () => registry.list(),
          feedbackByDay: (days) => store.feedbackByDay(days),
          audit: (limit) => store.auditLog(limit),
          health: () => degradedHealth(),
          denials: (limit) => store.auditDenials(limit),
        },
      }),
    );
  }
  const adapters: PlatformAdapter[] = [];
  if (options.platformAdapters) {
    for (const name of config.adapters) {
      if (name === 'web') continue;
      const adapter = await ADAPTER_FACTORIES[name]({ bot, logger: logger.child({ adapter: name }), env: config.values, proxies });
      adapters.push(adapter);
      if (adapter.routes) routes.push(adapter.routes);
    }
  }
  const http = createHttpApp({ logger, metrics, serving: () => bot.serving.model, routes, health: () => ({ ...degradedHealth(), ...options.health?.() }) });
  let closed = false;
  return {
    config,
    logger,
    store,
    kb,
    knowledge,
    models,
    bot,
    metrics,
    http,
    adapters,
    jobs,
    consoleUser,
    async close() {
      if (closed) return;
      closed = true;
      // Adapters first: they refuse new deliveries (so platforms retry later) and flush their queues.
      await Promise.allSettled(adapters.map((a) => a.stop?.()));
      await jobs.close();
      await bot.close();
      await models.close();
      await knowledge.close();
      await store.close();
    },
  };
}

export interface RunningServer {
  url: string;
  port: number;
  server: ServerType;
  close(): Promise<void>;
}

export async function startServer(runtime: Runtime, port = runtime.config.port, host = runtime.config.host): Promise<RunningServer> {
  const server = await new Promise<ServerType>((resolveServer, reject) => {
    const s = serve({ fetch: runtime.http.fetch, port, hostname: host }, () => resolveServer(s));
    s.once('error', reject);
  });
  for (const adapter of runtime.adapters) await adapter.start?.();
  const address = server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  const shownHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  return {
    url: `http://${shownHost}:${actualPort}`,
    port: actualPort,
    server,
    close: () =>
      new Promise<void>((done) => {
        // Stop accepting; let streaming answers finish (the Bot drains them), then drop idle sockets.
        server.close(() => done());
        if ('closeIdleConnections' in server) server.closeIdleConnections();
      }),
  };
}
