/**
 * The Llama-family decoder (Llama 2/3, Mistral, Qwen2/2.5, Qwen3), as transformers' modeling_llama.py
 * computes it in eval mode, one readable forward:
 *
 *   x = embed(ids)
 *   per layer:  x += o_proj(attention(rope(q_norm?(q_proj(rms(x)))), rope(k_norm?(k_proj(rms(x)))), v_proj(rms(x))))
 *               x += down_proj(silu(gate_proj(rms(x))) * up_proj(rms(x)))
 *   logits = lm_head(rms(x))            (lm_head = embed when tied)
 *
 * with grouped-query attention (kvHeads ≤ heads: each key/value head serves heads/kvHeads query
 * heads), RoPE over the head's two halves (transformers' rotate_half; GGUF llama-arch rows are
 * un-permuted to this layout when read), optional q/k/v (and o) biases, optional per-head q/k
 * RMSNorm (Qwen3), and a KV cache for decoding one token at a time.
 *
 * Weight matrices stay in the dtype they were loaded as (float32, bf16, f16 or int8 with scales:
 * weights.ts), in PyTorch's [out, in] layout; norms and biases are float32. The products run on the
 * encoder kernels: native (OpenBLAS sgemm for float32; native/src/quant.cc for bf16/f16/int8, with
 * AVX512_BF16 when the CPU has it) when the addon loads, else JavaScript. Activations, the KV cache
 * and every sum are float32. The tfjs GPT op contract (forward-ops.ts) is built around GPT's fused
 * c_attn, LayerNorm, GELU and learned positions and tensors that autodiff can train; inference here
 * needs none of that, so this stays on plain arrays.
 */
import { encoderKernels, type EncoderKernels } from './encoder-kernels.ts';
import { expectedLlamaTensors, layerName, ropeInverseFrequencies, type LlamaConfig } from './llama-config.ts';
import { convertWeight, dequantize, f32Matrix, weightBytes, weightRow, type WeightDtype, type WeightMatrix } from './weights.ts';

/** A weight as given to LlamaModel: float32 values, or a matrix already in its stored dtype. */
export type LlamaWeight = Float32Array | WeightMatrix;

/** The attention's intermediate values: stacked queries, scores, and their product with the values. */
interface AttentionScratch {
  qg: Float32Array;
  scores: Float32Array;
  ctx: Float32Array;
}

/** Keys and values of the positions seen so far, per layer [kvHeads, capacity, headDim]. */
export interface LlamaCache {
  length: number;
  capacity: number;
  keys: Float32Array[];
  values: Float32Array[];
}

export interface GenerateOptions {
  maxTokens: number;
  /** Ids that end the answer (several EOS ids: generation_config.json). The stop id is not returned. */
  stop?: Iterable<number>;
  /** Chooses the next id from the last position's logits (default: greedy, the highest). */
  pick?: (logits: Float32Array) => number;
  /** Called with each new id as it is chosen (streaming). */
  onToken?: (id: number) => void;
  signal?: AbortSignal;
  /** false: recompute the whole sequence for every token (for tests: must equal the cached run). */
  useCache?: boolean;
}

export function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

export class LlamaModel {
  readonly kernels: EncoderKernels;
  /** RoPE's inverse frequencies, scaling applied (one per pair of a head). */
  readonly invFreq: Float64Array;
  /** The projection and embedding matrices, in their stored dtype. */
  private readonly matrices = new Map<string, WeightMatrix>();
  /** Norm weights and biases (float32). */
  private readonly vectors = new Map<string, Float32Array>();

  /**
   * `weights`: every tensor of expectedLlamaTensors(config), as float32 values or as a matrix in
   * its stored dtype. `dtype` converts the float32 ones (and any other matrix) to that dtype:
   * 'bf16' (round to nearest even), 'int8' (per output channel); unset keeps each as given.
   */
  constructor(
    readonly config: LlamaConfig,
    weights: ReadonlyMap<string, LlamaWeight>,
    options: { kernels?: EncoderKernels; invFreq?: Float64Array; dtype?: Exclude<WeightDtype, 'f16'> } = {},
  ) {
    this.kernels = options.kernels ?? encoderKernels();
    this.invFreq = options.invFreq ?? ropeInverseFrequencies(config);
    if (this.invFreq.length !== config.headDim / 2) throw new Error(`RoPE: ${this.invFreq.length} frequencies for head_dim ${config.headDim}`);
    for (const [name, shape] of expectedLlamaTensors(config)) {
      const w = weights.get(name);
      const size = shape.reduce((a, b) => a * b, 1);
      const have = w === undefined ? 0 : w instanceof Float32Array ? w.length : w.rows * w.cols;
      if (!w || have !== size) throw new Error(`chat model weights: ${name} ${w ? `has ${have} values, expected ${size}` : 'is missing'}`);
      if (shape.length === 2) {
        const m = w instanceof Float32Array ? f32Matrix(w, shape[0]!, shape[1]!) : w;
        if (m.rows !== shape[0] || m.cols !== shape[1]) throw new Error(`chat model weights: ${name} is [${m.rows}, ${m.cols}], expected [${shape.join(', ')}]`);
        const stored = options.dtype ? convertWeight(m, options.dtype) : m;
        this.matrices.set(name, stored);
        // Decoding reads every matrix once per token: in 2 MB pages it streams ~1.3-1.6x faster
        // (docs/open-chat-models.md). The embedding is read by rows, but tied models use it as the head.
        this.kernels.adviseHugePages(stored.data);
      } else {
        this.vectors.set(name, w instanceof Float32Array ? w : dequantize(w));
      }
    }
  }

  /**
   * Every weight as held (matrices in their stored dtype, norms and biases float32), by Hugging
   * Face name: to build another model from them (a LoRA merge, a trainable float32 copy).
   */
  weights(): Map<string, LlamaWeight> {
    return new Map<string, LlamaWeight>([...this.matrices, ...this.vectors]);
  }

  /** Bytes the weights take in memory. */
  weightBytes(): number {
    let bytes = 0;
    for (const m of this.matrices.values()) bytes += weightBytes(m);
    for (const v of this.vectors.values()) bytes += v.byteLength;
    return bytes;
  }

  /** The stored dtypes of the matrices, e.g. "bf16" or "f32+int8". */
  weightDtype(): string {
    return [...new Set([...this.matrices.values()].map((m) => m.dtype))].sort().join('+');
  }

  private w(name: string): WeightMatrix {
    return this.matrices.get(name)!;
  }

  private v(name: string): Float32Array {
    return this.vectors.get(name)!;
  }

  private optional(name: string): Float32Array | null {
    return this.vectors.get(name) ?? null;
  }

  newCache(capacity = 256): LlamaCache {
    const c = this.config;
    const size = c.kvHeads * capacity * c.headDim;
    return { length: 0, capacity, keys: Array.from({ length: c.layers }, () => new Float32Array(size)), values: Array.from({ length: c.layers }, () => new Float32Array(size)) };
  }

  /** Grows the cache (doubling) so that `needed` positions fit. */
  private reserve(cache: LlamaCache, needed: number): void {
    if (needed <= cache.capacity) return;
    const c = this.config;
    let capacity = cache.capacity;
    while (capacity < needed) capacity *= 2;
    const grow = (old: Float32Array) => {
      const next = new Float32Array(c.kvHeads * capacity * c.headDim);
      for (let g = 0; g < c.kvHeads; g++) next.set(old.subarray(g * cache.capacity * c.headDim, (g * cache.capacity + cache.length) * c.headDim), g * capacity * c.headDim);
      return next;
    };
    cache.keys = cache.keys.map(grow);
    cache.values = cache.values.map(grow);
    cache.capacity = capacity;
  }

  /**
   * Runs `ids` after what the cache holds (a fresh cache when none is given) and returns logits
   * [rows, vocab]: every new position's, or only the last one's with `lastOnly`.
   */
  forward(ids: number[], cache: LlamaCache = this.newCache(Math.max(1, ids.length)), options: { lastOnly?: boolean } = {}): Float32Array {
    const c = this.config;
    const k = this.kernels;
    const T = ids.length;
    if (T === 0) throw new Error('forward: no tokens');
    const past = cache.length;
    if (past + T > c.maxPositions) throw new Error(`${past + T} positions are more than this model's ${c.maxPositions}`);
    this.reserve(cache, past + T);
    const H = c.hidden;
    const qDim = c.heads * c.headDim;
    const kvDim = c.kvHeads * c.headDim;

    const embed = this.w('model.embed_tokens.weight');
    let x = new Float32Array(T * H);
    for (let t = 0; t < T; t++) {
      const id = ids[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (${c.vocabSize})`);
      weightRow(embed, id, x.subarray(t * H, (t + 1) * H));
    }

    // Every layer's intermediate values, in buffers made once per call (the products write into
    // them): a new array per product made ~45 MB of garbage per layer in a 512-token prefill,
    // which the peak RSS showed.
    const h = new Float32Array(T * H);
    const q = new Float32Array(T * qDim);
    const kk = new Float32Array(T * kvDim);
    const v = new Float32Array(T * kvDim);
    const attn = new Float32Array(T * qDim);
    const o = new Float32Array(T * H);
    const gate = new Float32Array(T * c.intermediate);
    const up = new Float32Array(T * c.intermediate);
    const scratch = this.attentionScratch(T, past + T);
    const angles = ropeAngles(T, past, this.invFreq);
    for (let l = 0; l < c.layers; l++) {
      const L = (name: string) => this.w(layerName(l, name));
      const N = (name: string) => this.v(layerName(l, name));
      const B = (name: string) => this.optional(layerName(l, name));
      // Attention.
      k.rmsNorm(x, N('input_layernorm.weight'), T, H, c.rmsNormEps, h);
      k.linearWeight(h, L('self_attn.q_proj.weight'), B('self_attn.q_proj.bias'), T, q);
      k.linearWeight(h, L('self_attn.k_proj.weight'), B('self_attn.k_proj.bias'), T, kk);
      k.linearWeight(h, L('self_attn.v_proj.weight'), B('self_attn.v_proj.bias'), T, v);
      if (c.qkNorm) {
        k.rmsNorm(q, N('self_attn.q_norm.weight'), T * c.heads, c.headDim, c.rmsNormEps, q);
        k.rmsNorm(kk, N('self_attn.k_norm.weight'), T * c.kvHeads, c.headDim, c.rmsNormEps, kk);
      }
      rope(q, T, c.heads, c.headDim, angles);
      rope(kk, T, c.kvHeads, c.headDim, angles);
      this.store(cache, l, kk, v, past, T);
      this.attention(q, cache, l, past, T, scratch, attn);
      k.linearWeight(attn, L('self_attn.o_proj.weight'), B('self_attn.o_proj.bias'), T, o);
      for (let i = 0; i < x.length; i++) x[i]! += o[i]!;
      // SwiGLU MLP.
      k.rmsNorm(x, N('post_attention_layernorm.weight'), T, H, c.rmsNormEps, h);
      k.linearWeight(h, L('mlp.gate_proj.weight'), null, T, gate);
      k.linearWeight(h, L('mlp.up_proj.weight'), null, T, up);
      k.siluMul(gate, up);
      k.linearWeight(gate, L('mlp.down_proj.weight'), null, T, o);
      for (let i = 0; i < x.length; i++) x[i]! += o[i]!;
    }
    cache.length = past + T;

    const rows = options.lastOnly ? 1 : T;
    if (options.lastOnly) x = x.slice((T - 1) * H);
    const out = new Float32Array(rows * H);
    k.rmsNorm(x, this.v('model.norm.weight'), rows, H, c.rmsNormEps, out);
    const head = c.tiedEmbeddings ? embed : this.w('lm_head.weight');
    return k.linearWeight(out, head, null, rows);
  }

  /** Writes this step's keys and values into the cache at positions past..past+T. */
  private store(cache: LlamaCache, layer: number, keys: Float32Array, values: Float32Array, past: number, T: number): void {
    const { kvHeads, headDim: d } = this.config;
    const K = cache.keys[layer]!;
    const V = cache.values[layer]!;
    for (let t = 0; t < T; t++) {
      for (let g = 0; g < kvHeads; g++) {
        const src = (t * kvHeads + g) * d;
        const dst = (g * cache.capacity + past + t) * d;
        K.set(keys.subarray(src, src + d), dst);
        V.set(values.subarray(src, src + d), dst);
      }
    }
  }

  /** The attention's buffers for T new positions against S keys, shared by every layer and head. */
  private attentionScratch(T: number, S: number): AttentionScratch {
    const { heads, kvHeads, headDim: d } = this.config;
    const rows = (heads / kvHeads) * T;
    return { qg: new Float32Array(rows * d), scores: new Float32Array(rows * S), ctx: new Float32Array(rows * d) };
  }

  /**
   * Causal grouped-query attention of T new queries [T, heads·d] against the cache's S = past+T
   * keys, into out [T, heads·d]: per key/value head, its query heads' rows stacked, softmax(q·kᵀ/√d)·v.
   */
  private attention(q: Float32Array, cache: LlamaCache, layer: number, past: number, T: number, scratch: AttentionScratch, out: Float32Array): void {
    const { heads, kvHeads, headDim: d, slidingWindow } = this.config;
    const k = this.kernels;
    const group = heads / kvHeads;
    const S = past + T;
    const scale = 1 / Math.sqrt(d);
    const rows = group * T;
    const qg = scratch.qg;
    for (let g = 0; g < kvHeads; g++) {
      // Rows r = j·T + t: query head g·group + j at new position t (scaled here rather than in the scores).
      for (let j = 0; j < group; j++) {
        for (let t = 0; t < T; t++) {
          const src = (t * heads + g * group + j) * d;
          const dst = (j * T + t) * d;
          for (let e = 0; e < d; e++) qg[dst + e] = q[src + e]! * scale;
        }
      }
      const keys = cache.keys[layer]!.subarray(g * cache.capacity * d, (g * cache.capacity + S) * d);
      const values = cache.values[layer]!.subarray(g * cache.capacity * d, (g * cache.capacity + S) * d);
      const scores = k.linear(qg, keys, null, rows, d, S, scratch.scores); // [rows, S]
      for (let r = 0; r < rows; r++) {
        const pos = past + (r % T);
        const from = slidingWindow ? Math.max(0, pos - slidingWindow + 1) : 0;
        const row = r * S;
        scores.fill(Number.NEGATIVE_INFINITY, row, row + from);
        scores.fill(Number.NEGATIVE_INFINITY, row + pos + 1, row + S);
      }
      k.softmax(scores, rows, S);
      const ctx = k.batchMatmul(scores, values, 1, rows, S, d, scratch.ctx); // [rows, d]
      // Element by element: a subarray per row cost more than the copy (a 512-token prefill makes 3584 rows per head group).
      for (let j = 0; j < group; j++) {
        for (let t = 0; t < T; t++) {
          const src = (j * T + t) * d;
          const dst = (t * heads + g * group + j) * d;
          for (let e = 0; e < d; e++) out[dst + e] = ctx[src + e]!;
        }
      }
    }
  }

  /**
   * Generates up to maxTokens ids after `prompt` (greedy unless `pick` says otherwise): the prompt
   * in one batched pass, then one position at a time against the KV cache.
   */
  generate(prompt: number[], options: GenerateOptions): number[] {
    const stop = new Set(options.stop ?? []);
    const pick = options.pick ?? argmax;
    const useCache = options.useCache ?? true;
    const out: number[] = [];
    const cache = this.newCache(Math.min(this.config.maxPositions, prompt.length + options.maxTokens));
    let logits = useCache ? this.forward(prompt, cache, { lastOnly: true }) : this.forward(prompt, undefined, { lastOnly: true });
    while (out.length < options.maxTokens) {
      if (options.signal?.aborted) break;
      const next = pick(logits);
      if (stop.has(next)) break;
      out.push(next);
      options.onToken?.(next);
      if (out.length >= options.maxTokens || prompt.length + out.length >= this.config.maxPositions) break;
      logits = useCache ? this.forward([next], cache, { lastOnly: true }) : this.forward([...prompt, ...out], undefined, { lastOnly: true });
    }
    return out;
  }
}

/** cos and sin of (past + t)·invFreq[i] for the T new positions [T, d/2]: once per forward, for every layer's queries and keys. */
function ropeAngles(T: number, past: number, invFreq: Float64Array): { cos: Float64Array; sin: Float64Array } {
  const half = invFreq.length;
  const cos = new Float64Array(T * half);
  const sin = new Float64Array(T * half);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const angle = (past + t) * invFreq[i]!;
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** RoPE in place on x [T, heads, d]: pair (i, i + d/2) of each head rotated by the position's angle i. */
function rope(x: Float32Array, T: number, heads: number, d: number, angles: { cos: Float64Array; sin: Float64Array }): void {
  const half = d / 2;
  const { cos, sin } = angles;
  for (let t = 0; t < T; t++) {
    const at = t * half;
    for (let h = 0; h < heads; h++) {
      const o = (t * heads + h) * d;
      for (let i = 0; i < half; i++) {
        const a = x[o + i]!;
        const b = x[o + i + half]!;
        x[o + i] = a * cos[at + i]! - b * sin[at + i]!;
        x[o + i + half] = b * cos[at + i]! + a * sin[at + i]!;
      }
    }
  }
}
