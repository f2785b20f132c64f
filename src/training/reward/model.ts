/**
 * The reward model: the project's transformer (base GPT frozen, a LoRA adapter trainable) with a
 * scalar head on the hidden state of the sequence's last token,
 *
 *     r(question, passages, answer) = w · h_last + b,
 *
 * where the input is the chat template the bot answers in (passages in the `<|context|>` block,
 * the question as the user turn, the answer as the assistant turn, closed by `<|end|>`), and
 * h_last is the final hidden state (after ln_f) at that closing `<|end|>`.
 *
 * Why the last token and not a mean over the answer: the model is causal, so only the last
 * position has attended to the whole input (passages, question and the full answer). A taste
 * like "quotes the passage" is a relation between the answer and the context; the last token is
 * the one place where both are in view. A mean would average positions that have not yet seen
 * the end of the answer. (InstructGPT's and TRL's reward models read the last token too.)
 *
 * Losses (weighted sum, weights normalised):
 *   pairs   Bradley-Terry:  -log σ(r_chosen - r_rejected)  = softplus(r_rejected - r_chosen)
 *   votes   logistic:       -log σ(y·r), y = +1 for 👍, -1 for 👎 = softplus(-y·r)
 * so r is the logit of 👍, on the same scale for both kinds of data.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import type { GPT, Params } from '../../model/gpt.ts';
import { matMul } from '../../model/ops.ts';
import { Random } from '../../model/random.ts';
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import type { RatedExample } from '../simulated-users.ts';
import { fitContext, formatContext, type Passage } from '../../model/qa-prompt.ts';

export const HEAD_WEIGHT = 'reward_head.weight';
export const HEAD_BIAS = 'reward_head.bias';

function special(tokenizer: Tokenizer, name: 'context' | 'user' | 'assistant' | 'end'): number {
  const id = tokenizer.special[name];
  if (id === undefined) throw new Error(`This tokenizer has no <|${name}|> token: the reward model needs a tokenizer with the chat special tokens`);
  return id;
}

export interface RewardEncodeOptions {
  /** Longest sequence (the model's block size). */
  maxTokens: number;
  /** Upper bound on context tokens. */
  maxContextTokens?: number;
}

/**
 * Tokens of one rated answer in the chat template: `<|context|>passages<|end|><|user|>question
 * <|end|><|assistant|>answer<|end|>`. When it does not fit, the block is shared in this order of
 * priority: the answer (what is judged) keeps at least half of it, the question at least a
 * quarter, and the context gets the rest — cut to the lines sharing the most words with the
 * question and the answer, so a line the answer quotes stays. Whatever one part does not need
 * goes to the others. The sequence always ends with the closing `<|end|>` the head reads.
 */
export function encodeRewardInput(tokenizer: Tokenizer, ex: RatedExample, options: RewardEncodeOptions): number[] {
  const end = special(tokenizer, 'end');
  const max = options.maxTokens;
  let question = tokenizer.encode(ex.question);
  let answer = tokenizer.encode(ex.answer);
  const passages = ex.passages as Passage[];
  // Context as a whole: its tokens plus <|context|> and <|end|> (capped by maxContextTokens).
  const fullContext = passages.length ? Math.min(tokenizer.encode(formatContext(passages)).length, options.maxContextTokens ?? Infinity) + 2 : 0;
  const quarter = Math.floor(max / 4);
  const answerKeep = Math.min(answer.length, Math.max(Math.floor(max / 2), max - 4 - Math.min(question.length, quarter) - fullContext));
  answer = answer.slice(0, Math.max(1, answerKeep));
  const questionKeep = Math.min(question.length, Math.max(quarter, max - 4 - answer.length - fullContext));
  question = question.slice(0, Math.max(1, Math.min(questionKeep, max - 4 - answer.length)));
  const turns = [special(tokenizer, 'user'), ...question, end, special(tokenizer, 'assistant'), ...answer, end];
  const room = Math.min(max - turns.length - 2, options.maxContextTokens ?? Infinity);
  let context: number[] = [];
  if (passages.length && room > 8) {
    const text = fitContext(tokenizer, passages, room, `${ex.question}\n${ex.answer}`);
    if (text) context = [special(tokenizer, 'context'), ...tokenizer.encode(text), end];
    if (context.length + turns.length > max) context = [];
  }
  return [...context, ...turns];
}

/** A fresh scalar head: w ~ N(0, 1/C)·0.1 (small, so the first scores are near 0), b = 0. */
export function createHead(nEmbd: number, seed = 1): Map<string, Tensor> {
  const rng = new Random(seed);
  const w = rng.normalArray(nEmbd, 0.1 / Math.sqrt(nEmbd));
  return new Map<string, Tensor>([
    [HEAD_WEIGHT, tf.keep(tf.tensor2d(w, [nEmbd, 1], 'float32'))],
    [HEAD_BIAS, tf.keep(tf.zeros([1], 'float32'))],
  ]);
}

/** A padded batch: token ids [N, T] (right-padded) and a one-hot of each row's last real token. */
export function rewardBatch(sequences: readonly number[][], pad: number): { x: Tensor; last: Tensor } {
  const N = sequences.length;
  if (N === 0) throw new Error('rewardBatch needs at least one sequence');
  const T = Math.max(...sequences.map((s) => s.length));
  const ids = new Int32Array(N * T).fill(pad);
  const last = new Float32Array(N * T);
  sequences.forEach((s, n) => {
    if (s.length === 0) throw new Error('rewardBatch: empty sequence');
    ids.set(s, n * T);
    last[n * T + s.length - 1] = 1;
  });
  return { x: tf.tensor2d(ids, [N, T], 'int32'), last: tf.tensor2d(last, [N, T], 'float32') };
}

/**
 * Scores [N] of a batch: the head on the last real token's hidden state. `params` holds the
 * base's tensors, the adapter's (read by its projection hook) and the head's; differentiable.
 * Right padding is safe: causal attention never lets a real token see a pad after it.
 */
export function rewardScores(model: GPT, batch: { x: Tensor; last: Tensor }, params: Params, options: { training?: boolean; dropoutSeed?: number } = {}): Tensor {
  const h = model.hidden(batch.x, options, params); // [N, T, C]
  const C = model.config.nEmbd;
  const lastH = tf.sum(tf.mul(h, tf.expandDims(batch.last, 2)), 1); // [N, C]
  const w = params.get(HEAD_WEIGHT)!;
  const b = params.get(HEAD_BIAS)!;
  return tf.add(tf.reshape(matMul(tf.reshape(lastH, [-1, C]), w), [-1]), b);
}

/** softplus(z) = log(1 + e^z), written so that it is stable and has a gradient on every backend. */
export function softplus(z: Tensor): Tensor {
  return tf.add(tf.relu(z), tf.log(tf.add(1, tf.exp(tf.neg(tf.abs(z))))));
}

/** Bradley-Terry loss of pairs: mean softplus(r_rejected - r_chosen). */
export function pairLoss(chosen: Tensor, rejected: Tensor): Tensor {
  return tf.mean(softplus(tf.sub(rejected, chosen)));
}

/** Logistic loss of votes: mean softplus(-y·r), y = ±1 (`labels` true = 👍). */
export function voteLoss(scores: Tensor, labels: readonly boolean[]): Tensor {
  const y = tf.tensor1d(labels.map((l) => (l ? 1 : -1)), 'float32');
  return tf.mean(softplus(tf.neg(tf.mul(y, scores))));
}

/** The weighted loss: (wp·BT + wv·logistic) / (wp + wv) over the parts that have data. */
export function combinedLoss(parts: { pairs?: Tensor; votes?: Tensor }, weights: { pairs: number; votes: number }): Tensor {
  const terms: Tensor[] = [];
  let total = 0;
  if (parts.pairs && weights.pairs > 0) {
    terms.push(tf.mul(parts.pairs, weights.pairs));
    total += weights.pairs;
  }
  if (parts.votes && weights.votes > 0) {
    terms.push(tf.mul(parts.votes, weights.votes));
    total += weights.votes;
  }
  if (terms.length === 0) throw new Error('reward loss: no pairs and no votes in the batch');
  return tf.div(terms.length === 1 ? terms[0]! : tf.addN(terms), total);
}
