/**
 * Teacher-forced log-probabilities of answers after their prompts: what serving's candidate
 * scorer ranks answers by and what RLHF (src/training/rlhf/) optimises, computed in one place so
 * the two cannot drift apart.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import type { GPT, Params } from './gpt.ts';

/** One prompt and one answer, as token ids. The answer's last token may be the end token. */
export interface Episode {
  prompt: number[];
  answer: number[];
}

/** Episodes as one right-padded batch: ids [B, T], and for each answer token its position. */
export interface EpisodeBatch {
  x: tf.Tensor2D;
  /** Next-token targets [B·T]: the answer token predicted at that position, −1 elsewhere. */
  targets: Int32Array;
  /** 1 at positions that predict an answer token [B·T]. */
  mask: Float32Array;
  B: number;
  T: number;
  /** For episode b, answer token i is predicted at flat index offsets[b] + i. */
  offsets: number[];
}

export function collateEpisodes(episodes: readonly Episode[], pad: number): EpisodeBatch {
  const B = episodes.length;
  const T = Math.max(...episodes.map((e) => e.prompt.length + e.answer.length));
  const x = new Int32Array(B * T).fill(pad);
  const targets = new Int32Array(B * T).fill(-1);
  const mask = new Float32Array(B * T);
  const offsets: number[] = [];
  episodes.forEach((e, b) => {
    if (e.prompt.length === 0) throw new Error('An episode needs a prompt');
    const ids = [...e.prompt, ...e.answer];
    x.set(ids, b * T);
    const start = b * T + e.prompt.length - 1;
    offsets.push(start);
    e.answer.forEach((tok, i) => {
      targets[start + i] = tok;
      mask[start + i] = 1;
    });
  });
  return { x: tf.tensor2d(x, [B, T], 'int32'), targets, mask, B, T, offsets };
}

export interface TeacherForced {
  /** Logits [B·T, V]. */
  logits: Tensor;
  /** log π(target) at each position [B·T] (0 where there is no target). */
  logp: Tensor;
  /** Entropy of the next-token distribution [B·T]. */
  entropy: Tensor;
}

/** One forward pass over a batch; `params` overrides parameters by name (tensors being differentiated). */
export function teacherForced(model: GPT, batch: EpisodeBatch, params?: Params): TeacherForced {
  const V = model.config.vocabSize;
  const logits = tf.reshape(model.forward(batch.x, {}, params), [-1, V]);
  const logProbs = tf.logSoftmax(logits);
  const oneHot = tf.oneHot(tf.tensor1d(batch.targets, 'int32'), V); // zero rows where target < 0
  const logp = tf.sum(tf.mul(logProbs, tf.cast(oneHot, 'float32')), 1);
  const entropy = tf.neg(tf.sum(tf.mul(tf.exp(logProbs), logProbs), 1));
  return { logits, logp, entropy };
}

/** Picks each episode's answer-token entries out of a flat [B·T] array. */
export function perEpisode(flat: ArrayLike<number>, batch: EpisodeBatch, episodes: readonly Episode[]): number[][] {
  return episodes.map((e, b) => Array.from({ length: e.answer.length }, (_, i) => flat[batch.offsets[b]! + i]!));
}

/** Per-token log-probabilities of each episode's answer under `model` as it is (no gradient). */
export function answerLogProbs(model: GPT, episodes: readonly Episode[], pad: number, batchSize = 16): { logp: number[][]; entropy: number[][] } {
  const logp: number[][] = [];
  const entropy: number[][] = [];
  for (let i = 0; i < episodes.length; i += batchSize) {
    const chunk = episodes.slice(i, i + batchSize);
    const batch = collateEpisodes(chunk, pad);
    const [lp, en] = tf.tidy(() => {
      const o = teacherForced(model, batch);
      return [o.logp, o.entropy];
    });
    logp.push(...perEpisode(lp!.dataSync(), batch, chunk));
    entropy.push(...perEpisode(en!.dataSync(), batch, chunk));
    lp!.dispose();
    en!.dispose();
    batch.x.dispose();
  }
  return { logp, entropy };
}
