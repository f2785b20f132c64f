import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tf, useBackend, tinyModel, tinyConfig, randomIds } from './helpers.ts';
import { saveModelFiles, loadModelFiles } from '../../src/model/model-files.ts';
import { encodeSafetensors, decodeSafetensors } from '../../src/model/safetensors.ts';
import { CharTokenizer } from '../../src/model/tokenizer/char.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { LoadedModel } from '../../src/model/loaded-model.ts';

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-files-'));
const tokenizer = CharTokenizer.fromText('abcdef', { specialTokens: true });

describe('safetensors', () => {
  it('round-trips named tensors with metadata and an 8-byte aligned header', () => {
    const tensors = new Map([
      ['a.weight', { dtype: 'F32' as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6.5]) }],
      ['b', { dtype: 'I32' as const, shape: [2], data: Int32Array.from([-7, 9]) }],
    ]);
    const buf = encodeSafetensors(tensors, { step: '3' });
    const headerLen = Number(new DataView(buf.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    const back = decodeSafetensors(buf);
    expect(back.metadata).toEqual({ step: '3' });
    expect(Array.from(back.tensors.get('a.weight')!.data)).toEqual([1, 2, 3, 4, 5, 6.5]);
    expect(back.tensors.get('b')!.dtype).toBe('I32');
    expect(Array.from(back.tensors.get('b')!.data)).toEqual([-7, 9]);
  });
});

describe.each(['wasm', 'cpu'] as const)('model files on %s', (backend) => {
  it('save -> load gives identical logits', async () => {
    await useBackend(backend);
    const config = { ...tinyConfig, vocabSize: tokenizer.vocabSize };
    const model = tinyModel(config, 12);
    const dir = path.join(tmp, `model-${backend}`);
    await saveModelFiles(dir, model, tokenizer, { note: 'test' });
    const entries = (await fs.readdir(dir)).sort();
    expect(entries).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    const { model: loaded, tokenizer: tok2, config: file } = await loadModelFiles(dir);
    expect(file.meta).toEqual({ note: 'test' });
    expect(tok2.encode('abc')).toEqual(tokenizer.encode('abc'));
    const x = tf.tensor2d(randomIds(16, config.vocabSize, 3), [2, 8], 'int32');
    const a = model.forward(x).dataSync();
    const b = loaded.forward(x).dataSync();
    expect(Array.from(b)).toEqual(Array.from(a));
    model.dispose();
    loaded.dispose();
  });
});

describe('model registry', () => {
  it('registers versions with metrics, promotes, rolls back and loads the serving model', async () => {
    await useBackend('wasm');
    const home = path.join(tmp, 'home');
    const registry = new ModelRegistry(home);
    expect(await registry.list()).toEqual([]);
    expect(await registry.serving()).toBeUndefined();
    await expect(registry.rollback()).rejects.toThrow(/Nothing to roll back/);

    const config = { ...tinyConfig, vocabSize: tokenizer.vocabSize };
    const src = path.join(tmp, 'src-model');
    const model = tinyModel(config, 1);
    await saveModelFiles(src, model, tokenizer, { source: 'pretrain', metrics: { valLoss: 2.5 } });
    const v1 = await registry.register(src, { promote: true });
    expect(v1.version).toBe('v1');
    expect(v1.metrics.valLoss).toBe(2.5);
    expect(v1.source).toBe('pretrain');
    expect(v1.serving).toBe(true);
    const v2 = await registry.register(src, { metrics: { valLoss: 2.1 }, parent: 'v1', source: 'sft' });
    expect(v2.version).toBe('v2');
    expect(v2.serving).toBe(false);
    expect((await registry.list()).map((v) => [v.version, v.serving, v.metrics.valLoss])).toEqual([
      ['v1', true, 2.5],
      ['v2', false, 2.1],
    ]);
    await registry.promote('v2');
    expect((await registry.serving())!.version).toBe('v2');
    await expect(registry.promote('v9')).rejects.toThrow(/No model version v9/);
    const back = await registry.rollback();
    expect(back?.version).toBe('v1');
    expect((await registry.serving())!.version).toBe('v1');
    await expect(registry.remove('v1')).rejects.toThrow(/serving/);

    const loaded = (await registry.loadServing()) as LoadedModel;
    expect(loaded.info.version).toBe('v1');
    const x = tf.tensor2d(randomIds(8, config.vocabSize, 5), [1, 8], 'int32');
    expect(Array.from(loaded.gpt.forward(x).dataSync())).toEqual(Array.from(model.forward(x).dataSync()));
    const answer = await loaded.complete('abc', { maxTokens: 5, temperature: 0 });
    expect(answer.tokens.length).toBeLessThanOrEqual(5);
    loaded.dispose();
    model.dispose();
  });
});
