import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend, randomIds } from './helpers.ts';
import { GPT } from '../../src/model/gpt.ts';
import { AdamW } from '../../src/training/adamw.ts';
import { learningRateAt } from '../../src/training/schedule.ts';
import { pretrain, type PretrainOptions } from '../../src/training/pretrain.ts';
import { latestCheckpoint } from '../../src/training/checkpoint.ts';
import { readSafetensors } from '../../src/model/safetensors.ts';
import { Random } from '../../src/model/random.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-train-test-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

const corpus = (await fs.readFile(new URL('./fixtures/corpus.txt', import.meta.url), 'utf8')).repeat(4);

describe('learning-rate schedule', () => {
  it('warms up linearly, follows a cosine, then stays at the floor', () => {
    const s = { learningRate: 1e-3, minLearningRate: 1e-4, warmupIters: 100, decayIters: 2000 };
    expect(learningRateAt(0, s)).toBeCloseTo(1e-3 / 101, 10);
    expect(learningRateAt(99, s)).toBeCloseTo(1e-3 * (100 / 101), 10);
    expect(learningRateAt(100, s)).toBeCloseTo(1e-3, 10);
    expect(learningRateAt(1050, s)).toBeCloseTo(5.5e-4, 6);
    expect(learningRateAt(2000, s)).toBeCloseTo(1e-4, 10);
    expect(learningRateAt(5000, s)).toBe(1e-4);
  });
});

describe('AdamW', () => {
  it('the fused kernel matches the tf-ops formula (torch.optim.AdamW)', async () => {
    await useBackend('cpu');
    const rng = new Random(5);
    const p = tf.tensor(rng.normalArray(6, 1));
    const g = tf.tensor(rng.normalArray(6, 1));
    const opt = new AdamW({ beta1: 0.9, beta2: 0.99, weightDecay: 0.1 }, () => true);
    let params = new Map([['w', p]]);
    for (let i = 0; i < 3; i++) params = opt.apply(params, new Map([['w', g]]), 1e-2, 0.5);
    // Reference in plain JS.
    const P = Float32Array.from(p.dataSync());
    const G = g.dataSync();
    const m = new Float64Array(6);
    const v = new Float64Array(6);
    for (let t = 1; t <= 3; t++) {
      for (let i = 0; i < 6; i++) {
        const gi = G[i]! * 0.5;
        P[i] = P[i]! * (1 - 1e-2 * 0.1);
        m[i] = 0.9 * m[i]! + 0.1 * gi;
        v[i] = 0.99 * v[i]! + 0.01 * gi * gi;
        const mhat = m[i]! / (1 - 0.9 ** t);
        const vhat = v[i]! / (1 - 0.99 ** t);
        P[i] = P[i]! - (1e-2 * mhat) / (Math.sqrt(vhat) + 1e-8);
      }
    }
    const got = params.get('w')!.dataSync();
    for (let i = 0; i < 6; i++) expect(got[i]).toBeCloseTo(P[i]!, 5);
  });
});

describe.each(['wasm', 'cpu'] as const)('training on %s', (backend) => {
  it('overfits one batch', async () => {
    await useBackend(backend);
    const config = { vocabSize: 13, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, dropout: 0, bias: true };
    const model = GPT.create(config, 3);
    const x = tf.tensor2d(randomIds(16, 13, 1), [2, 8], 'int32');
    const y = tf.tensor2d(randomIds(16, 13, 2), [2, 8], 'int32');
    const opt = new AdamW({ beta1: 0.9, beta2: 0.99, weightDecay: 0 }, () => false);
    const f = tf.valueAndGrads((...ps: tf.Tensor[]) => model.loss(x, y, {}, ps));
    let first = 0;
    let last = 0;
    for (let step = 0; step < 150; step++) {
      const { value, grads } = tf.tidy(() => f(model.paramList()));
      last = value.dataSync()[0]!;
      if (step === 0) first = last;
      model.setParams(opt.apply(model.params, new Map(model.paramNames.map((n, i) => [n, grads[i]!])), 1e-2));
      value.dispose();
      grads.forEach((t) => t.dispose());
    }
    expect(first).toBeGreaterThan(2);
    expect(last).toBeLessThan(0.1);
    model.dispose();
    opt.dispose();
  });
});

const base = (runDir: string): PretrainOptions => ({
  runDir,
  text: corpus,
  tokenizer: 'char',
  modelSize: 'tiny',
  model: { blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 16, dropout: 0.1 },
  batchSize: 4,
  gradAccumSteps: 2,
  maxIters: 12,
  learningRate: 5e-3,
  minLearningRate: 5e-4,
  warmupIters: 2,
  evalInterval: 4,
  evalIters: 2,
  checkpointInterval: 100,
  seed: 42,
});

describe('pretrain', () => {
  it('lowers the validation loss on a small corpus and writes the run folder', async () => {
    await useBackend('wasm');
    const runDir = path.join(tmpRoot, 'falls');
    const events: number[] = [];
    const result = await pretrain(
      { ...base(runDir), maxIters: 60, learningRate: 1e-2, model: { blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 32, dropout: 0 }, evalInterval: 20 },
      { onProgress: (e) => e.phase === 'train' && events.push(e.step) },
    );
    expect(result.status).toBe('completed');
    expect(events).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    const state = JSON.parse(await fs.readFile(path.join((await latestCheckpoint(runDir))!.dir, 'state.json'), 'utf8'));
    const val = state.history.val as { step: number; loss: number }[];
    expect(val[0]!.step).toBe(0);
    expect(val.at(-1)!.loss).toBeLessThan(val[0]!.loss - 0.5);
    expect(result.perplexity).toBeCloseTo(Math.exp(result.valLoss), 5);
    const png = await fs.readFile(path.join(runDir, 'loss.png'));
    expect([...png.subarray(0, 8)]).toEqual([137, 80, 78, 71, 13, 10, 26, 10]);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) {
      await expect(fs.access(path.join(runDir, 'model', f))).resolves.toBeUndefined();
    }
    const metrics = (await fs.readFile(path.join(runDir, 'metrics.jsonl'), 'utf8')).trim().split('\n');
    expect(metrics.length).toBeGreaterThanOrEqual(60);
  });

  it('resumes after an interrupt to exactly the state of an uninterrupted run', async () => {
    await useBackend('wasm');
    const straight = path.join(tmpRoot, 'straight');
    const interrupted = path.join(tmpRoot, 'interrupted');
    const full = await pretrain(base(straight));
    expect(full.step).toBe(12);

    const controller = new AbortController();
    const first = await pretrain(base(interrupted), {
      signal: controller.signal,
      onProgress: (e) => {
        if (e.phase === 'train' && e.step === 5) controller.abort();
      },
    });
    expect(first.status).toBe('aborted');
    expect(first.step).toBe(5);
    expect((await latestCheckpoint(interrupted))!.step).toBe(5);
    const second = await pretrain(base(interrupted));
    expect(second.status).toBe('completed');
    expect(second.resumedFrom).toBe(5);
    expect(second.step).toBe(12);

    const a = await readSafetensors(path.join(straight, 'model', 'model.safetensors'));
    const b = await readSafetensors(path.join(interrupted, 'model', 'model.safetensors'));
    for (const [name, t] of a.tensors) expect(Array.from(b.tensors.get(name)!.data), name).toEqual(Array.from(t.data));
    const oa = await readSafetensors(path.join((await latestCheckpoint(straight))!.dir, 'optimizer.safetensors'));
    const ob = await readSafetensors(path.join((await latestCheckpoint(interrupted))!.dir, 'optimizer.safetensors'));
    expect(ob.metadata.step).toBe(oa.metadata.step);
    for (const [name, t] of oa.tensors) expect(Array.from(ob.tensors.get(name)!.data), name).toEqual(Array.from(t.data));
    expect(second.valLoss).toBe(full.valLoss);
    expect(second.trainLoss).toBe(full.trainLoss);
  });
});
