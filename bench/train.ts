/**
 * `npm run bench -- train --preset nanogpt-cpu [--backend wasm|cpu|tensorflow] [--iters N]
 *   [--data file] [--run-dir dir] [--final-eval-iters N] [--seed N] [--keep]`
 *
 * nanoGPT's "baby GPT on CPU" on tinyshakespeare (characters as tokens, 90/10 split). Progress
 * goes to stderr; the last line on stdout is the key=value summary.
 */
import { existsSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PRETRAIN_PRESETS, pretrain, type PretrainOptions } from '../src/training/pretrain.ts';
import { initBackend, parseBackendName } from '../src/model/backend.ts';

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
  const backend = await initBackend(parseBackendName(values.backend));
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
  const t0 = performance.now();
  const result = await pretrain(options, {
    log: (l) => process.stderr.write(`${l}\n`),
    onProgress: (e) => {
      if (e.phase === 'eval') {
        process.stderr.write(`step ${e.step}: val loss ${e.valLoss!.toFixed(4)}\n`);
      } else if (e.step % logEvery === 0) {
        process.stderr.write(
          `step ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ` +
            `${e.msPerIter.toFixed(1)} ms/iter ${Math.round(e.tokensPerSec)} tok/s eta ${Math.round(e.etaSec)}s\n`,
        );
      }
    },
  });
  const totalSec = (performance.now() - t0) / 1000;
  process.stderr.write(`run folder: ${result.runDir}\n`);
  if (!values.keep && !values['run-dir']) await fs.rm(runDir, { recursive: true, force: true });
  console.log(
    [
      `val_loss=${result.valLoss.toFixed(4)}`,
      `train_loss=${result.trainLoss.toFixed(4)}`,
      `ms_per_iter=${result.msPerIter.toFixed(1)}`,
      `tokens_per_s=${Math.round(result.tokensPerSec)}`,
      `iters=${result.step}`,
      `params=${result.numParameters}`,
      `backend=${result.backend}`,
      `total_s=${totalSec.toFixed(1)}`,
    ].join(' '),
  );
}
