import type { AdminList } from './admins.ts';
import type { Answerer, SectionRef } from './answerer.ts';
import { BUILTIN_COMMANDS, helpText, parseCommand, type CommandSpec } from './commands.ts';
import { conversationKey, fitToBudget, type MemoryBudget } from './conversation.ts';
import { silentLogger, type Logger } from './logger.ts';
import { nullObserver, type AnswerOutcome, type BotObserver } from './observer.ts';
import { RateLimiter, type RateLimit } from './rate-limiter.ts';
import type { Actor, KnowledgeBase, ModelService, TrainingService } from './services.ts';
import type { AnswerRecord, BotStore, FeedbackRecord } from './store.ts';
import { StreamUpdater } from './stream-updater.ts';
import type { ConversationTurn, IncomingMessage, Platform, PostedReply, ReplyTarget, Source, Vote } from './types.ts';

export interface BotOptions {
  store: BotStore;
  answerer: Answerer;
  admins: AdminList;
  kb?: KnowledgeBase;
  training?: TrainingService;
  models?: ModelService;
  rateLimit?: { perMinute: number; burst: number };
  /**
   * Where the rate-limit buckets live: default this process's memory; a store shared by several
   * processes (PgStore.rateLimiter) makes the limit hold across all of them.
   */
  rateLimiter?: (perMinute: number, burst: number) => RateLimit;
  memory?: MemoryBudget;
  /** Default pause between streaming updates when the target does not say. */
  streamIntervalMs?: number;
  answerTimeoutMs?: number;
  /**
   * How long a message's claim lasts without an answer before a retry may take it over (the
   * process died mid-answer); default the answer timeout plus a minute.
   */
  claimLeaseMs?: number;
  logger?: Logger;
  observer?: BotObserver;
  commands?: CommandSpec[];
}

export type HandleOutcome =
  | 'duplicate'
  | 'ignored'
  | 'rate_limited'
  | 'command'
  | 'denied'
  | 'greeting'
  | 'shutting_down'
  /** The database stayed locked (by another process) past its busy timeout: this request failed, nothing else. */
  | 'store_busy'
  | AnswerOutcome;

/** What the user is told when the database stays locked past its busy timeout. */
export const STORE_BUSY_REPLY =
  'Sorry — the bot\'s database is locked by another process right now (still busy after waiting for it), so I could not answer this. Please ask again in a moment.';

/**
 * A store error that means "locked by someone else, try later" (SQLite's SQLITE_BUSY after its
 * busy timeout, PostgreSQL's lock_not_available): a clear reply for that request, not a crash.
 */
export function isStoreBusy(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED') || code === '55P03' || /database is locked/i.test(String(e?.message ?? ''));
}

export interface HandleResult {
  outcome: HandleOutcome;
  answerId?: string;
}

export interface VoteInput {
  answerId: string;
  platform: Platform;
  userId: string;
  /** 0 withdraws the user's vote. */
  value: Vote | 0;
  comment?: string;
  /** Withdraw only if the user's current vote is this one (removing a 👍 reaction must not undo a 👎 click). */
  onlyIf?: Vote;
  /** Refuse unless the answer was given to this very user (anonymous web sessions). */
  onlyOwnAnswer?: boolean;
}

export type VoteResult =
  | {
      ok: true;
      feedback?: FeedbackRecord;
      up: number;
      down: number;
      /** The answer voted on, so an adapter can redraw it (Feishu returns the whole card). */
      answer: AnswerRecord;
      /** The user's vote before this one, if any: clicking the same button again can withdraw it. */
      previous?: Vote;
    }
  | { ok: false; reason: 'unknown_answer' | 'not_own_answer' };

/**
 * The platform-agnostic bot: deduplicates deliveries, routes commands, answers questions with
 * streaming, remembers conversations per thread and records answers and votes.
 */
export class Bot {
  private answerer: Answerer;
  private readonly store: BotStore;
  private readonly admins: AdminList;
  private readonly limiter: RateLimit;
  private readonly memory: MemoryBudget;
  private readonly logger: Logger;
  private readonly observer: BotObserver;
  private readonly commands: CommandSpec[];
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly shutdown = new AbortController();
  private closing = false;

  constructor(private readonly options: BotOptions) {
    this.answerer = options.answerer;
    this.store = options.store;
    this.admins = options.admins;
    const rate = options.rateLimit ?? { perMinute: 10, burst: 5 };
    this.limiter = options.rateLimiter?.(rate.perMinute, rate.burst) ?? new RateLimiter(rate.perMinute, rate.burst);
    this.memory = options.memory ?? { maxTurns: 8, maxChars: 4000 };
    this.logger = options.logger ?? silentLogger;
    this.observer = options.observer ?? nullObserver;
    this.commands = options.commands ?? BUILTIN_COMMANDS;
  }

  get serving(): Answerer {
    return this.answerer;
  }

  /** Swaps the answerer for new questions; answers already streaming finish on the old one. */
  setAnswerer(answerer: Answerer): void {
    this.answerer = answerer;
  }

  /**
   * Claims a platform delivery id for adapters' own events (card clicks, vote replies): false
   * when it was seen before, also across restarts.
   */
  claimEvent(platform: Platform, eventId: string): Promise<boolean> {
    return this.store.claimEvent(platform, eventId);
  }

  isAdmin(platform: Platform, userId: string): boolean {
    return this.admins.isAdmin(platform, userId);
  }

  /** Handles one platform event. Adapters acknowledge the platform first, then call this. */
  handle(msg: IncomingMessage, target: ReplyTarget): Promise<HandleResult> {
    const work = this.handleInner(msg, target).catch(async (err: unknown): Promise<HandleResult> => {
      if (!isStoreBusy(err)) throw err;
      this.logger.error({ err, platform: msg.platform, eventId: msg.eventId }, 'the database stayed locked past its busy timeout: this request failed');
      await target.post({ phase: 'notice', text: STORE_BUSY_REPLY }).catch((e: unknown) => this.logger.error({ err: e }, 'could not post the busy reply'));
      return { outcome: 'store_busy' };
    });
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work)).catch(() => {});
    return work;
  }

  private async handleInner(msg: IncomingMessage, target: ReplyTarget): Promise<HandleResult> {
    if (this.closing) return { outcome: 'shutting_down' };
    const conversation = conversationKey(msg);
    if (!msg.isDirect && !msg.mentionsBot) {
      // In a group the bot speaks when addressed, or in a thread it is already part of.
      const inThread = msg.thread !== undefined && (await this.store.recentTurns(conversation, 1)).length > 0;
      if (!inThread) return { outcome: 'ignored' };
    }
    const leaseMs = this.options.claimLeaseMs ?? (this.options.answerTimeoutMs ?? 120_000) + 60_000;
    if (!(await this.store.claimEvent(msg.platform, msg.eventId, { leaseMs }))) {
      this.observer.duplicate(msg.platform);
      this.logger.info({ platform: msg.platform, eventId: msg.eventId }, 'duplicate delivery dropped');
      return { outcome: 'duplicate' };
    }
    let result: HandleResult = { outcome: 'error' };
    try {
      result = await this.route(msg, target, conversation);
      return result;
    } finally {
      // The id is used up only once something was answered; otherwise the client's retry is handled.
      const answered = result.answerId !== undefined || ['command', 'denied', 'greeting', 'ignored'].includes(result.outcome);
      await (answered ? this.store.confirmEvent(msg.platform, msg.eventId) : this.store.releaseEvent(msg.platform, msg.eventId)).catch((err: unknown) =>
        this.logger.error({ err, eventId: msg.eventId }, 'could not settle the message claim'),
      );
    }
  }

  private async route(msg: IncomingMessage, target: ReplyTarget, conversation: string): Promise<HandleResult> {
    const log = this.logger.child({ platform: msg.platform, eventId: msg.eventId, user: msg.user.id });
    const text = msg.text.trim();
    if (!text && !msg.regenerate && !msg.fromSection) {
      await target.post({ phase: 'notice', text: 'Hi! Ask me a question about the company, or type /help.' });
      return { outcome: 'greeting' };
    }
    // Commands count too (`/kb search` costs a retrieval like a question, and a refused `/train`
    // an audit write); admins are configured, vouched-for people and are not throttled.
    const waitSeconds = this.isAdmin(msg.platform, msg.user.id) ? 0 : await this.limiter.take(msg.rateLimitKey ?? `${msg.platform}:${msg.user.id}`);
    if (waitSeconds > 0) {
      this.observer.rateLimited(msg.platform);
      await target.post({
        phase: 'notice',
        text: `You're asking faster than I can keep up — please try again in ${waitSeconds} s.`,
      });
      return { outcome: 'rate_limited' };
    }
    if (msg.regenerate || msg.fromSection) return this.regenerate(msg, msg.regenerate ?? msg.fromSection!.answer, target, log);
    const command = parseCommand(text);
    if (command) return this.runCommand(msg, target, command, conversation, log);
    return this.answer(msg, target, conversation, log);
  }

  /**
   * "Another answer": the question of answer `answerId` again, in its conversation, with the
   * answers already given to it there to avoid. A 👍 on one and a 👎 on the other make the
   * preference pairs the reward model learns most from (training/feedback-datasets.ts).
   */
  private async regenerate(msg: IncomingMessage, answerId: string, target: ReplyTarget, log: Logger): Promise<HandleResult> {
    const check = await this.canRegenerate(answerId, msg);
    if (!check.ok) {
      await target.post({ phase: 'notice', text: 'That answer is not one I gave in this conversation, so I cannot give another one for it.' });
      return { outcome: 'denied' };
    }
    const original = check.answer;
    // The conversation the answer was given in (not where the click came from: a DM's button is in no thread).
    const { thread: _clickedIn, ...rest } = msg;
    const conversation = conversationKey({ ...rest, ...(original.thread ? { thread: original.thread } : {}), messageId: original.messageId });
    const turns = await this.store.recentTurns(conversation, this.memory.maxTurns + 16);
    // The turns since the question was last asked are its answers so far; what came before is its history.
    const last = turns.findLastIndex((t) => t.role === 'user' && t.text === original.question);
    const asked = last >= 0 ? last : turns.length;
    const given = turns.slice(asked + 1).filter((t) => t.role === 'assistant').map((t) => t.text);
    const avoid = [...new Set([original.output, ...given])];
    const history = fitToBudget(turns.slice(0, asked), this.memory);
    // "Answer from this section": the asker chose where the answer is; nothing to avoid there.
    const section = msg.fromSection ? { source: msg.fromSection.source, title: msg.fromSection.title } : undefined;
    return this.answer({ ...msg, text: original.question }, target, conversation, log, { history, avoid: section ? [] : avoid, askedAgain: asked < turns.length, ...(section ? { section } : {}) });
  }

  private async runCommand(
    msg: IncomingMessage,
    target: ReplyTarget,
    command: NonNullable<ReturnType<typeof parseCommand>>,
    conversation: string,
    log: Logger,
  ): Promise<HandleResult> {
    const actor: Actor = { id: `${msg.platform}:${msg.user.id}`, isAdmin: this.isAdmin(msg.platform, msg.user.id) };
    if (command.name === 'help') {
      this.observer.command(msg.platform, 'help', true);
      await target.post({ phase: 'notice', text: helpText(this.commands, actor.isAdmin) });
      return { outcome: 'command' };
    }
    const spec = this.commands.find((c) => c.name === command.name);
    if (!spec) {
      await target.post({ phase: 'notice', text: `I don't know the command /${command.name}. Type /help to see what I can do.` });
      return { outcome: 'command' };
    }
    const label = `/${spec.name}${command.sub ? ` ${command.sub}` : ''}`;
    if (spec.requiresAdmin(command.sub) && !actor.isAdmin) {
      this.observer.command(msg.platform, spec.name, false);
      log.warn({ command: label }, 'non-admin command refused');
      await this.store.auditDenial(actor.id, label);
      await target.post({ phase: 'notice', text: `Sorry, only admins can run ${label}. Ask one of your teamllm admins.` });
      return { outcome: 'denied' };
    }
    this.observer.command(msg.platform, spec.name, true);
    if (spec.requiresAdmin(command.sub)) {
      await this.store.audit({ actor: actor.id, action: 'command', detail: { command: label, params: command.params } });
    }
    let reply: string;
    try {
      reply = await spec.run({
        command,
        msg,
        actor,
        target,
        services: {
          ...(this.options.kb ? { kb: this.options.kb } : {}),
          ...(this.options.training ? { training: this.options.training } : {}),
          ...(this.options.models ? { models: this.options.models } : {}),
          serving: () => this.answerer.model,
          resetConversation: () => this.store.clearConversation(conversation),
        },
      });
    } catch (err) {
      log.error({ err, command: label }, 'command failed');
      reply = `${label} failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    await target.post({ phase: 'notice', text: reply });
    return { outcome: 'command' };
  }

  private async answer(
    msg: IncomingMessage,
    target: ReplyTarget,
    conversation: string,
    log: Logger,
    again?: { history: ConversationTurn[]; avoid: string[]; askedAgain: boolean; section?: SectionRef },
  ): Promise<HandleResult> {
    const started = performance.now();
    const answerer = this.answerer;
    const model = answerer.model;
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.options.answerTimeoutMs ?? 120_000)]);
    let outcome: AnswerOutcome = 'error';
    let busy = false;
    let answerId: string | undefined;
    let posted: PostedReply;
    try {
      posted = await target.post({ phase: 'thinking', text: 'Thinking…', model });
    } catch (err) {
      // Without a message to update there is no one to answer; the platform API is down or refuses us.
      log.error({ err }, 'could not post the reply placeholder');
      this.observer.answer(msg.platform, 'error', (performance.now() - started) / 1000);
      return { outcome: 'error' };
    }
    const updater = new StreamUpdater(posted, target.streamIntervalMs ?? this.options.streamIntervalMs ?? 400, log);
    try {
      const history = again?.history ?? fitToBudget(await this.store.recentTurns(conversation, this.memory.maxTurns), this.memory);
      let text = '';
      let sources: Source[] = [];
      let near: Source[] | undefined;
      let prompt = '';
      let direct: string | undefined;
      const user = { platform: msg.platform, id: msg.user.id, ...(msg.user.name ? { name: msg.user.name } : {}) };
      const request = { question: msg.text.trim(), history, user, channel: msg.channel, signal, ...(again ? { avoid: again.avoid } : {}), ...(again?.section ? { section: again.section } : {}) };
      for await (const event of answerer.answer(request)) {
        if (event.type === 'sources') {
          sources = event.sources;
          near = event.near;
        }
        else if (event.type === 'token') {
          text += event.text;
          if (target.updatable !== false) updater.push({ phase: 'streaming', text, model });
        } else {
          prompt = event.prompt;
          direct = event.direct;
        }
        if (signal.aborted) break;
      }
      if (signal.aborted) throw signal.reason ?? new Error('cancelled');
      const record = await this.store.saveAnswer({
        platform: msg.platform,
        workspace: msg.workspace,
        channel: msg.channel,
        ...(msg.thread ? { thread: msg.thread } : {}),
        messageId: msg.messageId,
        userId: msg.user.id,
        ...(msg.user.name ? { userName: msg.user.name } : {}),
        question: msg.text.trim(),
        passages: sources,
        prompt,
        output: text,
        modelName: model.name,
        modelVersion: model.version,
        latencyMs: Math.round(performance.now() - started),
      });
      answerId = record.id;
      await this.store.setAnswerReply(record.id, posted.id);
      const now = Date.now();
      // Another answer continues the question's turn: its user turn is already there.
      if (!again?.askedAgain) await this.store.appendTurn(conversation, { role: 'user', text: msg.text.trim(), at: now });
      await this.store.appendTurn(conversation, { role: 'assistant', text, at: now });
      await updater.finish({ phase: 'final', text, sources, ...(near?.length && !sources.length ? { near } : {}), ...(direct !== undefined ? { direct } : {}), answerId: record.id, model });
      outcome = sources.length > 0 ? 'answered' : 'no_answer';
    } catch (err) {
      outcome = signal.aborted ? 'cancelled' : 'error';
      busy = outcome === 'error' && isStoreBusy(err);
      log.error({ err, outcome, ...(busy ? { storeBusy: true } : {}) }, 'answering failed');
      await updater
        .finish({
          phase: 'error',
          text:
            outcome === 'cancelled'
              ? 'Sorry — I had to stop before finishing this answer. Please ask again.'
              : busy
                ? STORE_BUSY_REPLY
                : 'Sorry — something went wrong while answering. The error was logged; please try again.',
        })
        .catch((e: unknown) => log.error({ err: e }, 'could not post the error reply'));
    }
    this.observer.answer(msg.platform, outcome, (performance.now() - started) / 1000);
    return { outcome: busy ? 'store_busy' : outcome, ...(answerId ? { answerId } : {}) };
  }

  /**
   * Whether "another answer" for `answerId` may be asked from `where`: someone who could not see
   * the answer cannot ask for another (same platform, workspace and channel). The Bot checks this
   * itself when it handles a `regenerate` message; adapters that must answer a click at once (a
   * Feishu toast) ask first, so a refusal is told to the clicker rather than posted in the chat.
   */
  async canRegenerate(
    answerId: string,
    where: Pick<IncomingMessage, 'platform' | 'workspace' | 'channel'>,
  ): Promise<{ ok: true; answer: AnswerRecord } | { ok: false; reason: 'unknown_answer' | 'other_conversation' }> {
    const answer = await this.store.getAnswer(answerId);
    if (!answer) return { ok: false, reason: 'unknown_answer' };
    if (answer.platform !== where.platform || answer.channel !== where.channel || answer.workspace !== where.workspace) return { ok: false, reason: 'other_conversation' };
    return { ok: true, answer };
  }

  /** Records (or withdraws, with 0) a user's vote on an answer. */
  async vote(input: VoteInput): Promise<VoteResult> {
    const answer = await this.store.getAnswer(input.answerId);
    if (!answer) return { ok: false, reason: 'unknown_answer' };
    if (input.onlyOwnAnswer && (answer.platform !== input.platform || answer.userId !== input.userId)) return { ok: false, reason: 'not_own_answer' };
    const previous = (await this.store.feedbackFor(input.answerId)).find((f) => f.platform === input.platform && f.userId === input.userId)?.value;
    let feedback: FeedbackRecord | undefined;
    if (input.value === 0) {
      if (input.onlyIf === undefined || input.onlyIf === previous) await this.store.removeFeedback(input.answerId, input.platform, input.userId);
    }
    else
      feedback = await this.store.recordFeedback({
        answerId: input.answerId,
        platform: input.platform,
        userId: input.userId,
        value: input.value,
        ...(input.comment ? { comment: input.comment } : {}),
      });
    this.observer.feedback(input.platform, input.value);
    const all = await this.store.feedbackFor(input.answerId);
    return {
      ok: true,
      answer,
      ...(previous !== undefined ? { previous } : {}),
      ...(feedback ? { feedback } : {}),
      up: all.filter((f) => f.value === 1).length,
      down: all.filter((f) => f.value === -1).length,
    };
  }

  /**
   * A vote given on the platform's message rather than on a button (a 👍 reaction, a "👎" reply):
   * finds the answer posted as `replyId`. Returns undefined when that message is not a bot answer.
   */
  async voteOnReply(
    platform: Platform,
    replyId: string,
    userId: string,
    value: Vote | 0,
    comment?: string,
    onlyIf?: Vote,
  ): Promise<(VoteResult & { answerId: string }) | undefined> {
    const answer = await this.store.findAnswerByReply(platform, replyId);
    if (!answer) return undefined;
    const result = await this.vote({ answerId: answer.id, platform, userId, value, ...(comment ? { comment } : {}), ...(onlyIf ? { onlyIf } : {}) });
    return { ...result, answerId: answer.id };
  }

  /** Stops taking new work, lets answers in flight finish for up to `graceMs`, then cancels them. */
  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    const pending = Promise.allSettled([...this.inFlight]);
    const timer = setTimeout(() => this.shutdown.abort(new Error('shutting down')), graceMs);
    await pending;
    clearTimeout(timer);
    this.shutdown.abort(new Error('shutting down'));
  }
}
