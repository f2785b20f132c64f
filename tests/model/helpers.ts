import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/model/backend.ts';
import { GPT } from '../../src/model/gpt.ts';
import type { GPTConfig } from '../../src/model/config.ts';
import { Random } from '../../src/model/random.ts';

export { tf };

export async function useBackend(name: 'wasm' | 'cpu'): Promise<void> {
  await initBackend(name, { log: () => {} });
}

export const tinyConfig: GPTConfig = { vocabSize: 11, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true };

/** A tiny model whose weights are large enough to exercise every nonlinearity. */
export function tinyModel(config: GPTConfig = tinyConfig, seed = 7, std = 0.3): GPT {
  const model = GPT.create(config, seed);
  const rng = new Random(seed + 1);
  const params = new Map<string, tf.Tensor>();
  for (const name of model.paramNames) {
    const p = model.params.get(name)!;
    const noise = rng.normalArray(p.size, std);
    params.set(name, tf.keep(tf.add(p, tf.tensor(noise, p.shape))));
  }
  model.setParams(params);
  return model;
}

export function randomIds(n: number, vocab: number, seed: number): Int32Array {
  const rng = new Random(seed);
  return Int32Array.from({ length: n }, () => rng.int(vocab));
}
