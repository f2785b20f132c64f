import { existsSync } from 'node:fs';
import path from 'node:path';
import { ModelRegistry } from '../model/registry.ts';

/**
 * The model a stage trains on, from its `base` parameter: a registry version (`v3`), a model
 * folder, or (unset) the serving version, else the newest. `whenNone` is the stage's own advice
 * for a registry with no model yet (what to train first).
 */
export async function resolveBase(home: string, base: string | undefined, whenNone: string): Promise<{ dir: string; version?: string }> {
  const registry = new ModelRegistry(home);
  if (base && !/^v\d+$/.test(base)) {
    if (!existsSync(path.join(base, 'model.safetensors'))) throw new Error(`base "${base}" is neither a model version nor a model folder`);
    return { dir: path.resolve(base) };
  }
  const version = base ?? (await registry.serving())?.version ?? (await registry.list()).filter((v) => v.kind !== 'encoder').at(-1)?.version;
  if (!version) throw new Error(whenNone);
  if (!(await registry.get(version))) throw new Error(`No model version ${version}`);
  return { dir: registry.dir(version), version };
}
