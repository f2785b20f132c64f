/**
 * Trains the encoder (an ensemble of BagEncoders) on the user's own passages with a contrastive objective (InfoNCE with
 * in-batch negatives, as in DPR and SimCSE) over the pairs that contrastive-pairs.ts mines.
 *
 * Only the table rows a batch touches are updated, with a lazy Adam (as TensorFlow's
 * LazyAdamOptimizer): the full table has ~4M values and a batch touches a few thousand rows, so
 * a dense optimizer would spend nearly all its time on rows whose gradient is zero.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '../model/backend.ts';
import { Random } from '../model/random.ts';
import { BagEncoder, DEFAULT_ENCODER_CONFIG, EncoderEnsemble, inverseDocumentFrequencies, type Bag, type EncoderConfig } from './bag-encoder.ts';
import { PairSampler, type AskedPair, type TrainingPassage } from './contrastive-pairs.ts';

export interface EncoderTrainingOptions {
  config?: Partial<EncoderConfig>;
  /** Steps per ensemble member. */
  steps?: number;
  batchSize?: number;
  learningRate?: number;
  /** Softmax temperature of the InfoNCE loss: low values make the model separate near misses. */
  temperature?: number;
  /**
   * Share of a text's features hidden at each step: the model cannot lean on one rare word to
   * recognise a passage (a question rarely repeats it).
   */
  featureDropout?: number;
  seed?: number;
  /** Questions people asked, each with the passage (index into the training passages) whose answer they liked. */
  asked?: AskedPair[];
  /** The share of each batch those fill (default 0.25). */
  askedShare?: number;
  /**
   * Continue from this encoder (same configuration) instead of random vectors: what it learnt
   * stays where the new pairs do not pull, so relearning with a few votes moves the askers' words
   * and little else. Ignored when its configuration differs.
   */
  start?: EncoderEnsemble;
  signal?: AbortSignal;
  /** `step` counts over all members: steps × members in total. */
  onProgress?: (progress: { step: number; steps: number; loss: number }) => void;
}

export interface EncoderTrainingReport {
  /** Steps over all members. */
  steps: number;
  passages: number;
  /** Mean loss of the first and last 10% of each member's steps: the drop shows the encoder learned something. */
  firstLoss: number;
  lastLoss: number;
  seconds: number;
  backend: string;
}

export const DEFAULT_TRAINING = { steps: 300, batchSize: 64, learningRate: 0.005, temperature: 0.05, featureDropout: 0.2 };

/** Uses the process's tensor backend (wasm by default) with the kernels training needs registered. */
async function trainingBackend(): Promise<string> {
  const current = tf.engine().backendName as string | null;
  const known: BackendName | undefined = current === 'wasm' || current === 'cpu' || current === 'tensorflow' ? current : undefined;
  return initBackend(known);
}

/** Trains `config.members` encoders from different seeds on the passages (heading path + text). */
export async function trainEncoder(
  passages: TrainingPassage[],
  options: EncoderTrainingOptions = {},
): Promise<{ encoder: EncoderEnsemble; report: EncoderTrainingReport }> {
  if (passages.length < 2) throw new Error('training the embeddings needs at least 2 passages in the knowledge base');
  const started = Date.now();
  const backend = await trainingBackend();
  const config: EncoderConfig = { ...DEFAULT_ENCODER_CONFIG, ...options.config };
  const steps = options.steps ?? DEFAULT_TRAINING.steps;
  const seed = options.seed ?? 1;
  const asked = options.asked ?? [];
  // The askers' own words count as corpus words: a word only questions use gets a weight and a trained vector.
  const idf = inverseDocumentFrequencies(config, [...passages.map((p) => `${p.title}\n${p.text}`), ...asked.map((a) => a.query)]);
  const members: BagEncoder[] = [];
  const first: number[] = [];
  const last: number[] = [];
  const from = options.start && sameConfig(options.start.config, config) && options.start.members.length === config.members ? options.start : undefined;
  for (let m = 0; m < config.members; m++) {
    const member = from ? new BagEncoder(config, Float32Array.from(from.members[m]!.table), idf) : BagEncoder.random(config, idf, seed + 1000 * m);
    const losses = await trainMember(member, passages, { ...options, seed: seed + 1000 * m, steps }, (step, loss) =>
      options.onProgress?.({ step: m * steps + step, steps: config.members * steps, loss }),
    );
    const tail = Math.max(1, Math.floor(losses.length / 10));
    first.push(...losses.slice(0, tail));
    last.push(...losses.slice(-tail));
    members.push(member);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return {
    encoder: new EncoderEnsemble(members),
    report: {
      steps: steps * config.members,
      passages: passages.length,
      firstLoss: mean(first),
      lastLoss: mean(last),
      seconds: (Date.now() - started) / 1000,
      backend,
    },
  };
}

function sameConfig(a: EncoderConfig, b: EncoderConfig): boolean {
  return a.buckets === b.buckets && a.dim === b.dim && a.members === b.members && a.subwordN === b.subwordN && a.maxFeatures === b.maxFeatures;
}

/** Trains one member in place; returns the loss of every step. */
async function trainMember(
  encoder: BagEncoder,
  passages: TrainingPassage[],
  options: EncoderTrainingOptions & { seed: number; steps: number },
  progress: (step: number, loss: number) => void,
): Promise<number[]> {
  const { dim } = encoder.config;
  const { steps, seed } = options;
  const batchSize = Math.min(options.batchSize ?? DEFAULT_TRAINING.batchSize, passages.length);
  const temperature = options.temperature ?? DEFAULT_TRAINING.temperature;
  const sampler = new PairSampler(passages, new Random(seed + 1), options.asked, options.askedShare);
  const dropoutRandom = new Random(seed + 2);
  const dropout = options.featureDropout ?? DEFAULT_TRAINING.featureDropout;
  const withDropout = (bag: Bag): Bag => {
    if (dropout <= 0) return bag;
    const keep = bag.ids.map(() => dropoutRandom.uniform() >= dropout);
    // Never drop everything: an empty text has no direction to learn from.
    if (!keep.some(Boolean)) keep[0] = true;
    return { ids: bag.ids.filter((_, i) => keep[i]), weights: bag.weights.filter((_, i) => keep[i]) };
  };
  const adam = new LazyAdam(encoder.table, dim);
  const peakLr = options.learningRate ?? DEFAULT_TRAINING.learningRate;
  const losses: number[] = [];
  for (let step = 1; step <= steps; step++) {
    if (options.signal?.aborted) throw new Error('embedding training was cancelled');
    const pairs = sampler.batch(batchSize);
    if (pairs.length < 2) continue;
    const texts = [...pairs.map((p) => p.query), ...pairs.map((p) => p.positive)];
    const bags = texts.map((t) => withDropout(encoder.bag(t)));
    const { loss, grad } = lossAndGradient(sumFeatures(encoder.table, bags, dim), texts.length, temperature);
    const { ids, rows } = scatterGradient(bags, grad, dim);
    // Cosine decay: late steps refine instead of jumping between the last few batches' favourites.
    adam.update(ids, rows, peakLr * 0.5 * (1 + Math.cos((Math.PI * (step - 1)) / steps)));
    losses.push(loss);
    progress(step, loss);
    // Let timers and I/O run: training may share the process with a serving bot.
    if (step % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return losses;
}

/**
 * The bag sums are computed here in plain JavaScript (a sum's gradient just flows back to each
 * of its terms, see scatterGradient); TensorFlow.js differentiates the rest: normalisation,
 * similarities and the loss. Handing tfjs a [texts, features, dim] gather instead was ~15x slower
 * on the wasm backend (0.9 s against 0.06 s per step, measured): its gather gradient is a
 * JavaScript scatter over every feature into a dense copy of the whole table.
 */
function sumFeatures(table: Float32Array, bags: Bag[], dim: number): Float32Array {
  const sums = new Float32Array(bags.length * dim);
  bags.forEach(({ ids, weights }, t) => {
    const out = t * dim;
    ids.forEach((id, i) => {
      const row = id * dim;
      const w = weights[i]!;
      for (let j = 0; j < dim; j++) sums[out + j]! += w * table[row + j]!;
    });
  });
  return sums;
}

/**
 * Symmetric InfoNCE: query i must pick passage i among the batch's passages, and passage i
 * must pick query i. Returns the loss and its gradient with respect to each text's feature sum.
 */
export function lossAndGradient(sums: Float32Array, texts: number, temperature: number): { loss: number; grad: Float32Array } {
  const pairs = texts / 2;
  return tf.tidy(() => {
    const labels = tf.oneHot(tf.range(0, pairs, 1, 'int32'), pairs);
    const f = (summed: tf.Tensor) => {
      // sqrt(|x|² + ε) rather than |x| + ε: the norm's gradient is 0/0 at a zero vector, which a
      // text whose features all have idf 0 (words the corpus never had as words) sums to.
      const unit = tf.div(summed, tf.sqrt(tf.add(tf.sum(tf.square(summed), 1, true), 1e-12)));
      const [queries, positives] = tf.split(unit, 2, 0) as [tf.Tensor2D, tf.Tensor2D];
      const logits = tf.div(tf.matMul(queries, tf.transpose(positives)), temperature);
      const forward = tf.losses.softmaxCrossEntropy(labels, logits);
      const backward = tf.losses.softmaxCrossEntropy(labels, tf.transpose(logits));
      return tf.mul(tf.add(forward, backward), 0.5) as tf.Scalar;
    };
    const { value, grad } = tf.valueAndGrad(f)(tf.tensor2d(sums, [texts, sums.length / texts]));
    return { loss: value.dataSync()[0]!, grad: grad.dataSync() as Float32Array };
  });
}

/** Each feature of a text receives its text's gradient times its weight: the rows to update and their summed gradients. */
function scatterGradient(bags: Bag[], grad: Float32Array, dim: number): { ids: number[]; rows: Float32Array } {
  const slot = new Map<number, number>();
  for (const { ids } of bags) for (const id of ids) if (!slot.has(id)) slot.set(id, slot.size);
  const rows = new Float32Array(slot.size * dim);
  bags.forEach(({ ids, weights }, t) => {
    ids.forEach((id, i) => {
      const out = slot.get(id)! * dim;
      const w = weights[i]!;
      for (let j = 0; j < dim; j++) rows[out + j]! += w * grad[t * dim + j]!;
    });
  });
  return { ids: [...slot.keys()], rows };
}

/** Adam whose moments and updates touch only the rows a step used. */
class LazyAdam {
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private step = 0;

  constructor(
    private readonly table: Float32Array,
    private readonly dim: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    this.m = new Float32Array(table.length);
    this.v = new Float32Array(table.length);
  }

  update(ids: number[], grad: Float32Array, lr: number): void {
    this.step++;
    const c1 = 1 - this.beta1 ** this.step;
    const c2 = 1 - this.beta2 ** this.step;
    const stepSize = (lr * Math.sqrt(c2)) / c1;
    ids.forEach((id, i) => {
      if (id === 0) return; // padding stays zero
      for (let j = 0; j < this.dim; j++) {
        const at = id * this.dim + j;
        const g = grad[i * this.dim + j]!;
        const m = (this.m[at] = this.beta1 * this.m[at]! + (1 - this.beta1) * g);
        const v = (this.v[at] = this.beta2 * this.v[at]! + (1 - this.beta2) * g * g);
        this.table[at]! -= (stepSize * m) / (Math.sqrt(v) + this.eps);
      }
    });
  }
}
