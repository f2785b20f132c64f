/**
 * The llama family in our trainable model (gpt.ts with `arch: 'llama'`): its logits equal the
 * imported models' inference engine (LlamaModel, itself checked against llama.cpp in
 * import/llama-parity.test.ts) on the tiny Llama 3.1 / Mistral / Qwen2 / Qwen3 checkpoints; the
 * gradients of its new ops equal float64 finite differences of plain-JS float64 references; every
 * parameter's gradient agrees with the loss; the KV cache changes nothing.
 */
import { describe, expect, it } from 'vitest';
import { tf, useBackend, randomIds } from './helpers.ts';
import { GPT, parameterSpecs } from '../../src/model/gpt.ts';
import { countParameters, fromLlamaConfig, MODEL_SIZES, validateConfig, type GPTConfig } from '../../src/model/config.ts';
import { LlamaModel } from '../../src/model/import/llama.ts';
import { ropeInverseFrequencies } from '../../src/model/import/llama-config.ts';
import { linearOutIn, repeatKv, rmsNorm, rope, ropeTables, swiglu } from '../../src/model/ops.ts';
import { PORTABLE_FORWARD_OPS } from '../../src/model/portable-forward-ops.ts';
import { generateAll } from '../../src/model/generate.ts';
import { CharTokenizer } from '../../src/model/tokenizer/char.ts';
import { Random } from '../../src/model/random.ts';
import { tinyChatModel, type TinyArch } from './import/tiny-llama.ts';

/** A tiny llama-arch config with every option on: GQA, q/k norm, q/k/v and o biases, untied head, llama3 RoPE scaling. */
const everything: GPTConfig = validateConfig({
  arch: 'llama',
  vocabSize: 13,
  blockSize: 12,
  nLayer: 2,
  nHead: 4,
  nKvHead: 2,
  nEmbd: 16,
  headDim: 6,
  intermediateSize: 20,
  normEps: 1e-5,
  ropeTheta: 500,
  ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
  qkvBias: true,
  outputBias: true,
  qkNorm: true,
  tiedHead: false,
});

/** A model of `config` with weights large enough to exercise every nonlinearity (norm weights around 1). */
function noisyModel(config: GPTConfig, seed: number, std = 0.3): GPT {
  const model = GPT.create(config, seed);
  const rng = new Random(seed + 1);
  const params = new Map<string, tf.Tensor>();
  for (const name of model.paramNames) {
    const p = model.params.get(name)!;
    params.set(name, tf.keep(tf.add(p, tf.tensor(rng.normalArray(p.size, std), p.shape))));
  }
  model.setParams(params);
  return model;
}

describe('llama-arch config', () => {
  it('fills llama defaults, refuses llama fields on a GPT, and counts parameters from the import table', () => {
    const c = validateConfig({ arch: 'llama', vocabSize: 10, blockSize: 8, nLayer: 1, nHead: 4, nEmbd: 32 });
    expect(c).toMatchObject({ nKvHead: 4, headDim: 8, intermediateSize: 128, normEps: 1e-6, ropeTheta: 10000, ropeScaling: { type: 'none' }, tiedHead: true, qkNorm: false });
    expect(() => validateConfig({ vocabSize: 10, blockSize: 8, nLayer: 1, nHead: 4, nEmbd: 32, nKvHead: 2 })).toThrow(/only apply to arch "llama"/);
    expect(() => validateConfig({ ...c, nKvHead: 3 })).toThrow(/multiple of nKvHead/);
    expect(() => validateConfig({ ...c, bias: true })).toThrow(/qkvBias/);
    // A GPT config is read back exactly as written (no new keys in old folders' config.json).
    const gpt = { vocabSize: 10, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true };
    expect(validateConfig(gpt)).toEqual(gpt);
    const sum = (cfg: GPTConfig) => parameterSpecs(cfg).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    expect(countParameters(everything)).toBe(sum(everything));
    const cpu = validateConfig({ ...MODEL_SIZES['llama-cpu'], vocabSize: 65 });
    expect(countParameters(cpu)).toBe(sum(cpu));
  });
});

describe.each(['wasm', 'cpu'] as const)('llama-arch forward on %s', (backend) => {
  it.each(['llama', 'mistral', 'qwen2', 'qwen3'] as TinyArch[])('%s: logits equal the inference engine (LlamaModel) within 1e-4 relative', async (arch) => {
    await useBackend(backend);
    const tiny = tinyChatModel(arch, 3);
    const config = fromLlamaConfig(tiny.config);
    // The checkpoint's tensors are our parameters as they are: same names, same [out, in] shapes.
    const params = new Map(parameterSpecs(config).map((s) => [s.name, tf.keep(tf.tensor(tiny.weights.get(s.name)!, s.shape))]));
    const model = new GPT(config, params);
    const engine = new LlamaModel(tiny.config, tiny.weights);
    const ids = Array.from(randomIds(40, tiny.config.vocabSize, 7));
    const ours = tf.tidy(() => model.forward(tf.tensor2d(Int32Array.from(ids), [1, ids.length], 'int32'))).dataSync();
    const ref = engine.forward(ids);
    expect(ours.length).toBe(ref.length);
    let maxDiff = 0;
    let maxRef = 0;
    for (let i = 0; i < ref.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ours[i]! - ref[i]!));
      maxRef = Math.max(maxRef, Math.abs(ref[i]!));
    }
    expect(maxRef).toBeGreaterThan(1);
    expect(maxDiff / maxRef, `${arch}: max |Δ| ${maxDiff}, max |logit| ${maxRef}`).toBeLessThan(1e-4);
    model.dispose();
  });

  it('KV-cached logits equal the full forward position by position, and cached generation equals uncached', async () => {
    await useBackend(backend);
    const model = noisyModel(everything, 4, 0.4);
    const ids = Array.from(randomIds(everything.blockSize, everything.vocabSize, 5));
    const V = everything.vocabSize;
    const full = tf.tidy(() => model.forward(tf.tensor2d(Int32Array.from(ids), [1, ids.length], 'int32'))).dataSync();
    const cache = model.emptyCache();
    const steps: Float32Array[] = [];
    const run = (part: number[]) => {
      const t = model.forwardCached(tf.tensor2d(Int32Array.from(part), [1, part.length], 'int32'), cache);
      steps.push(Float32Array.from(t.dataSync()));
      t.dispose();
    };
    run(ids.slice(0, 5));
    for (let i = 5; i < ids.length; i++) run([ids[i]!]);
    steps.forEach((logits, j) => {
      const pos = j === 0 ? 4 : 4 + j;
      for (let v = 0; v < V; v++) expect(Math.abs(logits[v]! - full[pos * V + v]!), `position ${pos}`).toBeLessThan(1e-4);
    });
    GPT.disposeCache(cache);

    const tokenizer = CharTokenizer.fromText('abcdefghij');
    const small = noisyModel({ ...everything, vocabSize: tokenizer.vocabSize, blockSize: 24 }, 9, 0.4);
    const prompt = tokenizer.encode('abcab');
    for (const opts of [{ temperature: 0 }, { temperature: 1, topK: 5, seed: 3 }]) {
      const common = { maxTokens: 24 - prompt.length, stopAtEnd: false, ...opts };
      const cached = await generateAll(small, tokenizer, prompt, { ...common, useCache: true });
      const uncached = await generateAll(small, tokenizer, prompt, { ...common, useCache: false });
      expect(cached.tokens.length).toBe(common.maxTokens);
      expect(cached.tokens).toEqual(uncached.tokens);
    }
    model.dispose();
    small.dispose();
  });

  it('every parameter of a tiny llama-arch model: gradient = directional finite difference, none zero', async () => {
    await useBackend(backend);
    const model = noisyModel(everything, 7);
    const B = 2;
    const T = everything.blockSize;
    const x = tf.tensor2d(randomIds(B * T, everything.vocabSize, 1), [B, T], 'int32');
    const yIds = randomIds(B * T, everything.vocabSize, 2);
    yIds[3] = -1;
    const y = tf.tensor2d(yIds, [B, T], 'int32');
    const lossOf = (ps: tf.Tensor[]) => model.loss(x, y, {}, ps);
    const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => lossOf(ps))(model.paramList());
    expect(Number.isFinite(value.dataSync()[0]!)).toBe(true);
    const rng = new Random(3);
    const h = 1e-2;
    model.paramNames.forEach((name, i) => {
      expect(tf.max(tf.abs(grads[i]!)).dataSync()[0]!, `${name} has a gradient`).toBeGreaterThan(0);
      const p = model.paramList()[i]!;
      const d = tf.tensor(rng.normalArray(p.size, 1), p.shape);
      const analytic = tf.sum(tf.mul(grads[i]!, d)).dataSync()[0]!;
      const shifted = (sign: number) => tf.tidy(() => lossOf(model.paramList().map((q, j) => (j === i ? tf.add(q, tf.mul(d, sign * h)) : q))).dataSync()[0]!);
      const numeric = (shifted(1) - shifted(-1)) / (2 * h);
      // The float32 loss carries ~1e-6 of rounding, ~1e-4 in the quotient: an absolute floor for tiny derivatives
      // (the ops' own gradients are checked tightly against float64 below).
      const err = Math.abs(analytic - numeric) / Math.max(1e-2, Math.abs(analytic) + Math.abs(numeric));
      expect(err, `${name}: analytic ${analytic} numeric ${numeric}`).toBeLessThan(2e-2);
      d.dispose();
    });
    model.dispose();
  });
});

// ---- the new ops against float64 references -----------------------------------------------------

type F64 = Float64Array;

function rmsNorm64(x: F64, w: F64, cols: number, eps: number): F64 {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += x[r * cols + c]! ** 2;
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c]! * inv * w[c]!;
  }
  return y;
}

/** x [T, H, d], position past + t. */
function rope64(x: F64, T: number, H: number, d: number, past: number, invFreq: Float64Array): F64 {
  const y = new Float64Array(x.length);
  const half = d / 2;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = (t * H + h) * d;
      for (let i = 0; i < half; i++) {
        const a = (past + t) * invFreq[i]!;
        y[o + i] = x[o + i]! * Math.cos(a) - x[o + i + half]! * Math.sin(a);
        y[o + i + half] = x[o + i + half]! * Math.cos(a) + x[o + i]! * Math.sin(a);
      }
    }
  }
  return y;
}

/** Causal attention, batch 1: q [T, H, d], k and v [T, G, d]; query head h reads key/value head ⌊h / (H/G)⌋. */
function gqa64(q: F64, k: F64, v: F64, T: number, H: number, G: number, d: number): F64 {
  const out = new Float64Array(T * H * d);
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / G));
    for (let t = 0; t < T; t++) {
      const s = Array.from({ length: t + 1 }, (_, u) => {
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[(t * H + h) * d + e]! * k[(u * G + g) * d + e]!;
        return dot / Math.sqrt(d);
      });
      const m = Math.max(...s);
      const p = s.map((z) => Math.exp(z - m));
      const z = p.reduce((a, b) => a + b, 0);
      for (let u = 0; u <= t; u++) for (let e = 0; e < d; e++) out[(t * H + h) * d + e]! += (p[u]! / z) * v[(u * G + g) * d + e]!;
    }
  }
  return out;
}

interface OpCase {
  name: string;
  /** Input shapes (float32 tensors for tf, the same numbers in float64 for the reference). */
  shapes: number[][];
  tf(...xs: tf.Tensor[]): tf.Tensor;
  ref(...xs: F64[]): F64;
}

const invFreq = ropeInverseFrequencies({ headDim: 8, ropeTheta: 100, ropeScaling: { type: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8 } });

const OP_CASES: OpCase[] = [
  { name: 'rmsNorm (x, weight)', shapes: [[2, 3, 6], [6]], tf: (x, w) => rmsNorm(x, w, 1e-5), ref: (x, w) => rmsNorm64(x, w, 6, 1e-5) },
  // q/k norm: RMSNorm over each head of [B, T, heads, d].
  { name: 'q/k RMSNorm per head', shapes: [[1, 3, 2, 4], [4]], tf: (x, w) => rmsNorm(x, w, 1e-6), ref: (x, w) => rmsNorm64(x, w, 4, 1e-6) },
  {
    name: 'RoPE (llama3 scaling, from position 3)',
    shapes: [[1, 5, 2, 8]],
    tf: (x) => {
      const { cos, sin } = ropeTables(invFreq, 3, 5);
      return rope(x, cos, sin);
    },
    ref: (x) => rope64(x, 5, 2, 8, 3, invFreq),
  },
  {
    name: 'SwiGLU (gate, up)',
    shapes: [[3, 5], [3, 5]],
    tf: (g, u) => swiglu(g, u),
    ref: (g, u) => g.map((z, i) => (z / (1 + Math.exp(-z))) * u[i]!),
  },
  {
    name: 'linear with [out, in] weights and bias',
    shapes: [[2, 3, 4], [5, 4], [5]],
    tf: (x, w, b) => linearOutIn(x, w, b),
    ref: (x, w, b) => {
      const y = new Float64Array(6 * 5);
      for (let r = 0; r < 6; r++) for (let o = 0; o < 5; o++) {
        let acc = b[o]!;
        for (let i = 0; i < 4; i++) acc += x[r * 4 + i]! * w[o * 4 + i]!;
        y[r * 5 + o] = acc;
      }
      return y;
    },
  },
  {
    name: 'grouped-query attention (4 query heads, 2 key/value heads)',
    shapes: [[1, 5, 4 * 3], [1, 5, 2 * 3], [1, 5, 2 * 3]],
    tf: (q, k, v) => PORTABLE_FORWARD_OPS.pass(4, 0, 0).selfAttention(tf.concat([q, repeatKv(k, 2, 2), repeatKv(v, 2, 2)], 2), 0),
    ref: (q, k, v) => gqa64(q, k, v, 5, 4, 2, 3),
  },
];

describe.each(['wasm', 'cpu'] as const)('llama ops on %s against float64 finite differences', (backend) => {
  it.each(OP_CASES.map((c) => [c.name, c] as const))('%s: value and gradient', async (_name, op) => {
    await useBackend(backend);
    const rng = new Random(17);
    const inputs = op.shapes.map((s) => Float32Array.from(rng.normalArray(s.reduce((a, b) => a * b, 1), 1)));
    const tensors = inputs.map((x, i) => tf.tensor(x, op.shapes[i]!));
    const out = op.tf(...tensors);
    const probe = Float64Array.from(rng.normalArray(out.size, 1));
    const probeT = tf.tensor(Float32Array.from(probe), out.shape);
    // Value: float32 against float64.
    const ref = op.ref(...inputs.map((x) => Float64Array.from(x)));
    const got = out.dataSync();
    for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!), `${op.name} value ${i}`).toBeLessThan(1e-5 * (1 + Math.abs(ref[i]!)));
    // Gradient: float32 autodiff against central differences of the float64 reference (h = 1e-6: error ~1e-10).
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(op.tf(...xs), probeT)))(tensors);
    const loss64 = (xs: F64[]) => op.ref(...xs).reduce((acc, v, i) => acc + v * probe[i]!, 0);
    const h = 1e-6;
    inputs.forEach((x, a) => {
      const g = grads[a]!.dataSync();
      for (let i = 0; i < x.length; i++) {
        const at = (delta: number) => loss64(inputs.map((y, b) => {
          const c = Float64Array.from(y);
          if (b === a) c[i]! += delta;
          return c;
        }));
        const numeric = (at(h) - at(-h)) / (2 * h);
        expect(Math.abs(g[i]! - numeric), `${op.name} ∂/∂input${a}[${i}]: ${g[i]} vs ${numeric}`).toBeLessThan(1e-4 * (1 + Math.abs(numeric)));
      }
    });
  });
});
