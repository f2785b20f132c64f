/**
 * Several LoRA adapters over one base model in memory, and which one serves — switchable while
 * the bot runs, without reloading the base.
 *
 * Each adapter gets a *view*: a LoadedModel whose GPT shares the base's weight tensors and applies
 * that adapter through the projection hook (unmerged). Views are cheap (only the adapter's A and
 * B tensors are extra) and independent: an answer streaming on one view is not disturbed when the
 * serving adapter changes, so the bot can switch with
 *
 *     const set = new AdapterSet(await registry.loadServing());
 *     await set.load('hr-tone', adapterStore.dir('hr-tone'));    // refuses an adapter of another base
 *     bot.setAnswerer(answererFor(set.use('hr-tone')));           // or set.use(null) for the plain base
 */
import { GPT } from '../gpt.ts';
import { LoadedModel } from '../loaded-model.ts';
import { LoraAdapter } from './adapter.ts';

export interface AdapterInfo {
  name: string;
  dir?: string;
  rank: number;
  alpha: number;
  targets: string[];
  numParameters: number;
  /** Adapter parameters / base parameters. */
  share: number;
  serving: boolean;
  meta: Record<string, unknown>;
}

/** A GPT that shares `base`'s weights (never frees them) and applies `adapter`, if any. */
function view(base: GPT, adapter?: LoraAdapter): GPT {
  const gpt = new GPT(base.config, base.params);
  if (adapter) gpt.projectionHook = adapter.hook();
  // The weights belong to the base model: disposing a view frees nothing.
  gpt.dispose = () => {};
  return gpt;
}

export class AdapterSet {
  private readonly adapters = new Map<string, { adapter: LoraAdapter; dir?: string; model: LoadedModel }>();
  private current: string | null = null;
  private readonly baseView: LoadedModel;

  /** `base` stays owned by the caller until `dispose()`, which frees it too. */
  constructor(readonly base: LoadedModel) {
    if (base.gpt.projectionHook) throw new Error('The base model already has an adapter attached');
    this.baseView = base;
  }

  /** Loads an adapter folder under `name` (replacing one of that name). Refuses an adapter of another base. */
  async load(name: string, dir: string): Promise<AdapterInfo> {
    const adapter = await LoraAdapter.load(dir, this.base.gpt, this.base.info.version);
    adapter.meta = { ...adapter.meta, name };
    return this.add(name, adapter, dir);
  }

  /** Adds an adapter already in memory (checked against the base). The set owns it from now on. */
  add(name: string, adapter: LoraAdapter, dir?: string): AdapterInfo {
    if (!name || name === 'base') throw new Error(`"${name}" cannot name an adapter`);
    adapter.checkBase(this.base.gpt, this.base.info.version);
    const old = this.adapters.get(name);
    const info = this.base.info;
    const model = new LoadedModel(view(this.base.gpt, adapter), this.base.tokenizer, {
      version: `${info.version}+${name}`,
      dir: dir ?? info.dir,
      numParameters: info.numParameters,
      meta: { ...info.meta, adapter: { name, rank: adapter.config.rank, alpha: adapter.config.alpha, targets: adapter.config.targets, ...adapter.meta } },
    });
    this.adapters.set(name, { adapter, model, ...(dir ? { dir } : {}) });
    const oldMerged = this.mergedModels.get(name);
    this.mergedModels.delete(name);
    if (oldMerged) setTimeout(() => oldMerged.dispose(), 60_000).unref();
    // The replaced adapter's tensors may still be in use by an answer streaming on its view.
    if (old) setTimeout(() => old.adapter.dispose(), 60_000).unref();
    return this.info(name);
  }

  names(): string[] {
    return [...this.adapters.keys()];
  }

  has(name: string): boolean {
    return this.adapters.has(name);
  }

  info(name: string): AdapterInfo {
    const e = this.adapters.get(name);
    if (!e) throw new Error(`No adapter "${name}" is loaded (loaded: ${this.names().join(', ') || 'none'})`);
    const a = e.adapter;
    return {
      name,
      ...(e.dir ? { dir: e.dir } : {}),
      rank: a.config.rank,
      alpha: a.config.alpha,
      targets: [...a.config.targets],
      numParameters: a.numParameters,
      share: a.numParameters / this.base.gpt.numParameters,
      serving: this.current === name,
      meta: a.meta,
    };
  }

  list(): AdapterInfo[] {
    return this.names().map((n) => this.info(n));
  }

  /** The model for one adapter (`null` or 'base': the plain base model). */
  model(name: string | null = this.current): LoadedModel {
    if (name === null || name === 'base') return this.baseView;
    const e = this.adapters.get(name);
    if (!e) throw new Error(`No adapter "${name}" is loaded (loaded: ${this.names().join(', ') || 'none'})`);
    return e.model;
  }

  private readonly mergedModels = new Map<string, LoadedModel>();

  /**
   * The adapter merged into new copies of the projections it targets, every other weight shared
   * with the base: a hook-free model, so the native backend's fused path serves it (about 4-5x
   * the tokens/s of the unmerged view). Made on first use (no disk read), kept until
   * `dropMerged`, `unload` or `dispose`. Same logits as the view to 1e-4.
   */
  merged(name: string): LoadedModel {
    const cached = this.mergedModels.get(name);
    if (cached) return cached;
    const e = this.adapters.get(name);
    if (!e) throw new Error(`No adapter "${name}" is loaded (loaded: ${this.names().join(', ') || 'none'})`);
    const baseTensors = new Set(this.base.gpt.params.values());
    const gpt = new GPT(this.base.gpt.config, e.adapter.mergedParams(this.base.gpt));
    // Frees only the merged projections; the rest belongs to the base.
    gpt.dispose = () => {
      for (const t of gpt.params.values()) if (!baseTensors.has(t)) t.dispose();
    };
    const model = new LoadedModel(gpt, this.base.tokenizer, { ...e.model.info, meta: { ...e.model.info.meta, merged: true } });
    this.mergedModels.set(name, model);
    return model;
  }

  /** Frees the merged copy of an adapter (answers streaming on it must have finished). */
  dropMerged(name: string): void {
    const m = this.mergedModels.get(name);
    if (!m) return;
    this.mergedModels.delete(name);
    m.dispose();
  }

  /** Adapters that have a merged copy in memory. */
  mergedNames(): string[] {
    return [...this.mergedModels.keys()];
  }

  /** Makes `name` the serving adapter (`null`: none) and returns its model. Takes effect at once. */
  use(name: string | null): LoadedModel {
    const m = this.model(name === 'base' ? null : name);
    this.current = name === 'base' ? null : name;
    return m;
  }

  /** The serving adapter's name, or null when the plain base serves. */
  get serving(): string | null {
    return this.current;
  }

  servingModel(): LoadedModel {
    return this.model(this.current);
  }

  /** Frees an adapter (not the serving one); answers still streaming on its view must have finished. */
  unload(name: string): void {
    if (this.current === name) throw new Error(`Adapter "${name}" is serving; switch to another one first`);
    const e = this.adapters.get(name);
    if (!e) return;
    this.dropMerged(name);
    this.adapters.delete(name);
    e.adapter.dispose();
  }

  /** Frees every adapter and the base model. */
  dispose(): void {
    for (const name of this.mergedNames()) this.dropMerged(name);
    for (const e of this.adapters.values()) e.adapter.dispose();
    this.adapters.clear();
    this.current = null;
    this.base.dispose();
  }

  /** Tensors held by the adapters (for leak checks). */
  get adapterTensorCount(): number {
    let n = 0;
    for (const e of this.adapters.values()) n += e.adapter.params.size;
    return n;
  }
}
