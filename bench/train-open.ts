/**
 * `npm run bench -- train-open [--shape qwen2.5-0.5b] [--seq 512] [--batch 4] [--rank 16] [--steps 2]
 *   [--warmup 1] [--threads 2] [--only teamllm:bf16,teamllm:int8,torch:f32,torch:bf16] [--no-checkpoint] [--profile]`
 *
 * LoRA SFT on an imported model's exact shape with random weights (speed and memory do not
 * depend on the values): r --rank on all seven projections (q/k/v/o/gate/up/down), alpha 2r, a
 * --batch × --seq batch of random tokens, the loss on every position, AdamW on the adapter;
 * --warmup steps, then --steps timed ones. Side by side in one run, each in a process of its own
 * (its peak RSS its own), with --threads threads:
 *
 *   teamllm:bf16 / :int8   the frozen base in that dtype (the serving kernels forward, the
 *                          transposed kernel backward: AMX where the CPU has it, AVX512_BF16 /
 *                          AVX512-VNNI with TEAMLLM_NATIVE_AMX=off), LoRA fused with them,
 *                          activation recomputation per block and
 *                          the loss in chunks of rows (GPT.lossAndGrads), as `teamllm train sft`
 *                          runs an imported base
 *   torch:f32 / :bf16      the same model and LoRA in plain PyTorch (bench/train_open_torch.py:
 *                          frozen float32 base; bf16 = torch.autocast), Debian's python3-torch.
 *                          When it is not installed the bench says so and runs teamllm alone
 *                          (it never downloads anything).
 *
 * --profile prints where teamllm's time goes (per kernel, one step) to stderr. The last line on
 * stdout is the key=value summary, with teamllm_bf16 / torch_* tokens/s ratios.
 */
import { spawnSync } from 'node:child_process';
import { runBenchChild } from './_bench-child.ts';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { llamaConfigFromHf, type LlamaConfig } from '../src/model/import/llama-config.ts';
import { LlamaModel } from '../src/model/import/llama.ts';
import { trainableFromChatModel } from '../src/model/lora/imported-base.ts';
import { LoraAdapter } from '../src/model/lora/adapter.ts';
import { initBackend } from '../src/model/backend.ts';
import { AdamW } from '../src/training/adamw.ts';
import { clippedUpdate } from '../src/training/loop.ts';
import { profiler, formatProfile } from '../src/model/native/profile.ts';
import { SHAPES, randomWeights } from './open-model.ts';

const CONFIGS = ['teamllm:bf16', 'teamllm:int8', 'torch:f32', 'torch:bf16'];

interface Result {
  tokensPerSec: number;
  secPerStep: number;
  peakRssMiB: number;
  loss: number;
  /** teamllm: the base's weights in memory; torch: its version. */
  weightMiB?: number;
  torch?: string;
}

interface Settings {
  seq: number;
  batch: number;
  rank: number;
  steps: number;
  warmup: number;
  threads: number;
  checkpoint: boolean;
  profile: boolean;
}

function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** Random ids [B, T + 1] (xorshift): inputs and next-token targets. */
function tokens(config: LlamaConfig, s: Settings): { x: tf.Tensor; y: tf.Tensor } {
  let st = 12345;
  const ids = Int32Array.from({ length: s.batch * (s.seq + 1) }, () => {
    st ^= st << 13;
    st ^= st >>> 17;
    st ^= st << 5;
    return (st >>> 0) % config.vocabSize;
  });
  const x = new Int32Array(s.batch * s.seq);
  const y = new Int32Array(s.batch * s.seq);
  for (let b = 0; b < s.batch; b++)
    for (let t = 0; t < s.seq; t++) {
      x[b * s.seq + t] = ids[b * (s.seq + 1) + t]!;
      y[b * s.seq + t] = ids[b * (s.seq + 1) + t + 1]!;
    }
  return { x: tf.tensor2d(x, [s.batch, s.seq], 'int32'), y: tf.tensor2d(y, [s.batch, s.seq], 'int32') };
}

async function runTeamllm(config: LlamaConfig, dtype: 'bf16' | 'int8', s: Settings): Promise<Result> {
  await initBackend('native', { log: () => {} });
  const engine = new LlamaModel(config, randomWeights(config, dtype));
  const model = trainableFromChatModel(engine, { frozen: true });
  const adapter = LoraAdapter.create(model, { rank: s.rank, alpha: 2 * s.rank, dropout: 0, targets: 'all' });
  adapter.attach(model);
  const opt = new AdamW({ weightDecay: 0 }, () => false);
  const { x, y } = tokens(config, s);
  let loss = NaN;
  const step = () => {
    const trainable = new Map(adapter.paramNames.map((n) => [n, adapter.params.get(n)!]));
    const { value, grads } = tf.tidy(() => model.lossAndGrads(x, y, trainable, { training: true, checkpoint: s.checkpoint }));
    loss = value.dataSync()[0]!;
    value.dispose();
    const { next } = clippedUpdate(opt, adapter.params, new Map(adapter.paramNames.map((n, i) => [n, grads[i]!])), 1e-4, 1);
    adapter.setParams(next);
    grads.forEach((g) => g.dispose());
  };
  for (let i = 0; i < s.warmup; i++) step();
  if (s.profile) profiler.start();
  const t = performance.now();
  for (let i = 0; i < s.steps; i++) step();
  const sec = (performance.now() - t) / 1000 / s.steps;
  if (s.profile) process.stderr.write(`teamllm:${dtype}, where the time goes (per step):\n${formatProfile(profiler.stop(), s.steps, 14)}\n`);
  return { tokensPerSec: (s.batch * s.seq) / sec, secPerStep: sec, peakRssMiB: peakRssMiB(), loss, weightMiB: engine.weightBytes() / 2 ** 20 };
}

/**
 * A Python that imports torch: `python3` on the PATH, else Debian's own /usr/bin/python3 (where
 * apt's python3-torch lives when another Python, e.g. pyenv's, comes first on the PATH).
 */
function findTorch(): { ok: true; python: string; version: string } | { ok: false; reason: string } {
  for (const python of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (!r.error && r.status === 0) return { ok: true, python, version: r.stdout.trim() };
  }
  return { ok: false, reason: 'PyTorch is not installed: apt-get install -y --no-install-recommends python3-torch (this bench never downloads it)' };
}

function runTorch(config: LlamaConfig, dtype: 'f32' | 'bf16', s: Settings): Result {
  const torch = findTorch();
  if (!torch.ok) throw new Error(torch.reason);
  const args = [
    path.join(import.meta.dirname, 'train_open_torch.py'),
    '--hidden', String(config.hidden),
    '--intermediate', String(config.intermediate),
    '--layers', String(config.layers),
    '--heads', String(config.heads),
    '--kv-heads', String(config.kvHeads),
    '--vocab', String(config.vocabSize),
    '--tied', config.tiedEmbeddings ? '1' : '0',
    '--theta', String(config.ropeTheta),
    '--eps', String(config.rmsNormEps),
    '--seq', String(s.seq),
    '--batch', String(s.batch),
    '--rank', String(s.rank),
    '--alpha', String(2 * s.rank),
    '--steps', String(s.steps),
    '--warmup', String(s.warmup),
    '--threads', String(s.threads),
    '--dtype', dtype,
  ];
  const r = spawnSync(torch.python, args, { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(s.threads), OPENBLAS_NUM_THREADS: String(s.threads) }, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`torch:${dtype} failed (exit ${r.status}): ${r.stdout.slice(-500)}`);
  return JSON.parse(line) as Result;
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      shape: { type: 'string', default: 'qwen2.5-0.5b' },
      seq: { type: 'string', default: '512' },
      batch: { type: 'string', default: '4' },
      rank: { type: 'string', default: '16' },
      steps: { type: 'string', default: '2' },
      warmup: { type: 'string', default: '1' },
      threads: { type: 'string', default: '2' },
      only: { type: 'string' },
      'no-checkpoint': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      child: { type: 'string' },
    },
    allowPositionals: true,
  });
  const shapeName = values.shape!;
  const hf = SHAPES[shapeName];
  if (!hf) throw new Error(`--shape: one of ${Object.keys(SHAPES).join(', ')}`);
  const s: Settings = {
    seq: Number(values.seq),
    batch: Number(values.batch),
    rank: Number(values.rank),
    steps: Number(values.steps),
    warmup: Number(values.warmup),
    threads: Number(values.threads),
    checkpoint: !values['no-checkpoint'],
    profile: values.profile!,
  };
  const config = llamaConfigFromHf({ ...hf, max_position_embeddings: Math.max(s.seq, Number(hf.max_position_embeddings ?? 0)) });

  if (values.child) {
    const [engine, dtype] = values.child.split(':') as [string, string];
    const r = engine === 'teamllm' ? await runTeamllm(config, dtype as 'bf16' | 'int8', s) : runTorch(config, dtype as 'f32' | 'bf16', s);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }

  const torch = findTorch();
  if (!torch.ok) process.stderr.write(`train-open: ${torch.reason}; the torch rows are skipped.\n`);
  const configs = (values.only ? values.only.split(',') : CONFIGS).filter((c) => torch.ok || !c.startsWith('torch:'));
  process.stderr.write(
    `train-open: ${shapeName} shape, LoRA r=${s.rank} on q,k,v,o,gate,up,down, batch ${s.batch} × seq ${s.seq}, ${s.warmup} warm-up + ${s.steps} timed steps, ${s.threads} threads` +
      `${torch.ok ? `, torch ${torch.version}` : ''}, load ${os.loadavg()[0]!.toFixed(2)}\n`,
  );
  const child = (spec: string): Result => runBenchChild<Result>('train-open', argv.filter((a) => a !== '--only'), spec, s.threads);
  const figures: string[] = [];
  const rows: string[] = [];
  const results = new Map<string, Result>();
  for (const spec of configs) {
    const r = child(spec);
    results.set(spec, r);
    const key = spec.replace(':', '_').replace('.', '');
    rows.push(
      `${spec.padEnd(14)} ${r.tokensPerSec.toFixed(1).padStart(7)} tokens/s   ${r.secPerStep.toFixed(2).padStart(7)} s/step   peak RSS ${r.peakRssMiB.toFixed(0).padStart(6)} MiB   loss ${r.loss.toFixed(3)}` +
        (r.weightMiB !== undefined ? `   base weights ${r.weightMiB.toFixed(0)} MiB` : ''),
    );
    process.stderr.write(`${rows[rows.length - 1]}\n`);
    figures.push(`${key}_tok_s=${r.tokensPerSec.toFixed(1)}`, `${key}_rss_mib=${r.peakRssMiB.toFixed(0)}`);
  }
  const ours = results.get('teamllm:bf16') ?? results.get('teamllm:int8');
  for (const dtype of ['f32', 'bf16']) {
    const theirs = results.get(`torch:${dtype}`);
    if (!ours || !theirs) continue;
    const speed = ours.tokensPerSec / theirs.tokensPerSec;
    const rss = ours.peakRssMiB / theirs.peakRssMiB;
    rows.push(`teamllm vs torch ${dtype}: ${speed.toFixed(2)}x the tokens/s, ${rss.toFixed(2)}x the peak RSS`);
    figures.push(`speed_vs_torch_${dtype}=${speed.toFixed(2)}`, `rss_vs_torch_${dtype}=${rss.toFixed(2)}`);
  }
  process.stdout.write(`${rows.join('\n')}\n`);
  process.stdout.write(`shape=${shapeName} seq=${s.seq} batch=${s.batch} rank=${s.rank} steps=${s.steps} threads=${s.threads} checkpoint=${s.checkpoint} ${figures.join(' ')}\n`);
}
