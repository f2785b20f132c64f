import { featureIds, type FeatureOptions } from './text-features.ts';
import { Random } from '../model/random.ts';

export interface EncoderConfig extends FeatureOptions {
  /** Width of each member's vectors (the embedding is members × dim wide). */
  dim: number;
  /** Independently trained encoders whose embeddings are concatenated (see EncoderEnsemble). */
  members: number;
  /** Features read per text (long passages keep their beginning). */
  maxFeatures: number;
}

export const DEFAULT_ENCODER_CONFIG: EncoderConfig = { buckets: 1 << 15, dim: 64, members: 4, subwordN: 3, maxFeatures: 2000 };

/** A text as the encoder sees it: distinct feature ids and the weight of each. */
export interface Bag {
  ids: number[];
  weights: number[];
}

/**
 * One text encoder: every hashed feature (word, character trigram, Chinese character or bigram)
 * has a learned vector; a text's embedding is the L2-normalised sum of its features' vectors — a
 * bag of learned word pieces, like fastText's sentence vectors or StarSpace — each feature
 * weighted by its inverse document frequency in the training corpus times a dampened count
 * (1 + ln tf), as BM25 weighs terms: "the" and "的" barely move an embedding.
 *
 * Why a bag and not a transformer: a company's corpus is small (the sample handbook has 227
 * passages); a contrastively trained bag learns what BM25 lacks (related words pulled together),
 * trains in seconds on two cores and embeds a query in microseconds without a tensor backend.
 * Training (tfjs) lives in encoder-training.ts; inference here is plain JavaScript.
 */
export class BagEncoder {
  constructor(
    readonly config: EncoderConfig,
    /** [buckets, dim], row-major; row 0 (padding) stays zero. */
    readonly table: Float32Array,
    /** [buckets]: inverse document frequency of each feature bucket (shared by an ensemble's members). */
    readonly idf: Float32Array,
  ) {
    if (table.length !== config.buckets * config.dim || idf.length !== config.buckets) {
      throw new Error(`encoder weights have ${table.length} + ${idf.length} values, expected ${config.buckets}x${config.dim} + ${config.buckets}`);
    }
  }

  /**
   * Small random vectors: before any training, the sum of random vectors is a random projection
   * of the bag of features, so cosine already tracks word overlap and training starts from a
   * lexical matcher rather than from noise.
   */
  static random(config: EncoderConfig, idf: Float32Array, seed = 1): BagEncoder {
    const table = new Random(seed).normalArray(config.buckets * config.dim, 1 / Math.sqrt(config.dim));
    table.fill(0, 0, config.dim);
    return new BagEncoder(config, table, idf);
  }

  bag(text: string): Bag {
    const counts = new Map<number, number>();
    for (const id of featureIds(text, this.config, this.config.maxFeatures)) counts.set(id, (counts.get(id) ?? 0) + 1);
    const ids = [...counts.keys()];
    return { ids, weights: ids.map((id) => this.idf[id]! * (1 + Math.log(counts.get(id)!))) };
  }

  /** The unit-length embedding of a bag (all zeros for an empty one). */
  embedBag({ ids, weights }: Bag): Float64Array {
    const { dim } = this.config;
    const sum = new Float64Array(dim);
    ids.forEach((id, i) => {
      const row = id * dim;
      const w = weights[i]!;
      for (let j = 0; j < dim; j++) sum[j]! += w * this.table[row + j]!;
    });
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += sum[j]! * sum[j]!;
    const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = 0; j < dim; j++) sum[j]! *= scale;
    return sum;
  }
}

/**
 * Several BagEncoders trained from different seeds, their embeddings concatenated (scaled so the
 * result stays unit length): the cosine of two texts is the members' mean cosine. On a corpus of
 * a few hundred passages one encoder's quality depends visibly on its seed; averaging four
 * halves that spread (measured on the handbook, docs/knowledge-base.md) for the same total steps.
 */
export class EncoderEnsemble {
  constructor(readonly members: BagEncoder[]) {
    if (members.length === 0) throw new Error('an encoder ensemble needs at least one member');
  }

  get config(): EncoderConfig {
    return this.members[0]!.config;
  }

  get dimensions(): number {
    return this.members.length * this.config.dim;
  }

  embed(text: string): number[] {
    const bag = this.members[0]!.bag(text);
    const scale = 1 / Math.sqrt(this.members.length);
    const out: number[] = [];
    for (const member of this.members) for (const v of member.embedBag(bag)) out.push(v * scale);
    return out;
  }
}

/**
 * ln((N + 1) / (df + 0.5)), floored at 0.1; 0 for a feature the corpus never had: its vector was
 * never trained (still random), so in a query it would only add noise.
 */
export function inverseDocumentFrequencies(config: FeatureOptions, corpus: string[]): Float32Array {
  const df = new Uint32Array(config.buckets);
  for (const text of corpus) for (const id of new Set(featureIds(text, config))) df[id]!++;
  const idf = new Float32Array(config.buckets);
  for (let i = 1; i < config.buckets; i++) idf[i] = df[i] === 0 ? 0 : Math.max(0.1, Math.log((corpus.length + 1) / (df[i]! + 0.5)));
  return idf;
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
}
