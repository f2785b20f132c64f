/**
 * `npm run bench -- open-model [--shape qwen2.5-0.5b|smollm2-135m|qwen2.5-1.5b|qwen2.5-7b] [--prompt 512] [--decode 16]
 *   [--threads 2] [--only teamllm:bf16,llama.cpp:BF16,...] [--dir /tmp/...]`
 *
 * An imported chat model's speed and memory, teamllm against llama.cpp (node-llama-cpp 3.21.1,
 * its prebuilt CPU binary) side by side in one run, on random weights of a real model's exact
 * shape (speed does not depend on the values): prefill tokens/s over a --prompt-token prompt (one
 * batched pass), decode tokens/s (one token at a time through the KV cache, --decode tokens), and
 * the peak RSS of the process. Each engine x precision runs in a process of its own (so that its
 * peak RSS is its own), with --threads threads: teamllm f32 (OpenBLAS), bf16, int8 (per channel);
 * llama.cpp F16, BF16, Q8_0 from GGUF files written with our GGUF writer (src/model/import/chat-gguf.ts)
 * into --dir (deleted afterwards). llama.cpp runs with its defaults otherwise (mmap, F16 KV cache).
 * The last line on stdout is the key=value summary.
 */
import { runBenchChild } from './_bench-child.ts';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { GgmlTypeName } from '../src/model/import/gguf.ts';
import { LlamaModel, argmax, type LlamaWeight } from '../src/model/import/llama.ts';
import { encodeChatGguf, type GgufVocabulary } from '../src/model/import/chat-gguf.ts';
import { expectedLlamaTensors, llamaConfigFromHf, type LlamaConfig } from '../src/model/import/llama-config.ts';
import type { WeightMatrix } from '../src/model/import/weights.ts';

/** config.json of each shape (the fields that matter; Hugging Face's values). */
export const SHAPES: Record<string, Record<string, unknown>> = {
  'qwen2.5-0.5b': {
    architectures: ['Qwen2ForCausalLM'],
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    vocab_size: 151936,
    max_position_embeddings: 32768,
    rope_theta: 1000000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    hidden_act: 'silu',
  },
  // The two bigger sizes a company would try next (for the memory and speed table of docs/open-chat-models.md).
  'qwen2.5-1.5b': {
    architectures: ['Qwen2ForCausalLM'],
    hidden_size: 1536,
    intermediate_size: 8960,
    num_hidden_layers: 28,
    num_attention_heads: 12,
    num_key_value_heads: 2,
    vocab_size: 151936,
    max_position_embeddings: 32768,
    rope_theta: 1000000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    hidden_act: 'silu',
  },
  'qwen2.5-7b': {
    architectures: ['Qwen2ForCausalLM'],
    hidden_size: 3584,
    intermediate_size: 18944,
    num_hidden_layers: 28,
    num_attention_heads: 28,
    num_key_value_heads: 4,
    vocab_size: 152064,
    max_position_embeddings: 32768,
    rope_theta: 1000000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    hidden_act: 'silu',
  },
  'smollm2-135m': {
    architectures: ['LlamaForCausalLM'],
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    vocab_size: 49152,
    max_position_embeddings: 8192,
    rope_theta: 100000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: true,
    hidden_act: 'silu',
  },
};

const CONFIGS = ['teamllm:f32', 'teamllm:bf16', 'teamllm:int8', 'llama.cpp:F16', 'llama.cpp:BF16', 'llama.cpp:Q8_0'];

interface Result {
  prefillTokS: number;
  decodeTokS: number;
  peakRssMiB: number;
  weightMiB: number;
}

/** Uniform draws in [-1, 1) (xorshift), fast enough for half a billion weights. */
function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2147483648 - 1;
  };
}

/** Random weights of the shape directly in the dtype asked for (no float32 copy for bf16/int8). */
export function randomWeights(config: LlamaConfig, dtype: 'f32' | 'bf16' | 'int8'): Map<string, LlamaWeight> {
  const next = uniform(7);
  const out = new Map<string, LlamaWeight>();
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (const [name, shape] of expectedLlamaTensors(config)) {
    if (shape.length === 1) {
      out.set(name, Float32Array.from({ length: shape[0]! }, () => (name.endsWith('bias') ? 0.1 * next() : 1 + 0.1 * next())));
      continue;
    }
    const [rows, cols] = shape as [number, number];
    const a = name.includes('embed_tokens') ? 0.05 : Math.sqrt(3 / cols);
    const size = rows * cols;
    if (dtype === 'f32') {
      const data = new Float32Array(size);
      for (let i = 0; i < size; i++) data[i] = a * next();
      out.set(name, data);
    } else if (dtype === 'bf16') {
      const data = new Uint16Array(size);
      for (let i = 0; i < size; i++) {
        f[0] = a * next();
        data[i] = (u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16;
      }
      out.set(name, { dtype: 'bf16', rows, cols, data } satisfies WeightMatrix);
    } else {
      const data = new Int8Array(size);
      for (let i = 0; i < size; i++) data[i] = Math.round(127 * next());
      out.set(name, { dtype: 'int8', rows, cols, data, scales: new Float32Array(rows).fill(a / 127), group: cols } satisfies WeightMatrix);
    }
  }
  return out;
}

function promptIds(config: LlamaConfig, n: number): number[] {
  const next = uniform(11);
  return Array.from({ length: n }, () => Math.floor(((next() + 1) / 2) * (config.vocabSize - 1)));
}

function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

async function runTeamllm(config: LlamaConfig, dtype: 'f32' | 'bf16' | 'int8', promptLen: number, decode: number): Promise<Result> {
  const model = new LlamaModel(config, randomWeights(config, dtype));
  const prompt = promptIds(config, promptLen);
  model.forward(prompt.slice(0, 8), undefined, { lastOnly: true }); // warm-up (threads, first-touch of pages)
  const cache = model.newCache(promptLen + decode + 1);
  let t = performance.now();
  let logits = model.forward(prompt, cache, { lastOnly: true });
  const prefillS = (performance.now() - t) / 1000;
  t = performance.now();
  for (let i = 0; i < decode; i++) logits = model.forward([argmax(logits)], cache, { lastOnly: true });
  const decodeS = (performance.now() - t) / 1000;
  process.stderr.write(`  kernels: ${JSON.stringify(model.kernels.weightKernels())}\n`);
  return { prefillTokS: promptLen / prefillS, decodeTokS: decode / decodeS, peakRssMiB: peakRssMiB(), weightMiB: model.weightBytes() / 2 ** 20 };
}

async function runLlamaCpp(file: string, config: LlamaConfig, promptLen: number, decode: number, threads: number): Promise<Result> {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never, progressLogs: false } as never);
  const model = await llama.loadModel({ modelPath: file });
  const ctx = await model.createContext({ contextSize: promptLen + decode + 16, batchSize: promptLen, threads } as never);
  const seq = ctx.getSequence();
  const prompt = promptIds(config, promptLen);
  // Warm-up on another sequence's worth of tokens, then clear.
  await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 8) as never);
  await seq.clearHistory();
  let t = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt as never);
  const prefillS = (performance.now() - t) / 1000;
  let token = prompt[prompt.length - 1]!;
  t = performance.now();
  for (let i = 0; i < decode; i++) {
    const [step] = await seq.controlledEvaluate([[token, { generateNext: { token: true, options: { temperature: 0 } } }] as never]);
    token = Number((step as { next: { token: number } }).next.token);
  }
  const decodeS = (performance.now() - t) / 1000;
  const result = { prefillTokS: promptLen / prefillS, decodeTokS: decode / decodeS, peakRssMiB: peakRssMiB(), weightMiB: statSync(file).size / 2 ** 20 };
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
  return result;
}

/** A GGUF file of the shape (qwen2 or llama arch, random weights, a filler vocabulary of the right size), written by src's chat GGUF writer. */
function writeGguf(file: string, shapeName: string, config: LlamaConfig, dtype: GgmlTypeName): void {
  const tokens = Array.from({ length: config.vocabSize }, (_, i) => (i === 0 ? 'p' : i === 1 ? 'a' : i === 2 ? 'pa' : `t${i}`));
  const vocabulary: GgufVocabulary = {
    tokens,
    types: tokens.map(() => 1),
    merges: ['p a'],
    pre: config.architecture === 'Qwen2ForCausalLM' ? 'qwen2' : 'llama-bpe',
    eosId: config.vocabSize - 1,
    bosId: config.vocabSize - 2,
    addBos: false,
  };
  const next = uniform(7);
  const weights = new Map<string, Float32Array>();
  for (const [hf, shape] of expectedLlamaTensors(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const a = hf.includes('embed_tokens') ? 0.05 : shape.length === 2 ? Math.sqrt(3 / shape[1]!) : 0.1;
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = shape.length === 1 && !hf.endsWith('bias') ? 1 + a * next() : a * next();
    weights.set(hf, data);
  }
  writeFileSync(file, encodeChatGguf({ config, weights, vocabulary, name: `random-${shapeName}` }, dtype));
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      shape: { type: 'string', default: 'qwen2.5-0.5b' },
      prompt: { type: 'string', default: '512' },
      decode: { type: 'string', default: '16' },
      threads: { type: 'string', default: '2' },
      only: { type: 'string' },
      dir: { type: 'string' },
      child: { type: 'string' },
      file: { type: 'string' },
    },
    allowPositionals: true,
  });
  const shapeName = values.shape!;
  const hf = SHAPES[shapeName];
  if (!hf) throw new Error(`--shape: one of ${Object.keys(SHAPES).join(', ')}`);
  const config = llamaConfigFromHf(hf);
  const promptLen = Number(values.prompt);
  const decode = Number(values.decode);
  const threads = Number(values.threads);

  if (values.child) {
    // One measurement in this process: print it as JSON.
    const [engine, dtype] = values.child.split(':') as [string, string];
    const r =
      engine === 'teamllm'
        ? await runTeamllm(config, dtype as 'f32' | 'bf16' | 'int8', promptLen, decode)
        : engine === 'gguf'
          ? (writeGguf(values.file!, shapeName, config, dtype as GgmlTypeName), { prefillTokS: 0, decodeTokS: 0, peakRssMiB: peakRssMiB(), weightMiB: statSync(values.file!).size / 2 ** 20 })
          : await runLlamaCpp(values.file!, config, promptLen, decode, threads);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }

  const configs = values.only ? values.only.split(',') : CONFIGS;
  const dir = values.dir ?? mkdtempSync(path.join(tmpdir(), 'teamllm-open-model-'));
  const params = [...expectedLlamaTensors(config).values()].reduce((s, shape) => s + shape.reduce((a, b) => a * b, 1), 0);
  process.stderr.write(`open-model: ${shapeName} shape (${(params / 1e6).toFixed(0)}M parameters), prompt ${promptLen}, decode ${decode}, ${threads} threads, load ${(await import('node:os')).loadavg()[0]!.toFixed(2)}\n`);
  const child = (spec: string, file?: string): Result =>
    runBenchChild<Result>('open-model', ['--shape', shapeName, '--prompt', String(promptLen), '--decode', String(decode), '--threads', String(threads), ...(file ? ['--file', file] : [])], spec, threads);
  const figures: string[] = [];
  const rows: string[] = [];
  try {
    for (const spec of configs) {
      const [engine, dtype] = spec.split(':') as [string, string];
      let file: string | undefined;
      if (engine === 'llama.cpp') {
        file = path.join(dir, `${shapeName}-${dtype}.gguf`);
        const t = performance.now();
        child(`gguf:${dtype}`, file);
        process.stderr.write(`  wrote ${path.basename(file)} (${(statSync(file).size / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
      }
      const r = child(spec, file);
      if (file) rmSync(file, { force: true });
      const key = `${engine === 'teamllm' ? 'teamllm' : 'llamacpp'}_${dtype.toLowerCase()}`;
      rows.push(`${spec.padEnd(16)} prefill ${r.prefillTokS.toFixed(1).padStart(7)} tok/s   decode ${r.decodeTokS.toFixed(2).padStart(6)} tok/s   peak RSS ${r.peakRssMiB.toFixed(0).padStart(5)} MiB   weights ${r.weightMiB.toFixed(0)} MiB`);
      process.stderr.write(`${rows[rows.length - 1]}\n`);
      figures.push(`${key}_prefill_tok_s=${r.prefillTokS.toFixed(1)}`, `${key}_decode_tok_s=${r.decodeTokS.toFixed(2)}`, `${key}_rss_mib=${r.peakRssMiB.toFixed(0)}`);
    }
  } finally {
    if (!values.dir) rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${rows.join('\n')}\n`);
  process.stdout.write(`shape=${shapeName} prompt=${promptLen} decode=${decode} threads=${threads} ${figures.join(' ')}\n`);
}
