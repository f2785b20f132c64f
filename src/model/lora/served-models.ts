/**
 * The weights that answer for a registry version, with one base model in memory for every LoRA
 * version trained on it.
 *
 * A fine-tuned version (`teamllm train sft`) is registered as a merged model folder (self-contained:
 * it can be exported, trained on, or loaded with no adapter machinery) and keeps its adapter beside
 * it in `models/<version>/adapter/`. When such a version is promoted, it is served from its parent
 * base through an AdapterSet: the base is read from disk once, the adapters of every version trained
 * on it are loaded next to each other, and the serving one is merged in memory into copies of the
 * projections it targets (AdapterSet.merged: hook-free, so the native backend's fused path serves
 * it; the other weights stay shared with the base). Promoting or rolling back among them (or to
 * the base itself) reads no base again. Answers streaming on the previous version keep their model
 * and finish on it; its merged copy is freed after the delay. A version whose adapter cannot be served that way (no
 * adapter folder, the parent version removed, a fingerprint that does not match the parent's
 * weights) is loaded from its merged weights instead — same logits to 1e-4, tested.
 *
 * Bases that no longer serve are freed after `disposeAfterMs` (answers in flight finish first); one
 * promoted again before that is taken back without a reload.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { exists, writeDirAtomic } from '../files.ts';
import { LoadedModel } from '../loaded-model.ts';
import { ModelFilesError, type ModelCheck, type ModelRegistry } from '../registry.ts';
import { AdapterSet } from './serving.ts';

/** The adapter of a registered fine-tuned version (its merged weights are the version itself). */
export function versionAdapterDir(registry: ModelRegistry, version: string): string {
  return path.join(registry.dir(version), 'adapter');
}

/** Stores the LoRA adapter a registered (merged) version was made with, so it can be served over its parent. */
export async function attachAdapterToVersion(registry: ModelRegistry, version: string, adapterDir: string): Promise<void> {
  const files = ['adapter.safetensors', 'adapter_config.json'];
  await writeDirAtomic(versionAdapterDir(registry, version), async (tmp) => {
    for (const f of files) await fs.copyFile(path.join(adapterDir, f), path.join(tmp, f));
  });
  // Checked at load like the version's own files.
  await registry.recordFiles(version, files.map((f) => `adapter/${f}`));
}

export interface ServedModel {
  model: LoadedModel;
  version: string;
  /** The version whose weights are in memory under it (the version itself when not an adapter). */
  base: string;
  /** Served from the parent base + its LoRA adapter (merged in memory). */
  adapter: boolean;
  /** The base had to be read from disk for this. */
  reloaded: boolean;
}

export interface ServedModelsOptions {
  /** Bases no longer serving are freed this long after the switch (default 180 s). */
  disposeAfterMs?: number;
  /** Why a version fell back to its merged weights, and similar facts. */
  log?: (message: string, detail: Record<string, unknown>) => void;
}

interface Entry {
  key: string;
  set: AdapterSet;
}

export class ServedModels {
  /** Bases in memory (keyed by version and creation time, in case a removed version's number is reused). */
  private readonly sets = new Map<string, Entry>();
  private readonly retiring = new Map<string, { entry: Entry; timer: NodeJS.Timeout }>();
  private current: ServedModel | undefined;
  private currentAdapter: { set: AdapterSet; name: string } | undefined;
  private lastAdapter: { set: AdapterSet; name: string } | undefined;
  /** How many times a model was read from disk (tests and logs). */
  loads = 0;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly options: ServedModelsOptions = {},
  ) {}

  get serving(): ServedModel | undefined {
    return this.current;
  }

  private async baseSet(version: string, createdAt: string, checked?: ModelCheck): Promise<{ set: AdapterSet; reloaded: boolean }> {
    const key = `${version}@${createdAt}`;
    const live = this.sets.get(key);
    if (live) return { set: live.set, reloaded: false };
    const retired = this.retiring.get(key);
    if (retired) {
      clearTimeout(retired.timer);
      this.retiring.delete(key);
      this.sets.set(key, retired.entry);
      return { set: retired.entry.set, reloaded: false };
    }
    const model = await this.loadChecked(version, checked);
    this.loads += 1;
    const set = new AdapterSet(model);
    this.sets.set(key, { key, set });
    return { set, reloaded: true };
  }

  /**
   * Reads a version's weights after checking its files against the recorded hashes. A load error
   * of an unverified (older) version names the version and its folder; after a good load its
   * hashes are recorded, so later damage is caught by name.
   */
  private async loadChecked(version: string, checked?: ModelCheck): Promise<LoadedModel> {
    const check = checked ?? (await this.registry.assertIntact(version));
    const dir = this.registry.dir(version);
    let model: LoadedModel;
    try {
      model = await LoadedModel.load(dir, version);
    } catch (err) {
      throw new ModelFilesError(version, 'model.safetensors', `its files in ${dir} could not be loaded (${(err as Error).message})`);
    }
    if (check.status === 'unverified') {
      await this.registry.recordFiles(version).catch((err: unknown) => this.options.log?.(`could not record the hashes of ${version}`, { version, error: (err as Error).message }));
    }
    return model;
  }

  /** The model for `version` (loading what is missing); does not change what serves. */
  async load(version: string): Promise<ServedModel> {
    const entry = await this.registry.get(version);
    if (!entry) throw new Error(`No model version ${version}`);
    // The version's own files (merged weights, adapter) are checked whichever way it is served.
    const check = await this.registry.assertIntact(version);
    const adapterDir = versionAdapterDir(this.registry, version);
    const parent = entry.parent ? await this.registry.get(entry.parent) : undefined;
    if (parent && (await exists(path.join(adapterDir, 'adapter.safetensors')))) {
      try {
        const { set, reloaded } = await this.baseSet(parent.version, parent.createdAt);
        const name = `${version}@${entry.createdAt}`;
        if (!set.has(name)) await set.load(name, adapterDir);
        const merged = set.merged(name);
        const model = new LoadedModel(merged.gpt, merged.tokenizer, { ...merged.info, version, dir: this.registry.dir(version) });
        this.lastAdapter = { set, name };
        return { model, version, base: parent.version, adapter: true, reloaded };
      } catch (err) {
        this.options.log?.(`${version} cannot be served as an adapter over ${parent.version}; loading its merged weights`, { version, error: (err as Error).message });
      }
    }
    const { set, reloaded } = await this.baseSet(version, entry.createdAt, check);
    return { model: set.base, version, base: version, adapter: false, reloaded };
  }

  /** Makes `version` the served one (`null`: none) and schedules freeing the bases nothing serves from. */
  async activate(version: string | null): Promise<ServedModel | undefined> {
    const previousAdapter = this.currentAdapter;
    this.lastAdapter = undefined;
    const served = version === null ? undefined : await this.load(version);
    this.current = served;
    this.currentAdapter = served?.adapter ? (this.lastAdapter as { set: AdapterSet; name: string } | undefined) : undefined;
    if (previousAdapter && (previousAdapter.set !== this.currentAdapter?.set || previousAdapter.name !== this.currentAdapter.name)) {
      // Its merged copy goes once answers on it have finished, unless it serves again by then.
      setTimeout(() => {
        if (this.currentAdapter?.set !== previousAdapter.set || this.currentAdapter.name !== previousAdapter.name) previousAdapter.set.dropMerged(previousAdapter.name);
      }, this.options.disposeAfterMs ?? 180_000).unref();
    }
    const keep = served ? await this.keyOf(served.base) : undefined;
    for (const [key, entry] of this.sets) {
      if (key === keep) continue;
      this.sets.delete(key);
      const timer = setTimeout(() => {
        this.retiring.delete(key);
        entry.set.dispose();
      }, this.options.disposeAfterMs ?? 180_000);
      timer.unref();
      this.retiring.set(key, { entry, timer });
    }
    return served;
  }

  private async keyOf(version: string): Promise<string | undefined> {
    const v = await this.registry.get(version);
    return v ? `${version}@${v.createdAt}` : undefined;
  }

  /** Versions whose adapters are loaded over the serving base (switching among them reloads nothing). */
  loadedAdapters(): string[] {
    return [...this.sets.values()].flatMap((e) => e.set.names().map((n) => n.split('@')[0]!));
  }

  /** Frees every model now. */
  close(): void {
    for (const { entry, timer } of this.retiring.values()) {
      clearTimeout(timer);
      entry.set.dispose();
    }
    this.retiring.clear();
    for (const e of this.sets.values()) e.set.dispose();
    this.sets.clear();
    this.current = undefined;
  }
}
