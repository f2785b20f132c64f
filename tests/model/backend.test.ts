import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseBackendName } from '../../src/model/backend.ts';
import { loadNativeBackend } from '../../src/model/native/index.ts';

describe('initBackend', () => {
  it('defaults to $TEAMLLM_BACKEND, else native when the addon loads, else wasm', async () => {
    const saved = process.env.TEAMLLM_BACKEND;
    try {
      process.env.TEAMLLM_BACKEND = 'cpu';
      expect(await initBackend()).toBe('cpu');
      delete process.env.TEAMLLM_BACKEND;
      const native = await loadNativeBackend();
      expect(await initBackend(undefined, { log: () => {} })).toBe(native.ok ? 'native' : 'wasm');
    } finally {
      if (saved === undefined) delete process.env.TEAMLLM_BACKEND;
      else process.env.TEAMLLM_BACKEND = saved;
    }
  });

  it('falls back from tensorflow to wasm with one clear notice when tfjs-node is not installed', async () => {
    const lines: string[] = [];
    expect(await initBackend('tensorflow', { log: (l) => lines.push(l) })).toBe('wasm');
    expect(await initBackend('tensorflow', { log: (l) => lines.push(l) })).toBe('wasm');
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(/@tensorflow\/tfjs-node-gpu.*@tensorflow\/tfjs-node/);
    expect(tf.getBackend()).toBe('wasm');
  });

  it('rejects unknown names', () => {
    expect(() => parseBackendName('webgpu')).toThrow(/Unknown tensor backend/);
    expect(parseBackendName('WASM')).toBe('wasm');
    expect(parseBackendName(undefined)).toBeUndefined();
    expect(parseBackendName('native')).toBe('native');
  });

  it('the wasm backend can train an embedding table (UnsortedSegmentSum is registered)', async () => {
    await initBackend('wasm');
    const table = tf.variable(tf.ones([4, 2]));
    const ids = tf.tensor1d([1, 1, 3], 'int32');
    const { grads } = tf.variableGrads(() => tf.sum(tf.gather(table, ids)) as tf.Scalar, [table]);
    expect(Array.from(grads[table.name]!.dataSync())).toEqual([0, 0, 2, 2, 0, 0, 1, 1]);
  });
});
