/**
 * Pretraining the llama-arch model from zero (the `llama-cpu` preset's architecture at a test
 * size): the loss falls, an interrupted run resumes to exactly the uninterrupted one, and the
 * saved model folder loads back and generates.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from './helpers.ts';
import { PRETRAIN_PRESETS, pretrain, type PretrainOptions } from '../../src/training/pretrain.ts';
import { latestCheckpoint } from '../../src/training/checkpoint.ts';
import { readSafetensors } from '../../src/model/safetensors.ts';
import { loadModelFiles } from '../../src/model/model-files.ts';
import { generateAll } from '../../src/model/generate.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-llama-train-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

const corpus = (await fs.readFile(new URL('./fixtures/corpus.txt', import.meta.url), 'utf8')).repeat(4);

/** The preset, shrunk to test size (its architecture kept: RoPE, GQA 4/2, SwiGLU, RMSNorm, tied head). */
const base = (runDir: string): PretrainOptions => ({
  ...PRETRAIN_PRESETS['llama-cpu'],
  runDir,
  text: corpus,
  model: { blockSize: 16, nLayer: 1, nHead: 4, nKvHead: 2, nEmbd: 16, intermediateSize: 32, dropout: 0.1 },
  batchSize: 4,
  gradAccumSteps: 2,
  maxIters: 12,
  learningRate: 5e-3,
  minLearningRate: 5e-4,
  warmupIters: 2,
  decayIters: 12,
  evalInterval: 4,
  evalIters: 2,
  finalEvalIters: 2,
  checkpointInterval: 100,
  seed: 42,
});

describe('pretrain (llama arch)', () => {
  it('lowers the validation loss; the model folder loads back as a llama-arch model and generates', async () => {
    await useBackend('wasm');
    const runDir = path.join(tmpRoot, 'falls');
    const result = await pretrain({
      ...base(runDir),
      maxIters: 60,
      decayIters: 60,
      learningRate: 1e-2,
      model: { blockSize: 16, nLayer: 1, nHead: 4, nKvHead: 2, nEmbd: 32, intermediateSize: 64, dropout: 0 },
      evalInterval: 20,
    });
    expect(result.status).toBe('completed');
    const state = JSON.parse(await fs.readFile(path.join((await latestCheckpoint(runDir))!.dir, 'state.json'), 'utf8'));
    const val = state.history.val as { step: number; loss: number }[];
    expect(val[0]!.step).toBe(0);
    expect(val.at(-1)!.loss).toBeLessThan(val[0]!.loss - 0.5);

    const { model, tokenizer, config } = await loadModelFiles(path.join(runDir, 'model'));
    expect(config.model).toMatchObject({ arch: 'llama', nKvHead: 2, intermediateSize: 64, tiedHead: true });
    expect(model.paramNames).toContain('model.layers.0.self_attn.k_proj.weight');
    expect(model.params.get('model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([16, 32]); // [kv heads · head dim, hidden]
    expect(result.numParameters).toBe(model.paramList().reduce((n, t) => n + t.size, 0));
    const prompt = tokenizer.encode('the ');
    const cached = await generateAll(model, tokenizer, prompt, { maxTokens: 10, temperature: 0, stopAtEnd: false });
    const uncached = await generateAll(model, tokenizer, prompt, { maxTokens: 10, temperature: 0, stopAtEnd: false, useCache: false });
    expect(cached.tokens.length).toBe(10);
    expect(cached.tokens).toEqual(uncached.tokens);
    model.dispose();
  });

  it('resumes after an interrupt to exactly the state of an uninterrupted run (dropout on)', async () => {
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
    expect((await latestCheckpoint(interrupted))!.step).toBe(5);
    const second = await pretrain(base(interrupted));
    expect(second.status).toBe('completed');
    expect(second.resumedFrom).toBe(5);

    const a = await readSafetensors(path.join(straight, 'model', 'model.safetensors'));
    const b = await readSafetensors(path.join(interrupted, 'model', 'model.safetensors'));
    expect([...a.tensors.keys()]).toContain('model.embed_tokens.weight');
    for (const [name, t] of a.tensors) expect(Array.from(b.tensors.get(name)!.data), name).toEqual(Array.from(t.data));
    const oa = await readSafetensors(path.join((await latestCheckpoint(straight))!.dir, 'optimizer.safetensors'));
    const ob = await readSafetensors(path.join((await latestCheckpoint(interrupted))!.dir, 'optimizer.safetensors'));
    for (const [name, t] of oa.tensors) expect(Array.from(ob.tensors.get(name)!.data), name).toEqual(Array.from(t.data));
    expect(second.valLoss).toBe(full.valLoss);
    expect(second.trainLoss).toBe(full.trainLoss);
  });
});
