/**
 * The model registry under `$TEAMLLM_HOME/models`: numbered versions (v1, v2, ...), each a model
 * folder, with their metrics, which one is serving, and the promotion history for rollback.
 *
 *   models/registry.json   { serving, history, versions: { v1: {...}, ... } }
 *   models/v1/             model.safetensors, config.json, tokenizer.json
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { exists, readJson, writeDirAtomic, writeJsonAtomic } from './files.ts';
import { readModelConfig } from './model-files.ts';
import { countParameters, validateConfig } from './config.ts';
import type { LoadedModel } from './loaded-model.ts';

export interface ModelVersion {
  version: string;
  createdAt: string;
  /** How it was made: 'pretrain', 'sft', 'rlhf', 'import'... */
  source: string;
  /** Numbers to compare versions by (valLoss, perplexity, eval scores...). */
  metrics: Record<string, number>;
  numParameters: number;
  /** The version it was trained from, if any. */
  parent?: string;
  notes?: string;
  /**
   * The evaluation gate of the job that made it (QA not worse, reward up, KL bounded...): only a
   * version that passed is promoted automatically; an admin may promote one that did not (audited).
   */
  gate?: { passed: boolean; reasons: string[] };
  /** The training job that made it. */
  job?: number;
  /** Set by list(): whether this version is the one serving. */
  serving?: boolean;
}

interface RegistryFile {
  serving: string | null;
  /** Versions promoted before the serving one, oldest first (rollback pops from the end). */
  history: string[];
  versions: Record<string, ModelVersion>;
}

export interface RegisterOptions {
  source?: string;
  metrics?: Record<string, number>;
  parent?: string;
  notes?: string;
  /** Make it the serving version right away. */
  promote?: boolean;
}

const VERSION = /^v(\d+)$/;

export class ModelRegistry {
  readonly root: string;

  /** `homeDir` is $TEAMLLM_HOME; versions live in `<homeDir>/models`. */
  constructor(homeDir: string) {
    this.root = path.join(homeDir, 'models');
  }

  private get file(): string {
    return path.join(this.root, 'registry.json');
  }

  private async read(): Promise<RegistryFile> {
    if (!(await exists(this.file))) return { serving: null, history: [], versions: {} };
    return readJson<RegistryFile>(this.file);
  }

  private async write(reg: RegistryFile): Promise<void> {
    await writeJsonAtomic(this.file, reg);
  }

  /** Serialises read-modify-write sequences within this process. */
  private queue: Promise<unknown> = Promise.resolve();
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The folder of a version. */
  dir(version: string): string {
    if (!VERSION.test(version)) throw new Error(`Not a version name: ${version}`);
    return path.join(this.root, version);
  }

  async list(): Promise<ModelVersion[]> {
    const reg = await this.read();
    return Object.values(reg.versions)
      .sort((a, b) => Number(VERSION.exec(a.version)![1]) - Number(VERSION.exec(b.version)![1]))
      .map((v) => ({ ...v, serving: v.version === reg.serving }));
  }

  async get(version: string): Promise<ModelVersion | undefined> {
    const reg = await this.read();
    const v = reg.versions[version];
    return v ? { ...v, serving: v.version === reg.serving } : undefined;
  }

  /** Copies a model folder in as the next version. */
  async register(modelDir: string, options: RegisterOptions = {}): Promise<ModelVersion> {
    const config = await readModelConfig(modelDir);
    const gpt = validateConfig(config.model);
    return this.exclusive(async () => {
      const reg = await this.read();
      let n = 0;
      for (const name of Object.keys(reg.versions)) n = Math.max(n, Number(VERSION.exec(name)?.[1] ?? 0));
      if (await exists(this.root)) {
        for (const name of await fs.readdir(this.root)) n = Math.max(n, Number(VERSION.exec(name)?.[1] ?? 0));
      }
      const version = `v${n + 1}`;
      await writeDirAtomic(this.dir(version), async (tmp) => {
        for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) {
          await fs.copyFile(path.join(modelDir, f), path.join(tmp, f));
        }
      });
      const metaMetrics = (config.meta?.metrics ?? {}) as Record<string, number>;
      const entry: ModelVersion = {
        version,
        createdAt: new Date().toISOString(),
        source: options.source ?? String(config.meta?.source ?? 'unknown'),
        metrics: { ...metaMetrics, ...(options.metrics ?? {}) },
        numParameters: countParameters(gpt),
      };
      if (options.parent) entry.parent = options.parent;
      if (options.notes) entry.notes = options.notes;
      reg.versions[version] = entry;
      if (options.promote) this.promoteIn(reg, version);
      await this.write(reg);
      return { ...entry, serving: reg.serving === version };
    });
  }

  private promoteIn(reg: RegistryFile, version: string): void {
    if (!reg.versions[version]) throw new Error(`No model version ${version}`);
    if (reg.serving === version) return;
    if (reg.serving) reg.history.push(reg.serving);
    reg.serving = version;
  }

  /** Makes `version` the serving model; the previous one can be restored with rollback(). */
  async promote(version: string): Promise<ModelVersion> {
    return this.exclusive(async () => {
      const reg = await this.read();
      this.promoteIn(reg, version);
      await this.write(reg);
      return { ...reg.versions[version]!, serving: true };
    });
  }

  /**
   * Goes back to the version that served before the current one; rolling back the first version
   * ever promoted leaves no model serving (answers quote the knowledge base): `undefined`.
   */
  async rollback(): Promise<ModelVersion | undefined> {
    return this.exclusive(async () => {
      const reg = await this.read();
      if (!reg.serving) throw new Error('Nothing to roll back to: no model version is serving');
      let previous = reg.history.pop();
      while (previous && !reg.versions[previous]) previous = reg.history.pop();
      reg.serving = previous ?? null;
      await this.write(reg);
      return previous ? { ...reg.versions[previous]!, serving: true } : undefined;
    });
  }

  /** Records what the evaluation gate (and the job that made it) said about a version. */
  async annotate(version: string, note: { gate?: { passed: boolean; reasons: string[] }; job?: number; metrics?: Record<string, number> }): Promise<ModelVersion> {
    return this.exclusive(async () => {
      const reg = await this.read();
      const entry = reg.versions[version];
      if (!entry) throw new Error(`No model version ${version}`);
      if (note.gate) entry.gate = { passed: note.gate.passed, reasons: [...note.gate.reasons] };
      if (note.job !== undefined) entry.job = note.job;
      if (note.metrics) entry.metrics = { ...entry.metrics, ...note.metrics };
      await this.write(reg);
      return { ...entry, serving: reg.serving === version };
    });
  }

  /** The version rollback() would return to (undefined: none, or nothing serves). */
  async previous(): Promise<string | undefined> {
    const reg = await this.read();
    return [...reg.history].reverse().find((v) => reg.versions[v]);
  }

  /** The serving version, if any. */
  async serving(): Promise<ModelVersion | undefined> {
    const reg = await this.read();
    return reg.serving ? { ...reg.versions[reg.serving]!, serving: true } : undefined;
  }

  /** Removes a version that is not serving. */
  async remove(version: string): Promise<void> {
    return this.exclusive(async () => {
      const reg = await this.read();
      if (reg.serving === version) throw new Error(`${version} is serving; promote another version first`);
      if (!reg.versions[version]) throw new Error(`No model version ${version}`);
      delete reg.versions[version];
      reg.history = reg.history.filter((v) => v !== version);
      await this.write(reg);
      await fs.rm(this.dir(version), { recursive: true, force: true });
    });
  }

  /** Loads the serving model (undefined when nothing serves yet). */
  async loadServing(): Promise<LoadedModel | undefined> {
    const v = await this.serving();
    if (!v) return undefined;
    const { LoadedModel } = await import('./loaded-model.ts');
    return LoadedModel.load(this.dir(v.version), v.version);
  }
}
