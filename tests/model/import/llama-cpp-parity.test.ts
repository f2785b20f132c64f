/**
 * Our BERT encoder against llama.cpp (node-llama-cpp 3.21.1, its prebuilt CPU binary), an
 * independent implementation: a tiny random-weight BERT written as a Hugging Face folder and as a
 * GGUF file from the same numbers; our embedding of each must match llama.cpp's embedding mode.
 *
 * Error measure: ‖ours − llama.cpp‖ / ‖llama.cpp‖ over the pooled vector (ours before its L2
 * normalisation; llama.cpp does not normalise). Bounds:
 *   F32   1e-3  — measured 2.1-2.7e-4, nearly all of it llama.cpp's GELU: ggml_gelu is the tanh
 *                 approximation read from an F16 table, ours the exact erf GELU that BERT's config
 *                 declares (with llama.cpp's GELU emulated the difference is ~1.6e-6).
 *   F16   2e-3  — the same weights on both sides; llama.cpp's F16 dot products also round the
 *                 activations to F16 (2^-11 relative each): ~2-4e-4 measured.
 *   BF16  1e-2  — likewise with activations rounded to BF16 (2^-8 each, 8x F16's): ~1-2e-3.
 *   Q8_0  2.5e-2 — both dequantise the same blocks; llama.cpp also quantises activations to Q8_0
 *                 (per 32 values, a step of max/127): ~5-8e-3.
 * Flash attention is off on the llama.cpp side: with it, llama.cpp casts K and V to F16 for an
 * encoder (no KV cache), an error of its own (~4e-4) that is not what is being compared.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getLlama, type Llama } from 'node-llama-cpp';
import { loadGgufEncoder, loadHfEncoder, type LoadedEncoder } from '../../../src/model/import/encoder-checkpoint.ts';
import { encoderKernels } from '../../../src/model/import/encoder-kernels.ts';
import { rounded, tinyBert, writeHfFolder, writeTinyGguf, type TinyBert } from './tiny-bert.ts';
import { tinyXlmr, writeTinyXlmrGguf } from './tiny-xlmr.ts';

const TEXTS = [
  'How many days of annual leave do I get, when I work from home?',
  'sick pay policy',
  'Can my manager approve a travel expense report per week?',
  'I typed [CLS] and [SEP] and </s> myself!',
  '中国 假期 年',
];

let dir: string;
let llama: Llama;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'teamllm-parity-'));
  llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never, progressLogs: false } as never);
});

afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function relErr(ours: Float32Array, ref: number[]): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < ref.length; i++) {
    d += (ours[i]! - ref[i]!) ** 2;
    n += ref[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

/** Our pooled vector before the L2 norm (llama.cpp's embedding mode does not normalise). */
function raw(loaded: LoadedEncoder, ids: number[]): Float32Array {
  return loaded.encoder.withPooling({ ...loaded.encoder.pooling, normalize: false }).embed([{ ids }])[0]!;
}

async function llamaEmbeddings(file: string, inputs: number[][]): Promise<{ vectors: number[][]; tokenize: (t: string) => number[] }> {
  const model = await llama.loadModel({ modelPath: file, defaultContextFlashAttention: false });
  const ctx = await model.createEmbeddingContext({ contextSize: 64, threads: 1 });
  const vectors: number[][] = [];
  for (const ids of inputs) vectors.push([...(await ctx.getEmbeddingFor(ids as never)).vector]);
  const tokens = TEXTS.map((t) => [...model.tokenize(t)].map(Number));
  await ctx.dispose();
  await model.dispose();
  return { vectors, tokenize: (t) => tokens[TEXTS.indexOf(t)]! };
}

const CASES: { dtype: 'F32' | 'F16' | 'BF16' | 'Q8_0'; bound: number }[] = [
  { dtype: 'F32', bound: 1e-3 },
  { dtype: 'F16', bound: 2e-3 },
  { dtype: 'BF16', bound: 1e-2 },
  { dtype: 'Q8_0', bound: 2.5e-2 },
];

describe('BERT embeddings against llama.cpp', () => {
  for (const pooling of ['cls', 'mean'] as const) {
    for (const { dtype, bound } of CASES) {
      it(`${dtype} weights, ${pooling} pooling: within ${bound} relative`, async () => {
        const base = tinyBert({ pooling, seed: pooling === 'cls' ? 11 : 12 });
        // F16/BF16: the numbers both files hold (1-D tensors too: the converter upcasts what it read).
        const model: TinyBert = dtype === 'F16' || dtype === 'BF16' ? rounded(base, dtype) : base;
        const gguf = path.join(dir, `${pooling}-${dtype}.gguf`);
        writeTinyGguf(gguf, model, dtype);
        const fromGguf = loadGgufEncoder(gguf);
        expect(fromGguf.description.dtype).toBe(dtype === 'F32' ? 'F32' : `F32+${dtype}`.split('+').sort().join('+'));
        const inputs = TEXTS.map((t) => fromGguf.tokenizer.encode(t).ids);
        const ref = await llamaEmbeddings(gguf, inputs);

        // The tokenizer rebuilt from the GGUF vocabulary splits text as llama.cpp's does.
        for (const t of TEXTS) expect(fromGguf.tokenizer.tokenize(t), t).toEqual(ref.tokenize(t));

        const errors = inputs.map((ids, i) => relErr(raw(fromGguf, ids), ref.vectors[i]!));
        expect(Math.max(...errors)).toBeLessThan(bound);

        if (dtype !== 'Q8_0') {
          // The Hugging Face folder with the same numbers gives the same vectors as the GGUF.
          const hfDir = path.join(dir, `hf-${pooling}-${dtype}`);
          writeHfFolder(hfDir, model, dtype);
          const fromHf = loadHfEncoder(hfDir);
          expect(fromHf.description.dtype).toBe(dtype);
          for (const [i, ids] of inputs.entries()) {
            expect(fromHf.tokenizer.encode(TEXTS[i]!).ids).toEqual(ids);
            expect(relErr(raw(fromHf, ids), ref.vectors[i]!)).toBeLessThan(bound);
            expect(relErr(raw(fromHf, ids), [...raw(fromGguf, ids)])).toBeLessThan(1e-5);
          }
        }
        console.log(`llama.cpp parity ${dtype} ${pooling}: max relative error ${Math.max(...errors).toExponential(2)} (bound ${bound})`);
      });
    }
  }
});

describe('the encoder forward', () => {
  it('gives the same vectors on the JavaScript kernels as on the native ones, batched with padding or one by one', () => {
    const dirHf = path.join(dir, 'hf-js');
    writeHfFolder(dirHf, tinyBert({ pooling: 'mean', seed: 5 }));
    const loaded = loadHfEncoder(dirHf);
    const js = loaded.encoder.withPooling(loaded.encoder.pooling, encoderKernels('js'));
    expect(loaded.encoder.kernels.name).toBe('native');
    const inputs = TEXTS.map((t) => loaded.tokenizer.encode(t));
    const one = inputs.map((x) => js.embed([x])[0]!);
    const batched = loaded.encoder.embed(inputs);
    for (let i = 0; i < inputs.length; i++) {
      expect(relErr(batched[i]!, [...one[i]!])).toBeLessThan(1e-5);
      let norm = 0;
      for (const v of batched[i]!) norm += v * v;
      expect(Math.sqrt(norm)).toBeCloseTo(1, 5);
    }
  });
});

/**
 * XLM-R (multilingual-e5, bge-m3) as llama.cpp's converter writes it: architecture "bert", a
 * SentencePiece Unigram vocabulary (tokenizer model "t5") with scores and a precompiled charsmap,
 * and the position table cut by padding_idx + 1 rows (tests/model/import/tiny-xlmr.ts). Same
 * error measure and bounds as BERT above (the same graph runs on both sides).
 */
const XLMR_TEXTS = [
  'How many days of annual leave do I get, when I work from home?',
  'sick pay policy',
  'Can my manager approve a travel expense report per week?',
  '中国 假期 年的',
  'ＨＯＷ many\u3000days ﬁne',
  'tab\tand\nnewline',
];
/** Runs of spaces: SentencePiece (llama.cpp) folds them into one "▁"; the folder's tokenizer.json keeps a "▁" piece for each extra space. */
const XLMR_SPACED = ['  leading   and inner  spaces ', 'I  get  leave  '];
/** Typed special tokens stay text on our side (they never become control tokens). */
const XLMR_TYPED = ['I typed <s> and </s> and <mask> myself!'];

async function llamaXlmr(file: string, inputs: number[][], texts: string[]): Promise<{ vectors: number[][]; tokens: number[][] }> {
  const model = await llama.loadModel({ modelPath: file, defaultContextFlashAttention: false });
  const ctx = await model.createEmbeddingContext({ contextSize: 64, threads: 1 });
  const vectors: number[][] = [];
  for (const ids of inputs) vectors.push([...(await ctx.getEmbeddingFor(ids as never)).vector]);
  const tokens = texts.map((t) => [...model.tokenize(t)].map(Number));
  await ctx.dispose();
  await model.dispose();
  return { vectors, tokens };
}

describe('XLM-RoBERTa embeddings from GGUF against llama.cpp', () => {
  for (const pooling of ['mean', 'cls'] as const) {
    for (const { dtype, bound } of CASES) {
      it(`${dtype} weights, ${pooling} pooling: within ${bound} relative; the same vectors and tokens as the Hugging Face folder`, async () => {
        const base = tinyXlmr({ pooling, seed: pooling === 'mean' ? 21 : 22 });
        const model: TinyBert = dtype === 'F16' || dtype === 'BF16' ? rounded(base, dtype) : base;
        const gguf = path.join(dir, `xlmr-${pooling}-${dtype}.gguf`);
        writeTinyXlmrGguf(gguf, model, dtype);
        const fromGguf = loadGgufEncoder(gguf);
        expect(fromGguf.description.config).toMatchObject({ architecture: 'XLMRobertaModel', maxPositions: 64, positionOffset: 0, typeVocabSize: 1 });
        expect(fromGguf.encoder.maxTokens).toBe(64);
        const inputs = XLMR_TEXTS.map((t) => fromGguf.tokenizer.encode(t).ids);
        const all = [...XLMR_TEXTS, ...XLMR_SPACED, ...XLMR_TYPED];
        const ref = await llamaXlmr(gguf, inputs, all);

        // Tokens: llama.cpp's UGM tokenizer, with the charsmap applied, splits as the rebuilt tokenizer.
        const ours = all.map((t) => fromGguf.tokenizer.tokenize(t));
        for (const [i, t] of XLMR_TEXTS.entries()) expect(ours[i], t).toEqual(ref.tokens[i]);
        const space = fromGguf.tokenizer.idOf('\u2581')!;
        for (const [j, t] of XLMR_SPACED.entries()) {
          const i = XLMR_TEXTS.length + j;
          expect(ours[i], t).not.toEqual(ref.tokens[i]);
          expect(ours[i]!.filter((id) => id !== space), t).toEqual(ref.tokens[i]!.filter((id) => id !== space));
        }
        expect(inputs[0]![0]).toBe(fromGguf.tokenizer.idOf('<s>'));
        expect(inputs[0]!.at(-1)).toBe(fromGguf.tokenizer.idOf('</s>'));

        const errors = inputs.map((ids, i) => relErr(raw(fromGguf, ids), ref.vectors[i]!));
        expect(Math.max(...errors)).toBeLessThan(bound);

        if (dtype !== 'Q8_0') {
          // The Hugging Face folder of the same numbers: the same tokens, the same vectors (bit for bit).
          const hfDir = path.join(dir, `hf-xlmr-${pooling}-${dtype}`);
          writeHfFolder(hfDir, model, dtype);
          const fromHf = loadHfEncoder(hfDir);
          expect(fromHf.description.config).toMatchObject({ architecture: 'XLMRobertaModel', maxPositions: 66, positionOffset: 2 });
          expect(fromHf.encoder.maxTokens).toBe(fromGguf.encoder.maxTokens);
          for (const t of all) expect(fromHf.tokenizer.encode(t).ids, t).toEqual(fromGguf.tokenizer.encode(t).ids);
          for (const ids of inputs) expect([...fromHf.encoder.embed([{ ids }])[0]!]).toEqual([...fromGguf.encoder.embed([{ ids }])[0]!]);
        }
        console.log(`llama.cpp parity XLM-R ${dtype} ${pooling}: max relative error ${Math.max(...errors).toExponential(2)} (bound ${bound})`);
      });
    }
  }
});
