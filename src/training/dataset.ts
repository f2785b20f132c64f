/**
 * Token streams for language-model pretraining: the corpus tokenized once, split into train and
 * validation, and batches of (input, next-token target) windows drawn at random offsets.
 *
 * The offsets of step s come from a generator seeded with (seed, split, s, micro-step), so the
 * step number *is* the data position: a run resumed at step s sees exactly the batches an
 * uninterrupted run would have seen.
 */
import { promises as fs } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { Random, mixSeed } from '../model/random.ts';
import { writeFileAtomic } from '../model/files.ts';

export type Split = 'train' | 'val';

export interface Batch {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
}

export class TokenDataset {
  constructor(
    readonly train: Uint32Array,
    readonly val: Uint32Array,
  ) {}

  /** nanoGPT's split: the first `trainFraction` of the tokens train, the rest validate. */
  static fromTokens(tokens: ArrayLike<number>, trainFraction = 0.9): TokenDataset {
    const all = Uint32Array.from(tokens);
    const n = Math.floor(all.length * trainFraction);
    return new TokenDataset(all.slice(0, n), all.slice(n));
  }

  tokens(split: Split): Uint32Array {
    return split === 'train' ? this.train : this.val;
  }

  /** Random windows as Int32 arrays (x: inputs, y: the same shifted by one). */
  sampleArrays(split: Split, batchSize: number, blockSize: number, seed: number): { x: Int32Array; y: Int32Array } {
    const data = this.tokens(split);
    const maxStart = data.length - blockSize - 1;
    if (maxStart < 0) {
      throw new Error(`The ${split} split has ${data.length} tokens, fewer than block size + 1 (${blockSize + 1})`);
    }
    const rng = new Random(seed);
    const x = new Int32Array(batchSize * blockSize);
    const y = new Int32Array(batchSize * blockSize);
    for (let b = 0; b < batchSize; b++) {
      const start = rng.int(maxStart + 1);
      for (let t = 0; t < blockSize; t++) {
        x[b * blockSize + t] = data[start + t]!;
        y[b * blockSize + t] = data[start + t + 1]!;
      }
    }
    return { x, y };
  }

  /** The batch of training step `step`, micro-step `micro` (deterministic). */
  batch(split: Split, batchSize: number, blockSize: number, seed: number, step: number, micro = 0): Batch {
    const s = mixSeed(seed, split === 'train' ? 1 : 2, step, micro);
    const { x, y } = this.sampleArrays(split, batchSize, blockSize, s);
    return { x: tf.tensor2d(x, [batchSize, blockSize], 'int32'), y: tf.tensor2d(y, [batchSize, blockSize], 'int32') };
  }

  /** Saves both splits as little-endian uint32 files (nanoGPT writes uint16 .bin files). */
  async save(trainFile: string, valFile: string): Promise<void> {
    await writeFileAtomic(trainFile, new Uint8Array(this.train.buffer, this.train.byteOffset, this.train.byteLength));
    await writeFileAtomic(valFile, new Uint8Array(this.val.buffer, this.val.byteOffset, this.val.byteLength));
  }

  static async load(trainFile: string, valFile: string): Promise<TokenDataset> {
    const read = async (f: string) => {
      const b = await fs.readFile(f);
      const copy = new Uint8Array(b.length);
      copy.set(b);
      return new Uint32Array(copy.buffer);
    };
    return new TokenDataset(await read(trainFile), await read(valFile));
  }
}
