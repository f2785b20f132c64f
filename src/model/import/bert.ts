/**
 * The BERT-family encoder forward (BertModel, XLMRobertaModel), as Hugging Face's modeling_bert.py
 * computes it in eval mode: word + position (+ XLM-R's offset) + token-type embeddings, LayerNorm;
 * per layer post-norm self-attention (with the padding mask) and a GELU (exact erf) MLP; then the
 * sentence-transformers pooling (CLS or mean over unmasked tokens) and, when declared, L2 norm.
 */
import { encoderKernels, type EncoderKernels } from './encoder-kernels.ts';
import { expectedTensors, layerTensor, type EncoderConfig, type Pooling } from './encoder-config.ts';

export interface EncoderInput {
  ids: number[];
  /** Token type ids (default all 0). */
  typeIds?: number[];
  /** 1 for real tokens, 0 for padding (default all 1). */
  mask?: number[];
}

export class BertEncoder {
  readonly kernels: EncoderKernels;

  constructor(
    readonly config: EncoderConfig,
    private readonly weights: Map<string, Float32Array>,
    readonly pooling: Pooling,
    kernels?: EncoderKernels,
  ) {
    this.kernels = kernels ?? encoderKernels();
    for (const [name, shape] of expectedTensors(config)) {
      const w = weights.get(name);
      const size = shape.reduce((a, b) => a * b, 1);
      if (!w || w.length !== size) throw new Error(`encoder weights: ${name} ${w ? `has ${w.length} values, expected ${size}` : 'is missing'}`);
    }
  }

  /** The same weights with another pooling (e.g. without the L2 norm, to compare with llama.cpp's raw vectors). */
  withPooling(pooling: Pooling, kernels: EncoderKernels = this.kernels): BertEncoder {
    return new BertEncoder(this.config, this.weights, pooling, kernels);
  }

  /** How many tokens one sequence may have (the position table, past XLM-R's offset). */
  get maxTokens(): number {
    return this.config.maxPositions - this.config.positionOffset;
  }

  private w(name: string): Float32Array {
    return this.weights.get(name)!;
  }

  /**
   * The last hidden states of a batch, padded to its longest sequence: [batch, T, hidden] and T.
   * Padding positions are masked out of attention (their own rows are computed but meaningless).
   */
  hiddenStates(batch: EncoderInput[]): { states: Float32Array; length: number } {
    const c = this.config;
    const k = this.kernels;
    const H = c.hidden;
    const B = batch.length;
    const T = Math.max(1, ...batch.map((s) => s.ids.length));
    if (T > this.maxTokens) throw new Error(`a sequence of ${T} tokens is longer than this encoder's ${this.maxTokens}`);
    const rows = B * T;
    // Embeddings.
    const word = this.w('embeddings.word_embeddings.weight');
    const pos = this.w('embeddings.position_embeddings.weight');
    const types = c.typeVocabSize > 0 ? this.w('embeddings.token_type_embeddings.weight') : undefined;
    const x0 = new Float32Array(rows * H);
    const keyMask = new Uint8Array(rows);
    for (let b = 0; b < B; b++) {
      const s = batch[b]!;
      for (let t = 0; t < T; t++) {
        const real = t < s.ids.length && (s.mask?.[t] ?? 1) !== 0;
        keyMask[b * T + t] = real ? 1 : 0;
        const id = t < s.ids.length ? s.ids[t]! : 0;
        if (id < 0 || id >= c.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (${c.vocabSize})`);
        const type = s.typeIds?.[t] ?? 0;
        if (type < 0 || (types && type >= c.typeVocabSize)) throw new Error(`token type ${type} is outside the type table (${c.typeVocabSize})`);
        const o = (b * T + t) * H;
        const wo = id * H;
        const po = (t + c.positionOffset) * H;
        for (let j = 0; j < H; j++) x0[o + j] = word[wo + j]! + pos[po + j]! + (types ? types[type * H + j]! : 0);
      }
    }
    let x = k.layerNorm(x0, this.w('embeddings.LayerNorm.weight'), this.w('embeddings.LayerNorm.bias'), rows, H, c.layerNormEps);
    const heads = c.heads;
    const d = H / heads;
    const scale = 1 / Math.sqrt(d);
    for (let l = 0; l < c.layers; l++) {
      const L = (name: string) => this.w(layerTensor(l, name));
      const q = k.linear(x, L('attention.self.query.weight'), L('attention.self.query.bias'), rows, H, H);
      const kk = k.linear(x, L('attention.self.key.weight'), L('attention.self.key.bias'), rows, H, H);
      const v = k.linear(x, L('attention.self.value.weight'), L('attention.self.value.bias'), rows, H, H);
      const ctx = new Float32Array(rows * H);
      for (let b = 0; b < B; b++) {
        // [T, heads, d] → [heads, T, d] for this sequence (q scaled on the way).
        const qh = new Float32Array(heads * T * d);
        const kh = new Float32Array(heads * T * d);
        const vh = new Float32Array(heads * T * d);
        for (let t = 0; t < T; t++) {
          const src = (b * T + t) * H;
          for (let h = 0; h < heads; h++) {
            const dst = (h * T + t) * d;
            for (let j = 0; j < d; j++) {
              qh[dst + j] = q[src + h * d + j]! * scale;
              kh[dst + j] = kk[src + h * d + j]!;
              vh[dst + j] = v[src + h * d + j]!;
            }
          }
        }
        const scores = k.batchMatmulT(qh, kh, heads, T, d, T); // [heads, T, T]
        for (let s = 0; s < T; s++) {
          if (keyMask[b * T + s]) continue;
          for (let r = 0; r < heads * T; r++) scores[r * T + s] = Number.NEGATIVE_INFINITY;
        }
        if (!keyMask.subarray(b * T, (b + 1) * T).some((m) => m)) scores.fill(0); // an all-padding row: uniform, unused
        k.softmax(scores, heads * T, T);
        const out = k.batchMatmul(scores, vh, heads, T, T, d); // [heads, T, d]
        for (let t = 0; t < T; t++) {
          const dst = (b * T + t) * H;
          for (let h = 0; h < heads; h++) {
            const src = (h * T + t) * d;
            for (let j = 0; j < d; j++) ctx[dst + h * d + j] = out[src + j]!;
          }
        }
      }
      const attn = k.linear(ctx, L('attention.output.dense.weight'), L('attention.output.dense.bias'), rows, H, H);
      for (let i = 0; i < attn.length; i++) attn[i]! += x[i]!;
      x = k.layerNorm(attn, L('attention.output.LayerNorm.weight'), L('attention.output.LayerNorm.bias'), rows, H, c.layerNormEps);
      const up = k.linear(x, L('intermediate.dense.weight'), L('intermediate.dense.bias'), rows, H, c.intermediate);
      k.gelu(up);
      const down = k.linear(up, L('output.dense.weight'), L('output.dense.bias'), rows, c.intermediate, H);
      for (let i = 0; i < down.length; i++) down[i]! += x[i]!;
      x = k.layerNorm(down, L('output.LayerNorm.weight'), L('output.LayerNorm.bias'), rows, H, c.layerNormEps);
    }
    return { states: x, length: T };
  }

  /** One pooled (and, when the model declares it, L2-normalised) vector per sequence. */
  embed(batch: EncoderInput[]): Float32Array[] {
    if (batch.length === 0) return [];
    const H = this.config.hidden;
    const { states, length: T } = this.hiddenStates(batch);
    return batch.map((s, b) => {
      const out = new Float32Array(H);
      if (this.pooling.mode === 'cls') out.set(states.subarray(b * T * H, b * T * H + H));
      else {
        let n = 0;
        for (let t = 0; t < s.ids.length; t++) {
          if ((s.mask?.[t] ?? 1) === 0) continue;
          n++;
          const o = (b * T + t) * H;
          for (let j = 0; j < H; j++) out[j]! += states[o + j]!;
        }
        for (let j = 0; j < H; j++) out[j]! /= Math.max(1, n);
      }
      if (this.pooling.normalize) {
        let norm = 0;
        for (let j = 0; j < H; j++) norm += out[j]! * out[j]!;
        norm = Math.max(Math.sqrt(norm), 1e-12);
        for (let j = 0; j < H; j++) out[j]! /= norm;
      }
      return out;
    });
  }
}
