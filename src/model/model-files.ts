/**
 * A model folder: everything needed to run a model, side by side.
 *
 *   model.safetensors   weights (gpt: names as GPT-2's checkpoints, matrices stored [in, out];
 *                       llama arch: Hugging Face's names and [out, in] layout, gpt.ts)
 *   config.json         { format, model: GPTConfig, meta: {...} }
 *   tokenizer.json      the tokenizer (see tokenizer/)
 *
 * Checkpoints and registry versions are model folders too (a checkpoint adds optimizer state).
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { GPT, type Params } from './gpt.ts';
import { type GPTConfig, validateConfig } from './config.ts';
import { type NamedArray, readSafetensors, writeSafetensors } from './safetensors.ts';
import { loadTokenizer, saveTokenizer, type Tokenizer } from './tokenizer/index.ts';
import { readJson, writeJsonAtomic } from './files.ts';

export const MODEL_FORMAT = 'teamllm-gpt/1';

export interface ModelConfigFile {
  format: string;
  model: GPTConfig;
  /** Free-form facts about the model: how it was trained, metrics, parent version... */
  meta?: Record<string, unknown>;
}

/** Reads tensors back to plain arrays for saving. */
export function tensorsToArrays(tensors: Iterable<[string, tf.Tensor]>): Map<string, NamedArray> {
  const out = new Map<string, NamedArray>();
  for (const [name, t] of tensors) {
    const data = t.dtype === 'int32' ? Int32Array.from(t.dataSync() as Int32Array) : Float32Array.from(t.dataSync() as Float32Array);
    out.set(name, { dtype: t.dtype === 'int32' ? 'I32' : 'F32', shape: [...t.shape], data });
  }
  return out;
}

export function arraysToTensors(arrays: Map<string, NamedArray>): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [name, a] of arrays) {
    out.set(name, tf.keep(tf.tensor(a.data, a.shape, a.dtype === 'I32' ? 'int32' : 'float32')));
  }
  return out;
}

export async function saveModelFiles(
  dir: string,
  model: GPT,
  tokenizer: Tokenizer,
  meta: Record<string, unknown> = {},
): Promise<void> {
  const arrays = tensorsToArrays(model.paramNames.map((n) => [n, model.params.get(n)!] as [string, tf.Tensor]));
  await writeSafetensors(path.join(dir, 'model.safetensors'), arrays, { format: 'pt' });
  const config: ModelConfigFile = { format: MODEL_FORMAT, model: model.config, meta };
  await writeJsonAtomic(path.join(dir, 'config.json'), config);
  await saveTokenizer(tokenizer, path.join(dir, 'tokenizer.json'));
}

export async function readModelConfig(dir: string): Promise<ModelConfigFile> {
  const file = await readJson<ModelConfigFile>(path.join(dir, 'config.json'));
  if (!file.model) throw new Error(`${dir}/config.json has no "model" section`);
  return file;
}

export async function loadModelFiles(
  dir: string,
): Promise<{ model: GPT; tokenizer: Tokenizer; config: ModelConfigFile }> {
  const config = await readModelConfig(dir);
  const gptConfig = validateConfig(config.model);
  const { tensors } = await readSafetensors(path.join(dir, 'model.safetensors'));
  const params: Params = arraysToTensors(tensors);
  const model = new GPT(gptConfig, params);
  const tokenizer = await loadTokenizer(path.join(dir, 'tokenizer.json'));
  if (tokenizer.vocabSize > gptConfig.vocabSize) {
    throw new Error(`Tokenizer has ${tokenizer.vocabSize} tokens but the model only ${gptConfig.vocabSize}`);
  }
  return { model, tokenizer, config };
}
