import { formatMetrics } from '../training/jobs/job-format.ts';
import type { Actor, Answerer, BotStore, Logger, ModelService } from '../core/index.ts';
import type { Bot } from '../core/index.ts';
import type { LoadedModel } from '../model/loaded-model.ts';
import type { ModelRegistry, ModelVersion } from '../model/registry.ts';
import { ServedModels } from '../model/lora/served-models.ts';

export interface RegistryModelServiceOptions {
  registry: ModelRegistry;
  store: BotStore;
  logger: Logger;
  /** Builds the answerer that serves a loaded model (retrieval + generation). */
  answererFor: (model: LoadedModel) => Answerer;
  /** Serves when no version is promoted: the retrieval-only answerer. */
  fallback: Answerer;
  /** Answers still streaming on a replaced model finish before its weights are freed. */
  disposeAfterMs?: number;
}

function describe(v: ModelVersion): string {
  const metrics = formatMetrics(v.metrics);
  const gate = v.gate ? `\n    gate ${v.gate.passed ? 'passed' : 'NOT passed'}${v.gate.reasons.length ? `: ${v.gate.reasons.join('; ')}` : ''}` : '';
  return `${v.serving ? '▶' : '•'} ${v.version}${v.serving ? ' (serving)' : ''} — ${v.source}, ${v.numParameters.toLocaleString('en-US')} parameters, ${v.createdAt.slice(0, 16).replace('T', ' ')}${metrics ? ` — ${metrics}` : ''}${v.parent ? `, from ${v.parent}` : ''}${gate}`;
}

/** How a promotion came about, for the audit log. */
export interface PromotionContext {
  /** Made by the job runner after the stage's evaluation gate passed (not by a person). */
  auto?: boolean;
  /** The training job whose model this is. */
  job?: number;
}

/**
 * /model and `teamllm model`: versions from the registry; promote and rollback swap the Bot's
 * answerer without a restart (answers in flight finish on the old model) and are audited.
 */
export class RegistryModelService implements ModelService {
  private active: { version: string; model: LoadedModel } | undefined;
  private bot: Bot | undefined;
  /** Loaded weights: LoRA versions are served over their base, so switching among them reloads no base. */
  private readonly served: ServedModels;
  private activating: Promise<void> = Promise.resolve();

  constructor(private readonly options: RegistryModelServiceOptions) {
    this.served = new ServedModels(options.registry, {
      disposeAfterMs: options.disposeAfterMs ?? 180_000,
      log: (message, detail) => options.logger.warn(detail, message),
    });
  }

  /** The Bot whose answerer this service swaps (the Bot also needs this service: built first, attached after). */
  attach(bot: Bot): void {
    this.bot = bot;
  }

  private get target(): Bot {
    if (!this.bot) throw new Error('RegistryModelService used before attach(bot)');
    return this.bot;
  }

  serving() {
    return this.target.serving.model;
  }

  async list(): Promise<string> {
    const versions = await this.options.registry.list();
    if (versions.length === 0) return 'No model versions yet: train one with /train pretrain.';
    return versions.map(describe).join('\n');
  }

  async promote(version: string, actor: Actor, context: PromotionContext = {}): Promise<string> {
    const candidate = await this.options.registry.get(version);
    if (!candidate) throw new Error(`No model version ${version} (see /model list)`);
    const current = (await this.options.registry.serving())?.version;
    // Already serving (a stage promoted it): the version before it is the one rollback returns to.
    const before = current === version ? await this.options.registry.previous() : current;
    const promoted = await this.options.registry.promote(version);
    await this.activate();
    // A version that did not pass its evaluation gate (or was never evaluated) is served only because an admin said so.
    const override = !context.auto && !candidate.gate?.passed;
    await this.options.store.audit({
      actor: actor.id,
      action: 'promote',
      detail: {
        version,
        previous: before ?? null,
        ...(context.auto ? { auto: true } : {}),
        ...(context.job !== undefined ? { job: context.job } : {}),
        ...(override ? { override: true, gate: candidate.gate ?? null } : {}),
      },
    });
    const note = override
      ? candidate.gate
        ? ` It did not pass its evaluation gate (${candidate.gate.reasons.join('; ') || 'no reason given'}); promoted by hand, recorded in the audit log.`
        : ' It has no evaluation gate result; promoted by hand, recorded in the audit log.'
      : '';
    return `Now answering with ${promoted.version}${before ? ` (was ${before}; /model rollback returns to it)` : ''}.${note}`;
  }

  async rollback(actor: Actor): Promise<string> {
    const before = (await this.options.registry.serving())?.version;
    const restored = await this.options.registry.rollback();
    await this.activate();
    await this.options.store.audit({ actor: actor.id, action: 'rollback', detail: { from: before ?? null, to: restored?.version ?? null } });
    return restored
      ? `Rolled back: answering with ${restored.version} again (was ${before}).`
      : `Rolled back: no model version serves now (was ${before}); answers quote the knowledge base directly.`;
  }

  /**
   * Makes the Bot serve whatever the registry says serves. Also called periodically by `serve`,
   * so a promotion made from the CLI reaches a running bot.
   */
  activate(): Promise<void> {
    // One at a time: `serve` calls this every few seconds, the first start's hand-over and
    // promotions call it too; two loads of the same version at once would waste a model's memory.
    const next = this.activating.then(() => this.activateNow());
    this.activating = next.catch(() => {});
    return next;
  }

  private async activateNow(): Promise<void> {
    const serving = await this.options.registry.serving();
    if (serving?.version === this.active?.version) return;
    const previous = this.active;
    let how: Record<string, unknown> = {};
    if (!serving) {
      this.active = undefined;
      this.target.setAnswerer(this.options.fallback);
      await this.served.activate(null);
    } else {
      // Bases nothing serves from any more are freed later, after answers in flight on them finish.
      const served = (await this.served.activate(serving.version))!;
      this.active = { version: serving.version, model: served.model };
      this.target.setAnswerer(this.options.answererFor(served.model));
      how = served.adapter ? { adapterOver: served.base, baseReloaded: served.reloaded } : { reloaded: served.reloaded };
    }
    this.options.logger.info({ version: serving?.version ?? 'retrieval-only', previous: previous?.version, ...how }, 'serving model changed');
  }

  close(): void {
    this.served.close();
    this.active = undefined;
  }
}
