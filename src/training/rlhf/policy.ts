/**
 * The policy side of RLHF on the project's GPT:
 *
 * - the policy is the SFT model with a trainable LoRA adapter attached (its projection hook); the
 *   frozen reference is the very same model with the hook removed (`withoutAdapter`), so no second
 *   copy of the weights is needed and, with LoRA's B = 0 at the start, policy = reference exactly;
 * - per-token log-probabilities and entropies of answers given their prompts (teacher forcing);
 * - a value head: a linear function of the final logits, v_t = logits_t · w + b. The logits are
 *   the final hidden state times the tied embedding matrix (h · Eᵀ), so with V ≥ C this is a linear
 *   head on the hidden state, reparametrised; it shares the trunk (and the LoRA) with the policy,
 *   like TRL's value head;
 * - sampling answers with the KV cache, recording the log-probability of each sampled token.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { GPT, type Params } from '../../model/gpt.ts';
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import { Random } from '../../model/random.ts';
import { teacherForced, type EpisodeBatch } from '../../model/answer-log-probs.ts';

// Episodes and their log-probabilities are shared with serving's candidate scorer, so they live
// in the model layer; RLHF's modules keep importing them from here.
export { answerLogProbs, collateEpisodes, perEpisode, type Episode, type EpisodeBatch } from '../../model/answer-log-probs.ts';

/** Trainable value head over the logits: v = logits · w + b. */
export class ValueHead {
  w: Tensor;
  b: Tensor;
  constructor(vocabSize: number) {
    this.w = tf.keep(tf.zeros([vocabSize, 1]));
    this.b = tf.keep(tf.zeros([1]));
  }
  get params(): Map<string, Tensor> {
    return new Map([
      ['value_head.w', this.w],
      ['value_head.b', this.b],
    ]);
  }
  setParams(next: Map<string, Tensor>): void {
    const w = next.get('value_head.w')!;
    const b = next.get('value_head.b')!;
    if (w !== this.w) this.w.dispose();
    if (b !== this.b) this.b.dispose();
    this.w = w;
    this.b = b;
  }
  dispose(): void {
    this.w.dispose();
    this.b.dispose();
  }
}

/** Runs `fn` with the adapter hook removed: the frozen reference model. */
export function withoutAdapter<T>(model: GPT, fn: () => T): T {
  const hook = model.projectionHook;
  model.projectionHook = undefined;
  try {
    return fn();
  } finally {
    model.projectionHook = hook;
  }
}

export interface PolicyOutputs {
  /** log π(target) at each position [B·T] (0 where there is no target). */
  logp: Tensor;
  /** Entropy of the next-token distribution [B·T]. */
  entropy: Tensor;
  /** Value estimates [B·T], when a value head is given. */
  values?: Tensor;
}

/**
 * Teacher-forced log-probabilities of the targets (and entropies, values) for a batch. `params`
 * overrides parameters by name (LoRA tensors being differentiated); `head` adds value estimates.
 */
export function policyForward(model: GPT, batch: EpisodeBatch, params?: Params, head?: { w: Tensor; b: Tensor }): PolicyOutputs {
  const { logits, logp, entropy } = teacherForced(model, batch, params);
  const out: PolicyOutputs = { logp, entropy };
  if (head) out.values = tf.add(tf.reshape(tf.matMul(logits as tf.Tensor2D, head.w as tf.Tensor2D), [-1]), head.b);
  return out;
}

/** Sum of answer-token log-probabilities per episode [B] (differentiable). */
export function sequenceLogProbs(model: GPT, batch: EpisodeBatch, params?: Params): Tensor {
  const { logp } = policyForward(model, batch, params);
  return tf.sum(tf.reshape(tf.mul(logp, tf.tensor1d(batch.mask)), [batch.B, batch.T]), 1);
}

export interface SampleOptions {
  maxTokens: number;
  /** Token ids that end an answer (they are part of it: the policy chose to stop). */
  stopIds: ReadonlySet<number>;
  rng: Random;
}

export interface SampledAnswer {
  tokens: number[];
  /** log π of each sampled token under the distribution it was drawn from (the policy, temperature 1). */
  logprobs: number[];
  /** True when it ended with a stop token (not cut at maxTokens). */
  finished: boolean;
}

/** Draws from softmax(logits) (temperature 1), returning the id and its log-probability. */
function sampleRow(logits: Float32Array, offset: number, V: number, rng: Random): [number, number] {
  let max = -Infinity;
  for (let j = 0; j < V; j++) max = Math.max(max, logits[offset + j]!);
  let total = 0;
  for (let j = 0; j < V; j++) total += Math.exp(logits[offset + j]! - max);
  const logZ = max + Math.log(total);
  let u = rng.uniform() * total;
  let id = V - 1;
  for (let j = 0; j < V; j++) {
    u -= Math.exp(logits[offset + j]! - max);
    if (u <= 0) {
      id = j;
      break;
    }
  }
  return [id, logits[offset + id]! - logZ];
}

/**
 * Samples `n` answers to one prompt at once (the prompt repeated n times, one KV cache), from the
 * model's own distribution (temperature 1, the full vocabulary), so that the recorded log-probs
 * are exactly those teacher forcing computes. `prompt.length + maxTokens` must fit the block.
 */
export function sampleAnswers(model: GPT, prompt: readonly number[], n: number, options: SampleOptions): SampledAnswer[] {
  const V = model.config.vocabSize;
  if (prompt.length + options.maxTokens > model.config.blockSize) {
    throw new Error(`prompt (${prompt.length} tokens) + ${options.maxTokens} answer tokens exceed the block size ${model.config.blockSize}`);
  }
  const out: SampledAnswer[] = Array.from({ length: n }, () => ({ tokens: [], logprobs: [], finished: false }));
  const cache = model.emptyCache();
  try {
    let input = tf.tensor2d(Int32Array.from({ length: n * prompt.length }, (_, i) => prompt[i % prompt.length]!), [n, prompt.length], 'int32');
    for (let step = 0; step < options.maxTokens; step++) {
      const logitsT = model.forwardCached(input, cache);
      input.dispose();
      const logits = logitsT.dataSync() as Float32Array;
      logitsT.dispose();
      const next = new Int32Array(n);
      for (let b = 0; b < n; b++) {
        const a = out[b]!;
        if (a.finished) {
          next[b] = a.tokens.at(-1)!;
          continue;
        }
        const [id, lp] = sampleRow(logits, b * V, V, options.rng);
        a.tokens.push(id);
        a.logprobs.push(lp);
        if (options.stopIds.has(id)) a.finished = true;
        next[b] = id;
      }
      if (out.every((a) => a.finished) || step + 1 >= options.maxTokens) break;
      input = tf.tensor2d(next, [n, 1], 'int32');
    }
  } finally {
    GPT.disposeCache(cache);
  }
  return out;
}

/** Ids that end an answer: the end token, every other special token, and padding rows past the tokenizer. */
export function stopIdsFor(tokenizer: Tokenizer, vocabSize: number): Set<number> {
  const ids = new Set<number>(Object.values(tokenizer.special));
  for (let id = tokenizer.vocabSize; id < vocabSize; id++) ids.add(id);
  return ids;
}

/** The text of an answer: its tokens without the stop token. */
export function answerText(tokenizer: Tokenizer, tokens: readonly number[], stopIds: ReadonlySet<number>): string {
  return tokenizer.decode(tokens.filter((t) => !stopIds.has(t))).trim();
}
