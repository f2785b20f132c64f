import type { Actor, Answerer, BotStore, Logger, ModelService } from '../core/index.ts';
import type { Bot } from '../core/index.ts';
import type { LoadedModel } from '../model/loaded-model.ts';
import type { ModelRegistry, ModelVersion } from '../model/registry.ts';

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
  const metrics = Object.entries(v.metrics)
    .map(([k, x]) => `${k} ${Number.isInteger(x) ? x : x.toFixed(3)}`)
    .join(', ');
  return `${v.serving ? '▶' : '•'} ${v.version}${v.serving ? ' (serving)' : ''} — ${v.source}, ${v.numParameters.toLocaleString('en-US')} parameters, ${v.createdAt.slice(0, 16).replace('T', ' ')}${metrics ? ` — ${metrics}` : ''}${v.parent ? `, from ${v.parent}` : ''}`;
}

/**
 * /model and `teamllm model`: versions from the registry; promote and rollback swap the Bot's
 * answerer without a restart (answers in flight finish on the old model) and are audited.
 */
export class RegistryModelService implements ModelService {
  private active: { version: string; model: LoadedModel } | undefined;
  private bot: Bot | undefined;

  constructor(private readonly options: RegistryModelServiceOptions) {}

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

  async promote(version: string, actor: Actor): Promise<string> {
    const before = (await this.options.registry.serving())?.version;
    const promoted = await this.options.registry.promote(version);
    await this.activate();
    await this.options.store.audit({ actor: actor.id, action: 'promote', detail: { version, previous: before ?? null } });
    return `Now answering with ${promoted.version}${before ? ` (was ${before}; /model rollback returns to it)` : ''}.`;
  }

  async rollback(actor: Actor): Promise<string> {
    const before = (await this.options.registry.serving())?.version;
    const restored = await this.options.registry.rollback();
    await this.activate();
    await this.options.store.audit({ actor: actor.id, action: 'rollback', detail: { from: before ?? null, to: restored.version } });
    return `Rolled back: answering with ${restored.version} again (was ${before}).`;
  }

  /**
   * Makes the Bot serve whatever the registry says serves. Also called periodically by `serve`,
   * so a promotion made from the CLI reaches a running bot.
   */
  async activate(): Promise<void> {
    const serving = await this.options.registry.serving();
    if (serving?.version === this.active?.version) return;
    const previous = this.active;
    if (!serving) {
      this.active = undefined;
      this.target.setAnswerer(this.options.fallback);
    } else {
      const model = await this.options.registry.loadServing();
      if (!model) return;
      this.active = { version: serving.version, model };
      this.target.setAnswerer(this.options.answererFor(model));
    }
    this.options.logger.info({ version: serving?.version ?? 'retrieval-only', previous: previous?.version }, 'serving model changed');
    if (previous) setTimeout(() => previous.model.dispose(), this.options.disposeAfterMs ?? 180_000).unref();
  }

  close(): void {
    this.active?.model.dispose();
    this.active = undefined;
  }
}
