/**
 * What every import reads the same way, whatever the architecture: the refusal (`ImportError`),
 * a Hugging Face folder's config.json and safetensors weights (checked to be there before any
 * tensor is read), and the check of tensor shapes against those a config implies.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { readSafetensorsFolder, type SafetensorsEntry } from '../safetensors.ts';

/** An import refused before anything was copied: says what is wrong and what is supported. */
export class ImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImportError';
  }
}

export function readJsonFile<T>(file: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (err) {
    throw new ImportError(`${file} cannot be read as JSON: ${(err as Error).message}`);
  }
}

/** A Hugging Face model folder's config.json, read (the architecture is checked before anything else is). */
export function readHfConfig(dir: string): { raw: Record<string, unknown>; configFile: string } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ImportError(`${dir} is not a folder`);
  const configFile = path.join(dir, 'config.json');
  if (!existsSync(configFile)) throw new ImportError(`${dir} has no config.json (a Hugging Face model folder has config.json, model.safetensors and tokenizer.json)`);
  return { raw: readJsonFile<Record<string, unknown>>(configFile), configFile };
}

/** The folder's safetensors tensors (one file or shards), once tokenizer.json and the weights are known to be there. */
export function readHfWeights(dir: string): SafetensorsEntry[] {
  const missing = ['tokenizer.json'].filter((f) => !existsSync(path.join(dir, f)));
  if (!existsSync(path.join(dir, 'model.safetensors')) && !existsSync(path.join(dir, 'model.safetensors.index.json'))) missing.push('model.safetensors (or model.safetensors.index.json with its shards)');
  if (missing.length) {
    const hint = existsSync(path.join(dir, 'pytorch_model.bin')) ? ' (pytorch_model.bin is not read: convert it to safetensors, or download the safetensors files)' : '';
    throw new ImportError(`${dir} is missing ${missing.join(' and ')}${hint}`);
  }
  try {
    return readSafetensorsFolder(dir);
  } catch (err) {
    throw new ImportError((err as Error).message);
  }
}

/** The weight files an import of the folder copies: the safetensors files and their index. */
export function hfWeightFiles(dir: string, entries: SafetensorsEntry[]): string[] {
  const files = [...new Set(entries.map((e) => path.basename(e.file)))];
  if (existsSync(path.join(dir, 'model.safetensors.index.json'))) files.push('model.safetensors.index.json');
  return files;
}

/** Checks tensors against the shapes the config implies: every problem named, or none. */
export function checkTensorShapes(expected: Map<string, number[]>, shapes: Map<string, number[]>, where: string): void {
  const problems: string[] = [];
  for (const [name, want] of expected) {
    const got = shapes.get(name);
    if (!got) problems.push(`${name} is missing`);
    else if (got.length !== want.length || got.some((d, i) => d !== want[i])) problems.push(`${name} is [${got.join(', ')}], the config implies [${want.join(', ')}]`);
  }
  if (problems.length) {
    const shown = problems.slice(0, 6).join('; ') + (problems.length > 6 ? `; and ${problems.length - 6} more` : '');
    throw new ImportError(`${where} does not match its config: ${shown}`);
  }
}
