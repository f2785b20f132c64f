/**
 * Micro-benchmarks of the native backend, side by side with the other backends in one process
 * (the machine may be shared: compare ratios from one run, not absolute numbers across runs).
 *
 *   npm run bench -- native [matmul] [train] [generate] [converge]
 *   (or node --import tsx bench/native.ts ...)
 *     [--steps N] [--tokens N] [--iters N] [--backends wasm,native,native-fused] [--profile]
 *
 * - train: the nanoGPT baby-GPT training step (forward, backward, grad norm, AdamW) on random
 *   tokens; `native` runs the portable op set (src/model/portable-forward-ops.ts) on the native
 *   kernels (GPT.fusedOnNative = false), `native-fused` runs the same model on the native op set
 *   (src/model/native/forward-ops.ts, i.e. what the wiring gives).
 * - generate: tokens/s of the ~10M model (gpt-10m shape, 65-token vocabulary) with the KV cache.
 * - matmul: GFLOP/s of the baby GPT's products, and the machine's sgemm peak.
 * - converge: the whole nanoGPT run (2000 iterations) and its final validation loss.
 * Ends with one key=value line. It lives under bench/ (not src/model/) because it drives the
 * training pieces (AdamW, dataset, schedule), which the model layer must not import.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { GPT, type KVCache } from '../src/model/gpt.ts';
import type { GPTConfig } from '../src/model/config.ts';
import { AdamW, globalNorm } from '../src/training/adamw.ts';
import { initBackend } from '../src/model/backend.ts';
import { loadNativeBackend, measureSgemmPeak, nativeInfo } from '../src/model/native/index.ts';
import { formatProfile, profiler } from '../src/model/native/profile.ts';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { TokenDataset } from '../src/training/dataset.ts';
import { learningRateAt } from '../src/training/schedule.ts';
import { CharTokenizer } from '../src/model/tokenizer/char.ts';
import { mixSeed } from '../src/model/random.ts';

export const BABY_GPT: GPTConfig = { vocabSize: 65, blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: false };
export const GPT_10M: GPTConfig = { vocabSize: 65, blockSize: 256, nLayer: 6, nHead: 6, nEmbd: 384, dropout: 0, bias: false };

export type BenchMode = 'wasm' | 'cpu' | 'native' | 'native-fused';

function backendOf(mode: BenchMode): string {
  return mode.startsWith('native') ? 'native' : mode;
}

async function activate(mode: BenchMode): Promise<void> {
  const name = backendOf(mode);
  if (name !== 'native') {
    // The model layer's own initialisation (it adds the kernels wasm lacks for training).
    await initBackend(name as 'wasm' | 'cpu');
    return;
  }
  const r = await loadNativeBackend();
  if (!r.ok) throw new Error(r.reason);
  await tf.setBackend(name);
  await tf.ready();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function randomTokens(n: number, vocab: number, seed: number): Int32Array {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

export interface TrainStepResult {
  mode: BenchMode;
  msMedian: number;
  msMean: number;
  /** Median process CPU time (user + system, all threads) per step: robust to a busy machine. */
  cpuMsMedian: number;
  loss: number;
  profile?: string;
}

/** Median ms of full training steps (forward, backward, clip norm, AdamW) of `config`. */
export async function benchTrainStep(mode: BenchMode, steps: number, options: { config?: GPTConfig; batch?: number; warmup?: number; profile?: boolean } = {}): Promise<TrainStepResult> {
  await activate(mode);
  const config = options.config ?? BABY_GPT;
  const B = options.batch ?? 12;
  const T = config.blockSize;
  const model = GPT.create(config, 1337);
  const names = model.paramNames;
  const decays = new Set(model.specs.filter((s) => s.decay).map((s) => s.name));
  const opt = new AdamW({ beta1: 0.9, beta2: 0.99, weightDecay: 0.1 }, (n) => decays.has(n));
  let batch: { x: tf.Tensor; y: tf.Tensor } | undefined;
  model.fusedOnNative = mode === 'native-fused';
  const lossAndGrads = tf.valueAndGrads((...ps: tf.Tensor[]) => model.loss(batch!.x, batch!.y, { training: true }, ps));
  const times: number[] = [];
  const cpuTimes: number[] = [];
  let loss = NaN;
  const warmup = options.warmup ?? 3;
  for (let step = 0; step < warmup + steps; step++) {
    if (options.profile && step === warmup) profiler.start();
    const tokens = randomTokens(B * (T + 1), config.vocabSize, step + 1);
    const x = new Int32Array(B * T);
    const y = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      x.set(tokens.subarray(b * (T + 1), b * (T + 1) + T), b * T);
      y.set(tokens.subarray(b * (T + 1) + 1, b * (T + 1) + T + 1), b * T);
    }
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    batch = { x: tf.tensor2d(x, [B, T], 'int32'), y: tf.tensor2d(y, [B, T], 'int32') };
    const res = tf.tidy(() => lossAndGrads(model.paramList()));
    batch.x.dispose();
    batch.y.dispose();
    loss = res.value.dataSync()[0]!;
    res.value.dispose();
    const norm = globalNorm(res.grads);
    const scale = norm > 1 ? 1 / (norm + 1e-6) : 1;
    model.setParams(opt.apply(model.params, new Map(names.map((n, i) => [n, res.grads[i]!])), 1e-3, scale));
    res.grads.forEach((g) => g.dispose());
    if (step >= warmup) {
      times.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpuTimes.push((c.user + c.system) / 1000);
    }
  }
  const result: TrainStepResult = { mode, msMedian: median(times), msMean: times.reduce((a, b) => a + b, 0) / times.length, cpuMsMedian: median(cpuTimes), loss };
  if (options.profile) result.profile = formatProfile(profiler.stop(), steps);
  opt.dispose();
  model.dispose();
  return result;
}

/** Tokens/s generating `tokens` tokens one at a time with the KV cache (greedy, no sampling cost). */
export async function benchGenerate(
  mode: BenchMode,
  tokens: number,
  config: GPTConfig = GPT_10M,
  profile = false,
): Promise<{ mode: BenchMode; tokensPerSec: number; firstTokenMs: number; profile?: string }> {
  await activate(mode);
  const model = GPT.create(config, 7);
  model.fusedOnNative = mode === 'native-fused';
  const step = (ids: number[], cache: KVCache) => {
    const idx = tf.tensor2d(Int32Array.from(ids), [1, ids.length], 'int32');
    const logits = model.forwardCached(idx, cache);
    idx.dispose();
    const v = logits.dataSync();
    logits.dispose();
    let best = 0;
    for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
    return best;
  };
  const run = (n: number) => {
    const cache = model.emptyCache();
    const t0 = performance.now();
    let next = step([1, 2, 3, 4, 5, 6, 7, 8], cache);
    const first = performance.now() - t0;
    for (let i = 1; i < n; i++) next = step([next], cache);
    const total = performance.now() - t0;
    GPT.disposeCache(cache);
    return { first, total };
  };
  run(8); // warm up
  if (profile) profiler.start();
  const { first, total } = run(tokens);
  const table = profile ? formatProfile(profiler.stop(), tokens) : undefined;
  model.dispose();
  return { mode, tokensPerSec: (tokens * 1000) / total, firstTokenMs: first, ...(table ? { profile: table } : {}) };
}

/**
 * The full nanoGPT baby-GPT run (the `nanogpt-cpu` preset's hyper-parameters, tinyshakespeare,
 * characters as tokens, same batches and seeds as src/training/pretrain.ts), for checking that
 * the native path still reaches the reference validation loss. Returns the final val loss (over
 * `evalIters` fixed batches) and the median ms per iteration.
 */
export async function trainNanoGpt(
  mode: BenchMode,
  iters: number,
  options: { data?: string; evalIters?: number; log?: (line: string) => void } = {},
): Promise<{ valLoss: number; msMedian: number; iters: number }> {
  await activate(mode);
  const data = options.data ?? ['../shared/data/tinyshakespeare.txt', '/work/shared/data/tinyshakespeare.txt'].find((p) => existsSync(p));
  if (!data) throw new Error('tinyshakespeare.txt not found');
  const text = await readFile(data, 'utf8');
  const tokenizer = CharTokenizer.fromText(text);
  const dataset = TokenDataset.fromTokens(tokenizer.encode(text), 0.9);
  const seed = 1337;
  const config: GPTConfig = { ...BABY_GPT, vocabSize: tokenizer.vocabSize };
  const model = GPT.create(config, seed);
  const names = model.paramNames;
  const decays = new Set(model.specs.filter((s) => s.decay).map((s) => s.name));
  const opt = new AdamW({ beta1: 0.9, beta2: 0.99, weightDecay: 0.1 }, (n) => decays.has(n));
  const schedule = { learningRate: 1e-3, minLearningRate: 1e-4, warmupIters: Math.min(100, Math.floor(iters / 10)), decayIters: iters };
  model.fusedOnNative = mode === 'native-fused';
  const lossOf = (x: tf.Tensor, y: tf.Tensor, ps?: tf.Tensor[]) => model.loss(x, y, {}, ps);
  let batch: { x: tf.Tensor; y: tf.Tensor } | undefined;
  const lossAndGrads = tf.valueAndGrads((...ps: tf.Tensor[]) => lossOf(batch!.x, batch!.y, ps));
  const times: number[] = [];
  for (let step = 0; step < iters; step++) {
    const t0 = performance.now();
    batch = dataset.batch('train', 12, config.blockSize, seed, step, 0);
    const res = tf.tidy(() => lossAndGrads(model.paramList()));
    batch.x.dispose();
    batch.y.dispose();
    const loss = res.value.dataSync()[0]!;
    res.value.dispose();
    const norm = globalNorm(res.grads);
    const scale = norm > 1 ? 1 / (norm + 1e-6) : 1;
    model.setParams(opt.apply(model.params, new Map(names.map((n, i) => [n, res.grads[i]!])), learningRateAt(step, schedule), scale));
    res.grads.forEach((g) => g.dispose());
    times.push(performance.now() - t0);
    if (!Number.isFinite(loss)) throw new Error(`diverged at step ${step}`);
    if ((step + 1) % 250 === 0) options.log?.(`step ${step + 1}: loss ${loss.toFixed(4)}, ${median(times.slice(-250)).toFixed(1)} ms/iter`);
  }
  let total = 0;
  const evalIters = options.evalIters ?? 200;
  for (let i = 0; i < evalIters; i++) {
    const v = tf.tidy(() => {
      const { x, y } = dataset.batch('val', 12, config.blockSize, mixSeed(seed, 777), i);
      return lossOf(x, y);
    });
    total += v.dataSync()[0]!;
    v.dispose();
  }
  opt.dispose();
  model.dispose();
  return { valLoss: total / evalIters, msMedian: median(times), iters };
}

/** GFLOP/s of the baby GPT's matrix products on the active backend. */
export async function benchMatmul(mode: BenchMode, repeats = 20): Promise<{ shape: string; gflops: number }[]> {
  await activate(mode);
  const shapes: [number, number, number, boolean, boolean, number][] = [
    [768, 128, 384, false, false, 1],
    [768, 128, 512, false, false, 1],
    [768, 512, 128, false, false, 1],
    [768, 512, 128, false, true, 1], // dx = dy · Wᵀ
    [128, 768, 512, true, false, 1], // dW = xᵀ · dy
    [64, 32, 64, false, false, 48], // attention scores, 48 heads
  ];
  const out: { shape: string; gflops: number }[] = [];
  for (const [m, k, n, ta, tb, batch] of shapes) {
    const a = tf.randomNormal(batch > 1 ? [batch, ta ? k : m, ta ? m : k] : [ta ? k : m, ta ? m : k]);
    const b = tf.randomNormal(batch > 1 ? [batch, tb ? n : k, tb ? k : n] : [tb ? n : k, tb ? k : n]);
    tf.matMul(a, b, ta, tb).dispose();
    const t0 = performance.now();
    // The cpu-style backends compute synchronously, inside matMul; wasm likewise. Reading the
    // result every time would add a copy (and, on native, keep the buffer out of the pool).
    for (let r = 0; r < repeats; r++) tf.matMul(a, b, ta, tb).dispose();
    const s = (performance.now() - t0) / 1000;
    out.push({ shape: `${batch > 1 ? `${batch}x` : ''}${m}x${k}x${n}${ta ? ' tA' : ''}${tb ? ' tB' : ''}`, gflops: (2 * m * n * k * batch * repeats) / s / 1e9 });
    a.dispose();
    b.dispose();
  }
  return out;
}

/** Command-line entry (also the `run(argv)` that bench/index.ts expects of a benchmark). */
export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      steps: { type: 'string', default: '20' },
      tokens: { type: 'string', default: '100' },
      iters: { type: 'string', default: '2000' },
      backends: { type: 'string', default: 'wasm,native,native-fused' },
      profile: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  const what = positionals.length ? positionals : ['matmul', 'train', 'generate'];
  const modes = values.backends!.split(',') as BenchMode[];
  const figures: string[] = [];
  const info = nativeInfo();
  process.stderr.write(`native addon: ${info ? `${info.threads} threads, ${info.blas}` : 'not available'}\n`);
  const peak = measureSgemmPeak();
  process.stderr.write(`sgemm peak (1024^3, all cores): ${peak.toFixed(1)} GFLOP/s\n`);
  figures.push(`peak_gflops=${peak.toFixed(1)}`);
  if (what.includes('matmul')) {
    for (const mode of modes.filter((m) => m !== 'native-fused')) {
      for (const r of await benchMatmul(mode)) process.stderr.write(`${mode.padEnd(13)} matmul ${r.shape.padEnd(22)} ${r.gflops.toFixed(1)} GFLOP/s\n`);
    }
  }
  if (what.includes('train')) {
    for (const mode of modes) {
      const r = await benchTrainStep(mode, Number(values.steps), { profile: values.profile });
      process.stderr.write(`${mode.padEnd(13)} train step: ${r.msMedian.toFixed(1)} ms median, ${r.msMean.toFixed(1)} ms mean, ${r.cpuMsMedian.toFixed(1)} ms CPU (loss ${r.loss.toFixed(3)})\n`);
      if (r.profile) process.stderr.write(`${r.profile}\n`);
      figures.push(`${mode}_ms_per_iter=${r.msMedian.toFixed(1)}`);
      // ~4.3 GFLOP per step for the baby GPT (6·N·tokens + attention).
      figures.push(`${mode}_peak_share=${((4.3e9 / (r.msMedian / 1000) / 1e9 / peak) * 100).toFixed(1)}%`);
    }
  }
  if (what.includes('converge')) {
    for (const mode of modes) {
      const r = await trainNanoGpt(mode, Number(values.iters), { log: (l) => process.stderr.write(`${mode} ${l}\n`) });
      process.stderr.write(`${mode.padEnd(13)} nanogpt-cpu ${r.iters} iters: val loss ${r.valLoss.toFixed(4)}, ${r.msMedian.toFixed(1)} ms/iter median\n`);
      figures.push(`${mode}_val_loss=${r.valLoss.toFixed(4)} ${mode}_train_ms_per_iter=${r.msMedian.toFixed(1)}`);
    }
  }
  if (what.includes('generate')) {
    for (const mode of modes) {
      const r = await benchGenerate(mode, Number(values.tokens), GPT_10M, values.profile);
      process.stderr.write(`${mode.padEnd(13)} generate gpt-10m: ${r.tokensPerSec.toFixed(1)} tokens/s, first token ${r.firstTokenMs.toFixed(1)} ms\n`);
      if (r.profile) process.stderr.write(`${r.profile}\n`);
      figures.push(`${mode}_gen_tokens_per_s=${r.tokensPerSec.toFixed(1)}`);
    }
  }
  console.log(figures.join(' '));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(process.argv.slice(2));
}
