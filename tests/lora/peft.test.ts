/**
 * PEFT's LoRA folder: written with PEFT's names and config, read back (ours, and one laid out the
 * way PEFT's save_pretrained writes it, in BF16) with identical logits; the update is PEFT's
 * W + (alpha/r)·B·A (checked against the merge done by hand); merged into the inference engine's
 * weights it answers as the unmerged trainable model does.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend, randomIds } from '../model/helpers.ts';
import { GPT } from '../../src/model/gpt.ts';
import { Random } from '../../src/model/random.ts';
import { decodeSafetensors, encodeSafetensors, type NamedArray } from '../../src/model/safetensors.ts';
import { LlamaModel } from '../../src/model/import/llama.ts';
import { LoraAdapter } from '../../src/model/lora/index.ts';
import { adapterFromPeft, isPeftAdapterFolder, readPeftAdapter, writePeftAdapter } from '../../src/model/lora/peft.ts';
import { mergeLoraIntoChatModel, trainableFromChatModel } from '../../src/model/lora/imported-base.ts';
import { tinyChatModel, type TinyArch } from '../model/import/tiny-llama.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-peft-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

function engine(arch: TinyArch): LlamaModel {
  const tiny = tinyChatModel(arch);
  return new LlamaModel(tiny.config, tiny.weights);
}

function randomize(adapter: LoraAdapter, seed: number, std: number): void {
  const rng = new Random(seed);
  adapter.setParams(new Map(adapter.paramNames.map((n) => [n, tf.keep(tf.tensor(rng.normalArray(adapter.params.get(n)!.size, std), adapter.params.get(n)!.shape))] as [string, tf.Tensor])));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const seq = (model: GPT) => Array.from(randomIds(7, model.config.vocabSize, 3));
const logitsOf = (model: GPT, ids: number[]) => tf.tidy(() => Float32Array.from(model.forward(tf.tensor2d(ids, [1, ids.length], 'int32')).dataSync() as Float32Array));

describe.each(['llama', 'qwen3'] as TinyArch[])("PEFT's format on the tiny %s (cpu)", (arch) => {
  it("writes PEFT's names and config; reads back to identical logits", async () => {
    await useBackend('cpu');
    const model = trainableFromChatModel(engine(arch));
    const adapter = LoraAdapter.create(model, { rank: 4, alpha: 8, dropout: 0.1, targets: 'all' }, { version: 'v1' });
    randomize(adapter, 3, 0.1);
    const dir = path.join(tmpRoot, `${arch}-ours`);
    await writePeftAdapter(dir, adapter, { baseModel: 'Qwen/Qwen3-0.6B' });
    expect(isPeftAdapterFolder(dir)).toBe(true);
    const config = JSON.parse(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, lora_dropout: 0.1, task_type: 'CAUSAL_LM', bias: 'none', fan_in_fan_out: false, base_model_name_or_path: 'Qwen/Qwen3-0.6B', use_dora: false, use_rslora: false });
    expect(config.target_modules).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    const { tensors, metadata } = decodeSafetensors(readFileSync(path.join(dir, 'adapter_model.safetensors')));
    expect(metadata.format).toBe('pt');
    expect(tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!.shape).toEqual([4, model.config.nEmbd]);
    expect(tensors.get('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight')!.shape).toEqual([model.config.nEmbd, 4]);
    expect(tensors.size).toBe(2 * 7 * model.config.nLayer);

    const back = adapterFromPeft(readPeftAdapter(dir), model);
    expect(back.config).toEqual(adapter.config);
    const ids = seq(model);
    adapter.attach(model);
    const a = logitsOf(model, ids);
    back.attach(model);
    expect(Array.from(logitsOf(model, ids))).toEqual(Array.from(a));
    // Written by teamllm, the folder knows its base: another model is refused.
    const other = trainableFromChatModel(engine(arch === 'llama' ? 'mistral' : 'qwen2'));
    expect(() => adapterFromPeft(readPeftAdapter(dir), other)).toThrow(/trained on base model|need/);
    for (const m of [adapter, back, model, other]) m.dispose();
  });

  it("reads a folder written the way PEFT writes it (BF16, some layers): W + (alpha/r)·B·A, as merged by hand", async () => {
    await useBackend('cpu');
    const llama = engine(arch);
    const model = trainableFromChatModel(llama);
    const c = model.config;
    const r = 2;
    const alpha = 5;
    const rng = new Random(17);
    const tensors = new Map<string, NamedArray>();
    const byHand = new Map<string, Float32Array>();
    for (const site of ['self_attn.v_proj', 'mlp.up_proj']) {
      const name = `model.layers.1.${site}`;
      const w = model.params.get(`${name}.weight`)!;
      const [out, inp] = w.shape as [number, number];
      // bf16 values (what a BF16 file holds), so the hand merge uses exactly what is read.
      const bf = (n: number) => Float32Array.from(rng.normalArray(n, 0.2), (v) => new Float32Array(new Uint32Array([new Uint32Array(new Float32Array([v]).buffer)[0]! & 0xffff0000]).buffer)[0]!);
      const A = bf(r * inp);
      const B = bf(out * r);
      tensors.set(`base_model.model.${name}.lora_A.weight`, { dtype: 'F32', shape: [r, inp], data: A, stored: 'BF16' });
      tensors.set(`base_model.model.${name}.lora_B.weight`, { dtype: 'F32', shape: [out, r], data: B, stored: 'BF16' });
      const merged = Float32Array.from(w.dataSync() as Float32Array);
      for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) for (let k = 0; k < r; k++) merged[o * inp + i]! += (alpha / r) * B[o * r + k]! * A[k * inp + i]!;
      byHand.set(`${name}.weight`, merged);
    }
    const dir = path.join(tmpRoot, `${arch}-peft`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
    // adapter_config.json as PEFT 0.13 writes it.
    writeFileSync(
      path.join(dir, 'adapter_config.json'),
      JSON.stringify({
        alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: 'some/base', bias: 'none', fan_in_fan_out: false, inference_mode: true, init_lora_weights: true,
        layer_replication: null, layers_pattern: null, layers_to_transform: [1], loftq_config: {}, lora_alpha: alpha, lora_dropout: 0.05, megatron_config: null,
        megatron_core: 'megatron.core', modules_to_save: null, peft_type: 'LORA', r, rank_pattern: {}, revision: null, target_modules: ['up_proj', 'v_proj'],
        task_type: 'CAUSAL_LM', use_dora: false, use_rslora: false,
      }),
    );
    const peft = readPeftAdapter(dir);
    expect(peft.config).toMatchObject({ rank: r, alpha, dropout: 0.05, targets: ['v', 'mlp_in'], layers: [1] });
    expect(peft.baseModel).toBe('some/base');
    const adapter = adapterFromPeft(peft, model, 'v1');
    const ids = seq(model);
    adapter.attach(model);
    const unmerged = logitsOf(model, ids);
    LoraAdapter.detach(model);
    const hand = new GPT(c, new Map([...model.params].map(([n, t]) => [n, byHand.has(n) ? tf.keep(tf.tensor(byHand.get(n)!, t.shape)) : t])));
    expect(maxAbsDiff(logitsOf(hand, ids), unmerged)).toBeLessThan(1e-4);
    // Served: merged into the engine's weights, the logits of the unmerged trainable model.
    const served = mergeLoraIntoChatModel(llama, peft);
    expect(maxAbsDiff(served.forward(ids), unmerged)).toBeLessThan(1e-4);
    expect(maxAbsDiff(llama.forward(ids), unmerged)).toBeGreaterThan(1e-3);
    adapter.dispose();
    model.dispose();
  });
});

describe("PEFT's format: what cannot be read is refused by name", () => {
  const folder = (name: string, config: Record<string, unknown>) => {
    const dir = path.join(tmpRoot, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'], ...config }));
    writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(new Map([['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', { dtype: 'F32', shape: [2, 4], data: new Float32Array(8) }]]), { format: 'pt' }));
    return dir;
  };
  it('DoRA, rsLoRA, trained biases, extra modules, other PEFT types, pickles', () => {
    expect(() => readPeftAdapter(folder('dora', { use_dora: true }))).toThrow(/DoRA/);
    expect(() => readPeftAdapter(folder('rslora', { use_rslora: true }))).toThrow(/use_rslora/);
    expect(() => readPeftAdapter(folder('bias', { bias: 'all' }))).toThrow(/biases/);
    expect(() => readPeftAdapter(folder('modules', { modules_to_save: ['lm_head'] }))).toThrow(/modules_to_save: lm_head/);
    expect(() => readPeftAdapter(folder('ia3', { peft_type: 'IA3' }))).toThrow(/peft_type is "IA3"/);
    const bin = folder('bin', {});
    writeFileSync(path.join(bin, 'adapter_model.bin'), '');
    return fs.rm(path.join(bin, 'adapter_model.safetensors')).then(() => expect(() => readPeftAdapter(bin)).toThrow(/adapter_model\.bin, a pickle/));
  });
});
