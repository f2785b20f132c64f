/**
 * `npm run bench -- train --preset nanogpt-cpu [--backend native,wasm,...] [--iters N]
 *   [--data file] [--run-dir dir] [--final-eval-iters N] [--seed N] [--keep]`
 *
 * nanoGPT's "baby GPT on CPU" on tinyshakespeare (characters as tokens, 90/10 split). With
 * several backends they run one after the other in this process and a table compares them,
 * with the share of the machine's sgemm peak measured in the same run. Progress goes to stderr;
 * the last line on stdout is the key=value summary.
 */
import { existsSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PRETRAIN_PRESETS, pretrain, type PretrainOptions } from '../src/training/pretrain.ts';
import { initBackend, parseBackendName } from '../src/model/backend.ts';
import { measureSgemmPeak } from '../src/model/native/index.ts';

function defaultData(): string {
  for (const p of [path.resolve('../shared/data/tinyshakespeare.txt'), '/work/shared/data/tinyshakespeare.txt']) {
    if (existsSync(p)) return p;
  }
  return path.resolve('../shared/data/tinyshakespeare.txt');
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: 'string', default: 'nanogpt-cpu' },
      backend: { type: 'string' },
      iters: { type: 'string' },
      data: { type: 'string' },
      'run-dir': { type: 'string' },
      'final-eval-iters': { type: 'string' },
      seed: { type: 'string' },
      'log-every': { type: 'string', default: '50' },
      keep: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  const preset = PRETRAIN_PRESETS[values.preset!];
  if (!preset) throw new Error(`Unknown preset ${values.preset}; known: ${Object.keys(PRETRAIN_PRESETS).join(', ')}`);
  const asked = values.backend ? values.backend.split(',').map((b) => b.trim()) : [undefined];
  const rows: { backend: string; median: number; mean: number; valLoss: number; trainLoss: number; tokensPerSec: number; iters: number; params: number; totalSec: number; flopsPerStep: number }[] = [];
  for (const name of asked) {
    const backend = await initBackend(parseBackendName(name));
    if (name && backend !== name) process.stderr.write(`(${name} unavailable: measured ${backend} instead)\n`);
    const runDir = values['run-dir'] ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-bench-train-')));
    const options: PretrainOptions = { ...preset, runDir, data: values.data ?? defaultData(), resume: false, backend };
    if (values.iters) {
      options.maxIters = Number(values.iters);
      options.decayIters = Number(values.iters);
      options.warmupIters = Math.min(preset.warmupIters ?? 100, Math.floor(Number(values.iters) / 10));
    }
    if (values['final-eval-iters']) options.finalEvalIters = Number(values['final-eval-iters']);
    if (values.seed) options.seed = Number(values.seed);
    const logEvery = Number(values['log-every']);
    const stepMs: number[] = [];
    const t0 = performance.now();
    const result = await pretrain(options, {
      log: (l) => process.stderr.write(`${l}\n`),
      onProgress: (e) => {
        if (e.phase === 'eval') {
          process.stderr.write(`[${backend}] step ${e.step}: val loss ${e.valLoss!.toFixed(4)}\n`);
          return;
        }
        stepMs.push(e.msPerIter);
        if (e.step % logEvery === 0) {
          process.stderr.write(
            `[${backend}] step ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ` +
              `${e.msPerIter.toFixed(1)} ms/iter ${Math.round(e.tokensPerSec)} tok/s eta ${Math.round(e.etaSec)}s\n`,
          );
        }
      },
    });
    const totalSec = (performance.now() - t0) / 1000;
    process.stderr.write(`run folder: ${result.runDir}\n`);
    if (!values.keep && !values['run-dir']) await fs.rm(runDir, { recursive: true, force: true });
    // nanoGPT's estimate_mfu: 6N per token for the weights plus 12·L·T·C per token for attention.
    const m = { ...(preset.model ?? {}) } as { nLayer?: number; nEmbd?: number; blockSize?: number };
    const tokens = (options.batchSize ?? 12) * (m.blockSize ?? 64);
    const flopsPerStep = tokens * (6 * result.numParameters + 12 * (m.nLayer ?? 4) * (m.blockSize ?? 64) * (m.nEmbd ?? 128));
    const sorted = [...stepMs].sort((a, b) => a - b);
    rows.push({
      backend: result.backend,
      median: sorted[Math.floor(sorted.length / 2)] ?? result.msPerIter,
      mean: result.msPerIter,
      valLoss: result.valLoss,
      trainLoss: result.trainLoss,
      tokensPerSec: result.tokensPerSec,
      iters: result.step,
      params: result.numParameters,
      totalSec,
      flopsPerStep,
    });
  }
  const peak = measureSgemmPeak();
  const share = (r: (typeof rows)[number]) => (Number.isFinite(peak) ? (r.flopsPerStep / (r.median / 1000) / 1e9 / peak) * 100 : Number.NaN);
  process.stderr.write(`\nsgemm peak (OpenBLAS, 2 cores, this run): ${Number.isFinite(peak) ? `${peak.toFixed(0)} GFLOP/s` : 'n/a (native addon not built)'}\n`);
  process.stderr.write('backend  | median ms/iter | mean ms/iter | tokens/s | val loss | share of peak\n');
  for (const r of rows) {
    process.stderr.write(`${r.backend.padEnd(8)} | ${r.median.toFixed(1).padStart(14)} | ${r.mean.toFixed(1).padStart(12)} | ${String(Math.round(r.tokensPerSec)).padStart(8)} | ${r.valLoss.toFixed(4).padStart(8)} | ${share(r).toFixed(1)}%\n`);
  }
  const single = rows.length === 1;
  const figures = rows.flatMap((r) => {
    const sfx = single ? '' : `_${r.backend}`;
    return [
      `val_loss${sfx}=${r.valLoss.toFixed(4)}`,
      `train_loss${sfx}=${r.trainLoss.toFixed(4)}`,
      `ms_per_iter${sfx}=${r.median.toFixed(1)}`,
      `mean_ms_per_iter${sfx}=${r.mean.toFixed(1)}`,
      `tokens_per_s${sfx}=${Math.round(r.tokensPerSec)}`,
      `peak_share_pct${sfx}=${share(r).toFixed(1)}`,
      ...(single ? [`backend=${r.backend}`, `iters=${r.iters}`, `params=${r.params}`, `total_s=${r.totalSec.toFixed(1)}`] : [`total_s${sfx}=${r.totalSec.toFixed(1)}`]),
    ];
  });
  console.log([...figures, `sgemm_peak_gflops=${Number.isFinite(peak) ? peak.toFixed(0) : 'nan'}`].join(' '));
}
