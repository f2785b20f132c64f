import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig, type Config, type ConfigKey } from '../app/config.ts';
import { describeInputs, quickstartInputs, resolveRecipe, runQuickstart } from '../app/quickstart.ts';
import { terminalQuickstartReporter } from './quickstart-reporter.ts';
import { createLogger } from '../app/logger.ts';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { createRuntime, type Runtime, type RuntimeOptions } from '../app/runtime.ts';
import { startServing, type Serving } from '../app/serve.ts';
import type { BackgroundQuickstart } from '../app/background-quickstart.ts';
import type { JobRecord } from '../core/index.ts';
import { ChatTrainingService } from '../training/chat-training-service.ts';
import { formatDuration, formatJob } from '../training/jobs/job-format.ts';
import { jobProgressBar } from './job-progress-bar.ts';
import { runConsoleChat } from '../adapters/console/index.ts';
import { WebReplyChannel } from '../adapters/web/index.ts';
import { EXPORT_KINDS, exportDataset, type ExportKind } from '../training/feedback-datasets.ts';
import { evaluateRetrieval, formatEvaluation } from '../rag/index.ts';
import { EvalQaError, evalQa } from './eval-qa.ts';
import { evalAnswers } from './eval-answers.ts';

/** Thrown for a user error the CLI should print plainly (no stack) and exit with `code`. */
class CliError extends Error {
  constructor(
    message: string,
    readonly code = 1,
  ) {
    super(message);
  }
}

const TRAIN_KINDS = ['tokenizer', 'pretrain', 'sft', 'embeddings', 'reward', 'rlhf', 'selector'];

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

async function withRuntime<T>(
  program: Command,
  overrides: Partial<Record<ConfigKey, string>>,
  fn: (runtime: Runtime) => Promise<T>,
  quiet = true,
  runtimeOptions: RuntimeOptions = {},
): Promise<T> {
  const config = loadConfig({ file: program.opts<{ config?: string }>().config, overrides });
  // One-shot commands keep stderr quiet unless the user asked for a log level.
  const level = quiet && !config.values.TEAMLLM_LOG_LEVEL ? 'warn' : config.logLevel;
  const runtime = await createRuntime(config, { logger: createLogger(level), defaultMetrics: !quiet, ...runtimeOptions });
  try {
    return await fn(runtime);
  } finally {
    await runtime.close();
  }
}

/** Parameters from --config (YAML/JSON), --data and --set, as the key=value strings stages take. */
function trainingParams(opts: { config?: string; data?: string; base?: string; set?: string[] }): Record<string, string> {
  const params: Record<string, string> = {};
  if (opts.config) {
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(opts.config, 'utf8'));
    } catch (err) {
      throw new CliError(`cannot read the training config ${opts.config}: ${(err as Error).message}`);
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError(`${opts.config} must be a mapping of key: value`);
    for (const [k, v] of Object.entries(parsed)) params[k] = String(v);
  }
  if (opts.data) params.data = opts.data;
  if (opts.base) params.base = opts.base;
  for (const pair of opts.set ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError(`--set takes key=value, got "${pair}"`);
    params[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return params;
}

function notYet(what: string): never {
  throw new CliError(`${what} is not available in this version of teamllm yet.`, 2);
}

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

export function buildProgram(): Command {
  const program = new Command('teamllm')
    .description("Your company's own language model in its team chat")
    .option('-c, --config <file>', 'configuration file (YAML or JSON with the same keys as the environment); before the command')
    // `train --config` is the training configuration: program options only count before the command.
    .enablePositionalOptions()
    .showHelpAfterError();

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

  program
    .command('chat')
    .description('chat with the bot in the terminal (rate answers with + or -)')
    .action(async () => {
      await withRuntime(program, {}, async (runtime) => {
        await runConsoleChat({ bot: runtime.bot, input: process.stdin, output: process.stdout, user: runtime.consoleUser });
      });
    });

  program
    .command('ask')
    .description('ask one question and print the answer')
    .argument('<question...>')
    .option('--json', 'print {answer, direct, sources, model} as JSON')
    .action(async (words: string[], opts: { json?: boolean }) => {
      await withRuntime(program, {}, async (runtime) => {
        const channel = new WebReplyChannel(() => {});
        const question = words.join(' ');
        const result = await runtime.bot.handle(
          {
            platform: 'console',
            eventId: `ask-${process.pid}-${Date.now()}`,
            workspace: '',
            channel: 'cli',
            messageId: `ask-${Date.now()}`,
            user: { id: runtime.consoleUser },
            text: question,
            isDirect: true,
            mentionsBot: true,
            attachments: [],
          },
          channel,
        );
        const reply = channel.latest;
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify({ answer: reply?.text ?? '', direct: reply?.direct ?? '', sources: reply?.sources ?? [], model: runtime.bot.serving.model.name, answerId: result.answerId ?? null })}\n`,
          );
        } else {
          process.stdout.write(`${reply?.text ?? ''}\n`);
          reply?.sources?.forEach((s, i) => process.stdout.write(`[${i + 1}] ${s.title} — ${s.source}\n`));
        }
        if (result.outcome === 'error' || result.outcome === 'cancelled') throw new CliError('the answer failed; see the log above');
      });
    });

  const kb = program.command('kb').description('the knowledge base');
  kb.command('add')
    .description('add files, folders or URLs (md, txt, html, pdf, docx); changed files are re-indexed, unchanged ones skipped')
    .argument('<paths...>')
    .option('--kb <name>', 'a named knowledge base (bind channels to it with TEAMLLM_CHANNEL_KB)')
    .action(async (paths: string[], opts: { kb?: string }) => {
      await withRuntime(program, {}, async (runtime) => {
        if (opts.kb !== undefined && !/^[a-zA-Z0-9._-]{1,64}$/.test(opts.kb)) throw new CliError('--kb takes a name of letters, digits, . _ -');
        const target = opts.kb ? await runtime.knowledge.get(opts.kb) : runtime.kb;
        const report = await target.addPaths(paths);
        for (const s of report.added) process.stdout.write(`added      ${s}\n`);
        for (const s of report.updated) process.stdout.write(`updated    ${s}\n`);
        for (const s of report.unchanged) process.stdout.write(`unchanged  ${s}\n`);
        for (const f of report.failed) process.stderr.write(`skipped    ${f.source}: ${f.reason}\n`);
        const ok = report.added.length + report.updated.length + report.unchanged.length;
        process.stdout.write(`${report.added.length} added, ${report.updated.length} updated, ${report.unchanged.length} unchanged, ${report.failed.length} skipped\n`);
        if (ok === 0 && report.failed.length > 0) throw new CliError('nothing could be added');
      });
    });
  kb.command('list')
    .description('documents with their passage counts and when they were indexed')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      await withRuntime(program, {}, async (runtime) => {
        const sources = await runtime.kb.list();
        if (opts.json) process.stdout.write(`${JSON.stringify({ sources })}\n`);
        else for (const s of sources) process.stdout.write(`${s.source}\t${s.chunks} passages\t${new Date(s.indexedAt).toISOString()}\t${s.title}\n`);
      });
    });
  kb.command('remove')
    .description("remove a document's passages")
    .argument('<source>')
    .action(async (source: string) => {
      await withRuntime(program, {}, async (runtime) => {
        const removed = await runtime.kb.remove(source);
        if (removed === 0) throw new CliError(`no document named ${source} in the knowledge base (see teamllm kb list)`);
        process.stdout.write(`removed ${source} (${removed} passages)\n`);
      });
    });
  kb.command('search')
    .description('the passages the bot would use for a question')
    .argument('<query...>')
    .option('--json', 'print {results:[{source, title, text, score}]}')
    .option('--k <n>', 'number of results', positiveInt, 5)
    .action(async (words: string[], opts: { json?: boolean; k: number }) => {
      await withRuntime(program, {}, async (runtime) => {
        const results = await runtime.kb.search(words.join(' '), opts.k);
        if (opts.json) process.stdout.write(`${JSON.stringify({ results })}\n`);
        else
          results.forEach((r, i) =>
            process.stdout.write(`[${i + 1}] ${r.score.toFixed(3)}  ${r.title} — ${r.source}\n    ${r.text.replace(/\s+/g, ' ').slice(0, 160)}\n`),
          );
      });
    });

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

  program
    .command('model')
    .description('model versions: list, promote <version>, rollback (a running bot follows within seconds), verify [version] (files against their recorded sha256)')
    .argument('<action>', 'list|promote|rollback|verify')
    .argument('[version]')
    .action(async (action: string, version: string | undefined) => {
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
        } else throw new CliError(`unknown model action "${action}" (list, promote, rollback, verify)`);
      });
    });

  const evaluate = program.command('eval').description('evaluations');
  evaluate
    .command('retrieval')
    .description('recall@1, recall@5 and MRR of BM25, dense and hybrid retrieval on a question set')
    .requiredOption('--questions <file>', 'JSONL: {id, question, source, lang?, answer?, evidence?, must_contain?, split?} per line (examples/handbook/questions.jsonl or the dev sets\' format)')
    .requiredOption('--kb <dir>', 'the documents the questions are about')
    .option('--split <name>', 'only the questions of this split (e.g. test)')
    .option('--json', 'print the evaluation as JSON')
    .action(async (opts: { questions: string; kb: string; split?: string; json?: boolean }) => {
      const evaluation = await evaluateRetrieval({
        questionsFile: opts.questions,
        kbDir: opts.kb,
        ...(opts.split !== undefined ? { split: opts.split } : {}),
        onProgress: (m) => process.stderr.write(`${m}\n`),
      });
      process.stdout.write(opts.json ? `${JSON.stringify(evaluation)}\n` : `${formatEvaluation(evaluation)}\n`);
    });
  evaluate
    .command('qa')
    .description('answer quality as users see it: the gold fact in the answer, the direct answer (exact match, length), refusals; the served answerer beside the no-model one (--decoding extractive|free: the generating model, EM/F1, beside its base)')
    .requiredOption('--questions <file>', 'JSONL: {question, answer, source?, split?} per line (examples/handbook/questions.jsonl format)')
    .option('--split <name>', 'only the questions of this split (e.g. test, the held-out part)')
    .option('--model <version>', 'the model version to evaluate (default: the serving one)')
    .option('--adapter <name>', 'a LoRA adapter of $TEAMLLM_HOME/adapters, loaded onto the model')
    .option('--k <n>', 'passages retrieved per question (default: as fine-tuned, else 3)', positiveInt)
    .option('--max-tokens <n>', 'answer tokens at most (default: as fine-tuned, else 32)', positiveInt)
    .option('--no-compare', 'do not also evaluate the base of a fine-tuned model')
    .option('--decoding <mode>', 'extractive (answers copied from the retrieved passages) or free (default: as the bot serves it: TEAMLLM_ANSWER_DECODING, else the model\'s meta)')
    .option('--ablation', 'also the parts of the served answerer: rules alone, the selector without the model')
    .option('--json', 'print the scores (and per-question answers) as JSON')
    .action(async (opts: { questions: string; split?: string; model?: string; adapter?: string; k?: number; maxTokens?: number; compare: boolean; decoding?: string; ablation?: boolean; json?: boolean }) => {
      await withRuntime(program, {}, async (runtime) => {
        const served = runtime.config.answerDecoding;
        const progress = (text: string) => process.stderr.isTTY && process.stderr.write(`\r${text}   `);
        if (opts.decoding === undefined && served === 'candidates' && !opts.adapter) {
          await evalAnswers({
            home: runtime.config.home,
            kb: runtime.kb,
            questions: opts.questions,
            ...(opts.split ? { split: opts.split } : {}),
            ...(opts.model ? { model: opts.model } : {}),
            ...(opts.ablation ? { ablation: true } : {}),
            ...(opts.json ? { json: true } : {}),
            out: (text) => process.stdout.write(text),
            progress,
          }).catch((err: unknown) => Promise.reject(err instanceof EvalQaError ? new CliError(err.message) : err));
          if (process.stderr.isTTY) process.stderr.write('\n');
          return;
        }
        await evalQa({
          ...opts,
          // Scores what users get: --decoding, else TEAMLLM_ANSWER_DECODING, else the model's meta.
          ...(opts.decoding === undefined && served !== 'model' && served !== 'candidates' ? { decoding: served } : {}),
          home: runtime.config.home,
          kb: runtime.kb,
          out: (text) => process.stdout.write(text),
          progress: (text) => process.stderr.isTTY && process.stderr.write(`\r${text}   `),
        }).catch((err: unknown) => Promise.reject(err instanceof EvalQaError ? new CliError(err.message) : err));
        if (process.stderr.isTTY) process.stderr.write('\n');
      });
    });

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

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof CliError) {
      process.stderr.write(`teamllm: ${err.message}\n`);
      process.exitCode = err instanceof CliError ? err.code : 2;
      return;
    }
    createLogger('error').error({ err }, 'teamllm failed');
    process.exitCode = 1;
  }
}
