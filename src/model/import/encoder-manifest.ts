/**
 * An imported encoder's version folder (`<home>/models/vN`): the files as they were imported (a
 * Hugging Face folder's, or one GGUF file) and `encoder.json`, this manifest, which says how to
 * read them back.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadGgufEncoder, loadHfEncoder, type EncoderPrompts, type LoadedEncoder } from './encoder-checkpoint.ts';
import type { Pooling } from './encoder-config.ts';

export const ENCODER_MANIFEST = 'encoder.json';
export const ENCODER_MANIFEST_FORMAT = 'teamllm-encoder/1';

export interface EncoderManifest {
  format: string;
  /** 'hf': the folder's files as they were; 'gguf': the one file named `file`. */
  from: 'hf' | 'gguf';
  file?: string;
  architecture: string;
  pooling: Pooling;
  poolingSource: string;
  dtype: string;
  numParameters: number;
  dimensions: number;
  licence: string;
  origin: string;
  /** Put before queries and passages (absent in manifests written before prompts were read). */
  prompts?: EncoderPrompts;
}

export function readEncoderManifest(dir: string): EncoderManifest {
  const file = path.join(dir, ENCODER_MANIFEST);
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as EncoderManifest;
  if (manifest.format !== ENCODER_MANIFEST_FORMAT) throw new Error(`${file}: unknown encoder format "${manifest.format}"`);
  return manifest;
}

/** Loads the encoder of a version folder (its files were verified by the registry first). */
export function loadEncoderVersion(dir: string): LoadedEncoder & { manifest: EncoderManifest } {
  const manifest = readEncoderManifest(dir);
  const loaded = manifest.from === 'gguf' ? loadGgufEncoder(path.join(dir, manifest.file ?? 'model.gguf')) : loadHfEncoder(dir);
  return { ...loaded, manifest };
}
