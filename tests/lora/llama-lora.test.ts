/**
 * LoRA on the llama family (PEFT's shapes on [out, in] weights): target names, a fresh adapter
 * changes nothing, gradients against finite differences on the tiny Llama 3.1 and Qwen3 shapes,
 * merged == unmerged, the KV cache, files.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend, randomIds } from '../model/helpers.ts';
import { GPT, parameterSpecs } from '../../src/model/gpt.ts';
import { fromLlamaConfig } from '../../src/model/config.ts';
import { Random } from '../../src/model/random.ts';
import { LoraAdapter, parseLoraTargets, resolveLoraConfig } from '../../src/model/lora/index.ts';
import { tinyChatModel, type TinyArch } from '../model/import/tiny-llama.ts';
import { expectAdapterGradientsMatch } from './adapter-gradients.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-llama-lora-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

/** The tiny checkpoint of `arch` as a trainable model (float32), context 16. */
function tinyGpt(arch: TinyArch): GPT {
  const tiny = tinyChatModel(arch);
  const config = fromLlamaConfig(tiny.config, 16);
  const shapes = new Map(parameterSpecs(config).map((s) => [s.name, s.shape]));
  return new GPT(config, new Map([...tiny.weights].map(([name, data]) => [name, tf.keep(tf.tensor(data, shapes.get(name)))] as [string, tf.Tensor])));
}

function values(t: tf.Tensor): Float32Array {
  return Float32Array.from(t.dataSync() as Float32Array);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function randomize(adapter: LoraAdapter, seed: number, std: number): void {
  const rng = new Random(seed);
  adapter.setParams(new Map(adapter.paramNames.map((n) => [n, tf.keep(tf.tensor(rng.normalArray(adapter.params.get(n)!.size, std), adapter.params.get(n)!.shape))] as [string, tf.Tensor])));
}

describe('LoRA target names on the llama family', () => {
  it("reads PEFT's target_modules; groups include the gate on a llama, which the GPT refuses", () => {
    expect(parseLoraTargets('q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', 'llama')).toEqual(['q', 'k', 'v', 'attn_out', 'mlp_gate', 'mlp_in', 'mlp_out']);
    expect(parseLoraTargets('all', 'llama')).toEqual(['q', 'k', 'v', 'attn_out', 'mlp_gate', 'mlp_in', 'mlp_out']);
    expect(parseLoraTargets('mlp', 'llama')).toEqual(['mlp_gate', 'mlp_in', 'mlp_out']);
    expect(resolveLoraConfig({ targets: ['gate_proj', 'q_proj'] }, 'llama').targets).toEqual(['q', 'mlp_gate']);
    expect(() => parseLoraTargets('gate_proj')).toThrow(/only in the llama family/);
    expect(parseLoraTargets('all')).toEqual(['q', 'k', 'v', 'attn_out', 'mlp_in', 'mlp_out']);
  });
});

const ARCHS: TinyArch[] = ['llama', 'qwen3'];
const B = 2;
const T = 6;

describe.each(ARCHS)('LoRA on the tiny %s (cpu)', (arch) => {
  const ids = (model: GPT, seed: number) => tf.tensor2d(randomIds(B * T, model.config.vocabSize, seed), [B, T], 'int32');

  it("has PEFT's shapes (A [r, in], B [out, r]) and, fresh, changes nothing", async () => {
    await useBackend('cpu');
    const model = tinyGpt(arch);
    const c = model.config;
    const adapter = LoraAdapter.create(model, { rank: 4, alpha: 8, targets: 'all' });
    const shape = (n: string) => adapter.params.get(`model.layers.1.${n}`)!.shape;
    const q = (c.nHead * c.headDim!) as number;
    const kv = (c.nKvHead! * c.headDim!) as number;
    expect(shape('self_attn.q_proj.lora_A')).toEqual([4, c.nEmbd]);
    expect(shape('self_attn.q_proj.lora_B')).toEqual([q, 4]);
    expect(shape('self_attn.k_proj.lora_B')).toEqual([kv, 4]);
    expect(shape('self_attn.o_proj.lora_A')).toEqual([4, q]);
    expect(shape('mlp.gate_proj.lora_B')).toEqual([c.intermediateSize, 4]);
    expect(shape('mlp.down_proj.lora_A')).toEqual([4, c.intermediateSize]);
    expect(adapter.paramNames).toHaveLength(2 * 7 * c.nLayer);
    const a = values(adapter.params.get('model.layers.0.mlp.down_proj.lora_A')!);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(c.intermediateSize!));
    expect(a.some((v) => v !== 0)).toBe(true);
    const x = ids(model, 1);
    const before = tf.tidy(() => values(model.forward(x)));
    adapter.attach(model);
    expect(Array.from(tf.tidy(() => values(model.forward(x))))).toEqual(Array.from(before));
    adapter.dispose();
    model.dispose();
  });

  it('gradients of every adapter tensor match finite differences', async () => {
    await useBackend('cpu');
    const model = tinyGpt(arch);
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 3, dropout: 0, targets: 'all' });
    randomize(adapter, 21, 0.2);
    adapter.attach(model);
    const x = ids(model, 2);
    const yIds = randomIds(B * T, model.config.vocabSize, 3);
    yIds[2] = -1;
    const y = tf.tensor2d(yIds, [B, T], 'int32');
    const names = adapter.paramNames;
    const lossOf = (ps: tf.Tensor[]) => model.loss(x, y, { training: true }, new Map([...model.params, ...names.map((n, i) => [n, ps[i]!] as [string, tf.Tensor])]));
    // The tiny checkpoints are curved enough (Qwen3's q/k norms) that a 1e-2 step is off by 10%.
    expectAdapterGradientsMatch(adapter, lossOf, { h: 3e-3, rng: new Random(4) });
    adapter.dispose();
    model.dispose();
  });

  it('merged == unmerged logits (full and cached forward); unmerge restores the base', async () => {
    await useBackend('cpu');
    const model = tinyGpt(arch);
    const x = ids(model, 5);
    const base = tf.tidy(() => values(model.forward(x)));
    const baseWeights = model.paramNames.map((n) => values(model.params.get(n)!));
    const adapter = LoraAdapter.create(model, { rank: 3, alpha: 6, targets: ['q_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj'] });
    randomize(adapter, 5, 0.2);
    adapter.attach(model);
    const unmerged = tf.tidy(() => values(model.forward(x)));
    expect(maxAbsDiff(unmerged, base)).toBeGreaterThan(1e-2);
    // The cached forward (generation) applies it too.
    const seq = randomIds(T, model.config.vocabSize, 8);
    const full = tf.tidy(() => values(tf.slice(model.forward(tf.tensor2d(seq, [1, T], 'int32')), [0, T - 1, 0], [1, 1, -1])));
    const cache = model.emptyCache();
    model.forwardCached(tf.tensor2d(seq.slice(0, T - 2), [1, T - 2], 'int32'), cache).dispose();
    model.forwardCached(tf.tensor2d([seq[T - 2]!], [1, 1], 'int32'), cache).dispose();
    const last = model.forwardCached(tf.tensor2d([seq[T - 1]!], [1, 1], 'int32'), cache);
    expect(maxAbsDiff(values(last), full)).toBeLessThan(1e-4);
    GPT.disposeCache(cache);
    LoraAdapter.detach(model);
    adapter.merge(model);
    expect(maxAbsDiff(tf.tidy(() => values(model.forward(x))), unmerged)).toBeLessThan(1e-4);
    adapter.unmerge(model);
    model.paramNames.forEach((n, i) => expect(maxAbsDiff(values(model.params.get(n)!), baseWeights[i]!)).toBeLessThan(1e-5));
    adapter.dispose();
    model.dispose();
  });

  it('saves and loads (same logits); another base is refused by its fingerprint', async () => {
    await useBackend('cpu');
    const model = tinyGpt(arch);
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 4, targets: 'mlp' });
    randomize(adapter, 6, 0.2);
    const dir = path.join(tmpRoot, `${arch}-adapter`);
    await adapter.save(dir);
    const back = await LoraAdapter.load(dir, model);
    expect(back.config.targets).toEqual(['mlp_gate', 'mlp_in', 'mlp_out']);
    const x = ids(model, 9);
    adapter.attach(model);
    const a = tf.tidy(() => values(model.forward(x)));
    back.attach(model);
    expect(Array.from(tf.tidy(() => values(model.forward(x))))).toEqual(Array.from(a));
    const other = tinyGpt(arch === 'llama' ? 'qwen3' : 'llama');
    await expect(LoraAdapter.load(dir, other)).rejects.toThrow(/was trained on base model/);
    for (const m of [adapter, back, model, other]) m.dispose();
  });
});
