/**
 * The first start serves at once: `teamllm serve` listens before the quickstart has trained
 * anything, answers retrieval-only (with a line saying that the bot's own model is being trained,
 * and how far along it is), runs the quickstart in a worker thread, and hands the answering over to
 * the trained model when it finishes — no restart. If the quickstart fails, the bot keeps answering
 * retrieval-only and /healthz says why; the next start retries (resuming from its checkpoints).
 */
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { AnswerEvent, AnswerRequest, Answerer, JobProgress, Logger, ModelInfo } from '../core/index.ts';
import type { Config } from './config.ts';
import { silentReporter, type QuickstartInputs, type QuickstartOutcome, type QuickstartRecipe, type QuickstartReporter, type QuickstartStage } from './quickstart.ts';
import { hasCjk } from '../model/text/cjk.ts';

/** What the quickstart worker is given (structured-cloned into the worker thread). */
export interface QuickstartWorkerInput {
  config: Config;
  logLevel: string;
  recipe?: QuickstartRecipe;
  inputs?: QuickstartInputs;
}

/** What the quickstart worker reports: the reporter's calls, then how it ended. */
export type QuickstartWorkerMessage =
  | { type: 'stage'; name: QuickstartStage; cached: boolean }
  | { type: 'progress'; progress: JobProgress }
  | { type: 'done'; name: QuickstartStage; line: string }
  | { type: 'log'; line: string }
  | { type: 'finished'; outcome: QuickstartOutcome }
  | { type: 'failed'; error: string; stopped: boolean };

/** Runs the quickstart, reporting as it goes; `signal` stops it (it keeps its checkpoints). */
export type QuickstartRunner = (options: { reporter: QuickstartReporter; signal: AbortSignal }) => Promise<QuickstartOutcome>;

const BOOTSTRAP = new URL('./quickstart-worker-bootstrap.mjs', import.meta.url);

/** The quickstart in a worker thread (src/app/quickstart-worker.ts), so the server's thread stays free to answer. */
export function workerQuickstartRunner(input: QuickstartWorkerInput, options: { stopGraceMs?: number } = {}): QuickstartRunner {
  return ({ reporter, signal }) =>
    new Promise<QuickstartOutcome>((resolve, reject) => {
      const worker = new Worker(BOOTSTRAP, { workerData: input });
      let settled = false;
      let kill: NodeJS.Timeout | undefined;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        fn();
      };
      const onAbort = () => {
        worker.postMessage({ type: 'stop' });
        // A stage that does not look at the signal (the tokenizer's merges) is ended; checkpoints stay.
        kill = setTimeout(() => void worker.terminate(), options.stopGraceMs ?? 30_000);
        kill.unref();
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      worker.on('message', (message: QuickstartWorkerMessage) => {
        switch (message.type) {
          case 'stage':
            return reporter.stage(message.name, message.cached);
          case 'progress':
            return reporter.progress(message.progress);
          case 'done':
            return reporter.done(message.name, message.line);
          case 'log':
            return reporter.log(message.line);
          case 'finished':
            return settle(() => resolve(message.outcome));
          case 'failed':
            return settle(() => reject(new Error(message.error)));
        }
      });
      worker.on('error', (err) => settle(() => reject(err)));
      worker.on('exit', (code) => {
        if (kill) clearTimeout(kill);
        settle(() => reject(new Error(signal.aborted ? 'quickstart stopped' : `the quickstart's worker thread exited with code ${code}`)));
      });
    });
}

const STAGES: readonly QuickstartStage[] = ['tokenizer', 'pretrain', 'sft', 'ingest'];
const TITLES: Record<'en' | 'zh', Record<string, string>> = {
  en: { tokenizer: 'tokenizer', pretrain: 'pretraining', sft: 'LoRA fine-tuning', ingest: 'retrieval encoder', evaluate: 'evaluating', encoder: 'retrieval encoder' },
  zh: { tokenizer: '分词器', pretrain: '预训练', sft: 'LoRA 微调', ingest: '检索编码器', evaluate: '评估', encoder: '检索编码器' },
};

export interface BackgroundQuickstartStatus {
  state: 'training' | 'done' | 'failed' | 'stopped';
  recipe: string;
  /** Why it runs (e.g. "no model is serving yet"). */
  reason: string;
  startedAt: string;
  finishedAt?: string;
  /** The stage running now, e.g. `{ name: 'pretrain', number: 2, of: 4 }`. */
  stage?: { name: QuickstartStage; number: number; of: number };
  /** The running stage's progress (its part, e.g. 'evaluate' during SFT), when it reports one. */
  progress?: { part: string; step: number; totalSteps: number; percent: number; etaSeconds?: number };
  /** What serves after it finished. */
  summary?: string;
  /** Why it failed. */
  error?: string;
  /** One line for people: what is happening and what the bot answers with meanwhile. */
  message: string;
}

export interface BackgroundQuickstartOptions {
  runner: QuickstartRunner;
  /** The recipe's name and why the quickstart runs (shown in /healthz). */
  recipe: string;
  reason: string;
  logger: Logger;
  /** Also told every stage, progress step and log line (the terminal's progress bars). */
  reporter?: QuickstartReporter;
}

/** What serves after the hand-over (for the log and /healthz). */
export type TakeOver = (outcome: QuickstartOutcome) => Promise<ModelInfo>;

/**
 * The quickstart running behind a serving bot: its status (for /healthz and the answers' notice),
 * the hand-over to the trained model when it finishes, and stopping it (Ctrl+C keeps the
 * checkpoints). Emits `finished` with the final status, whether it succeeded or not.
 */
export class BackgroundQuickstart extends EventEmitter<{ finished: [status: BackgroundQuickstartStatus] }> {
  private current: Omit<BackgroundQuickstartStatus, 'message'>;
  private readonly controller = new AbortController();
  private run: Promise<BackgroundQuickstartStatus> | undefined;

  constructor(private readonly options: BackgroundQuickstartOptions) {
    super();
    this.current = { state: 'training', recipe: options.recipe, reason: options.reason, startedAt: new Date().toISOString() };
  }

  get status(): BackgroundQuickstartStatus {
    return { ...this.current, message: this.describe('en') };
  }

  get training(): boolean {
    return this.current.state === 'training';
  }

  /** Resolves with the final status once the quickstart ended (and, on success, the model took over). */
  get finished(): Promise<BackgroundQuickstartStatus> {
    if (!this.run) throw new Error('BackgroundQuickstart.finished before start()');
    return this.run;
  }

  /** Starts the quickstart; `takeOver` makes its model serve when it succeeds. Never rejects. */
  start(takeOver: TakeOver): Promise<BackgroundQuickstartStatus> {
    this.run ??= this.execute(takeOver);
    return this.run;
  }

  /** Stops a running quickstart (it saves a checkpoint first; the next start resumes it). */
  async stop(): Promise<void> {
    if (!this.run || this.current.state !== 'training') return;
    this.controller.abort();
    await this.run;
  }

  /**
   * The line added to retrieval-only answers while the model trains, in the question's language;
   * undefined when nothing is training.
   */
  notice(request: Pick<AnswerRequest, 'question'>): string | undefined {
    if (this.current.state !== 'training') return undefined;
    const zh = hasCjk(request.question);
    const where = this.where(zh ? 'zh' : 'en');
    return zh
      ? `⏳ 本机器人自己的模型正在训练中${where ? `（${where}）` : ''}。训练完成前，回答直接摘自知识库；完成后模型会自动接替，无需重启。`
      : `⏳ This bot's own model is being trained${where ? ` (${where})` : ''}. Until it is ready, answers are quoted from the knowledge base; the model takes over by itself when it is done.`;
  }

  private async execute(takeOver: TakeOver): Promise<BackgroundQuickstartStatus> {
    const { logger } = this.options;
    const outer = this.options.reporter ?? silentReporter;
    const reporter: QuickstartReporter = {
      stage: (name, cached) => {
        this.current = { ...this.current, stage: { name, number: STAGES.indexOf(name) + 1, of: STAGES.length } };
        delete this.current.progress;
        outer.stage(name, cached);
      },
      progress: (p) => {
        const percent = p.totalSteps > 0 ? Math.min(100, Math.floor((100 * p.step) / p.totalSteps)) : 0;
        this.current = {
          ...this.current,
          progress: { part: p.stage, step: p.step, totalSteps: p.totalSteps, percent, ...(p.etaSec !== undefined ? { etaSeconds: Math.round(p.etaSec) } : {}) },
        };
        outer.progress(p);
      },
      done: (name, line) => outer.done(name, line),
      log: (line) => outer.log(line),
    };
    const t0 = performance.now();
    try {
      const outcome = await this.options.runner({ reporter, signal: this.controller.signal });
      const serving = await takeOver(outcome);
      const summary = outcome.ran ? outcome.state.summary : `nothing to train (${outcome.reason})`;
      this.end({ state: 'done', summary });
      logger.info(
        { summary, model: serving.name, version: serving.version, seconds: Math.round((performance.now() - t0) / 1000) },
        `quickstart finished: ${serving.kind === 'retrieval-only' ? 'still answering retrieval-only' : `model ${serving.version} now answers (took over without a restart)`}`,
      );
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      if (this.controller.signal.aborted) {
        this.end({ state: 'stopped', error });
        logger.info({ error }, 'quickstart stopped; the next start resumes it from its checkpoints');
      } else {
        this.end({ state: 'failed', error });
        logger.error({ error }, 'quickstart failed: answering retrieval-only; the next start retries, resuming from its checkpoints');
      }
    }
    const status = this.status;
    this.emit('finished', status);
    return status;
  }

  private end(patch: Pick<BackgroundQuickstartStatus, 'state'> & Partial<BackgroundQuickstartStatus>): void {
    const { stage: _stage, progress: _progress, ...rest } = this.current;
    this.current = { ...rest, ...patch, finishedAt: new Date().toISOString() };
  }

  /** "2/4 pretraining: 45%, about 1 min left in this stage" */
  private where(lang: 'en' | 'zh'): string {
    const { stage, progress } = this.current;
    if (!stage) return '';
    const titles = TITLES[lang];
    const part = progress && progress.part !== stage.name && titles[progress.part] !== titles[stage.name] ? titles[progress.part] ?? progress.part : undefined;
    const name = `${stage.number}/${stage.of} ${titles[stage.name]}${part ? (lang === 'zh' ? `（${part}）` : ` (${part})`) : ''}`;
    if (!progress) return name;
    const left = progress.etaSeconds !== undefined ? eta(progress.etaSeconds, lang) : '';
    return lang === 'zh' ? `${name}：${progress.percent}%${left ? `，本阶段${left}` : ''}` : `${name}: ${progress.percent}%${left ? `, ${left} in this stage` : ''}`;
  }

  private describe(lang: 'en' | 'zh'): string {
    const s = this.current;
    switch (s.state) {
      case 'training': {
        const where = this.where(lang);
        return `the bot's own model is being trained${where ? ` (${where})` : ''}; until it is ready, answers are retrieval-only (quoted from the knowledge base)`;
      }
      case 'done':
        return `the quickstart finished: ${s.summary}`;
      case 'failed':
        return `the quickstart failed: ${s.error}; answers are retrieval-only; the next start retries it, resuming from its checkpoints`;
      case 'stopped':
        return 'the quickstart was stopped; the next start resumes it from its checkpoints';
    }
  }
}

function eta(seconds: number, lang: 'en' | 'zh'): string {
  if (seconds < 60) return lang === 'zh' ? `约剩 ${Math.max(1, seconds)} 秒` : `about ${Math.max(1, seconds)} s left`;
  const minutes = Math.ceil(seconds / 60);
  return lang === 'zh' ? `约剩 ${minutes} 分钟` : `about ${minutes} min left`;
}

/**
 * Adds a line at the end of every answer while `notice` returns one (the retrieval-only answers
 * given while the model trains); answers pass through unchanged otherwise.
 */
export function withNotice(answerer: Answerer, notice: (request: AnswerRequest) => string | undefined): Answerer {
  return {
    get model() {
      return answerer.model;
    },
    async *answer(request: AnswerRequest): AsyncIterable<AnswerEvent> {
      const line = notice(request);
      let last = '';
      for await (const event of answerer.answer(request)) {
        if (event.type === 'done' && line) yield { type: 'token', text: `${last === '' ? '' : last.endsWith('\n\n') ? '' : last.endsWith('\n') ? '\n' : '\n\n'}${line}` };
        else if (event.type === 'token' && event.text) last = event.text;
        yield event;
      }
    },
  };
}
