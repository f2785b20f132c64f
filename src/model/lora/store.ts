/**
 * Adapters on disk under `$TEAMLLM_HOME/adapters/<name>/` (adapter.safetensors +
 * adapter_config.json), so the bot can list them and load any of them onto its base model.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { exists, readJson, writeDirAtomic } from '../files.ts';
import type { AdapterConfigFile, LoraAdapter } from './adapter.ts';

const NAME = /^[a-zA-Z0-9][\w.-]{0,63}$/;

export interface StoredAdapter {
  name: string;
  dir: string;
  config: AdapterConfigFile;
}

export class AdapterStore {
  readonly root: string;

  /** `homeDir` is $TEAMLLM_HOME; adapters live in `<homeDir>/adapters`. */
  constructor(homeDir: string) {
    this.root = path.join(homeDir, 'adapters');
  }

  dir(name: string): string {
    if (!NAME.test(name)) throw new Error(`Not a valid adapter name: "${name}" (letters, digits, . _ -)`);
    return path.join(this.root, name);
  }

  async list(): Promise<StoredAdapter[]> {
    if (!(await exists(this.root))) return [];
    const out: StoredAdapter[] = [];
    for (const name of (await fs.readdir(this.root)).sort()) {
      if (!NAME.test(name)) continue;
      const dir = path.join(this.root, name);
      try {
        out.push({ name, dir, config: await readJson<AdapterConfigFile>(path.join(dir, 'adapter_config.json')) });
      } catch {
        // not an adapter folder (or one being written)
      }
    }
    return out;
  }

  async get(name: string): Promise<StoredAdapter | undefined> {
    const dir = this.dir(name);
    if (!(await exists(path.join(dir, 'adapter.safetensors')))) return undefined;
    return { name, dir, config: await readJson<AdapterConfigFile>(path.join(dir, 'adapter_config.json')) };
  }

  /** Writes an adapter in memory under `name` (replacing one of that name). */
  async save(name: string, adapter: LoraAdapter): Promise<StoredAdapter> {
    const dir = this.dir(name);
    await writeDirAtomic(dir, (tmp) => adapter.save(tmp));
    return (await this.get(name))!;
  }

  /** Copies an adapter folder (e.g. a training run's `adapter/`) in under `name`. */
  async import(name: string, sourceDir: string): Promise<StoredAdapter> {
    const dir = this.dir(name);
    await writeDirAtomic(dir, async (tmp) => {
      for (const f of ['adapter.safetensors', 'adapter_config.json']) await fs.copyFile(path.join(sourceDir, f), path.join(tmp, f));
    });
    return (await this.get(name))!;
  }

  async remove(name: string): Promise<void> {
    await fs.rm(this.dir(name), { recursive: true, force: true });
  }
}
