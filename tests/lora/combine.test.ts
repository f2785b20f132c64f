/**
 * An adapter on an adapter: a LoRA trained on an adapter version (its adapter merged) is
 * registered with that adapter as ONE PEFT adapter of rank r1 + r2 over the imported model
 * (A stacked, B concatenated and rescaled; zero blocks where one of them has no projection or
 * layer). The combined version's merged weights equal the chain's within 1e-5, its PEFT export
 * reads back identically and imports onto the base with the same weights.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { Random } from '../../src/model/random.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { inspectHfChatModel } from '../../src/model/import/llama-checkpoint.ts';
import { loadChatModelVersion } from '../../src/model/import/chat-manifest.ts';
import { exportChatModel } from '../../src/model/import/chat-export.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { mergeLoraIntoChatModel, trainableFromChatModel } from '../../src/model/lora/imported-base.ts';
import { readPeftAdapter, writePeftAdapter, type PeftLora } from '../../src/model/lora/peft.ts';
import { combineLoras } from '../../src/model/lora/combine.ts';
import type { LoraConfigInput } from '../../src/model/lora/config.ts';
import type { GPT } from '../../src/model/gpt.ts';
import type { LlamaModel } from '../../src/model/import/llama.ts';
import { dequantize } from '../../src/model/import/weights.ts';
import { tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-lora-combine-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

await useBackend('wasm');
const home = path.join(tmpRoot, 'home');
writeHfChatFolder(path.join(tmpRoot, 'qwen3'), tinyChatModel('qwen3', 21));
const registry = new ModelRegistry(home);
await registry.registerChatModel(inspectHfChatModel(path.join(tmpRoot, 'qwen3')));

/** A LoRA on `model` with random A and B (a trained one's B is not zero), written as PEFT's folder. */
async function randomPeft(model: GPT, config: LoraConfigInput, seed: number, dir: string): Promise<PeftLora> {
  const adapter = LoraAdapter.create(model, { dropout: 0, ...config }, { seed });
  const rng = new Random(seed);
  adapter.setParams(new Map(adapter.paramNames.map((n) => [n, tf.keep(tf.tensor(rng.normalArray(adapter.params.get(n)!.size, 0.1), adapter.params.get(n)!.shape))] as [string, tf.Tensor])));
  await writePeftAdapter(dir, adapter, { baseModel: 'tiny-qwen3' });
  adapter.dispose();
  return readPeftAdapter(dir);
}

function maxWeightDiff(a: LlamaModel, b: LlamaModel): number {
  const wa = a.weights();
  const wb = b.weights();
  let diff = 0;
  for (const [name, x] of wa) {
    const y = wb.get(name)!;
    const xs = x instanceof Float32Array ? x : dequantize(x);
    const ys = y instanceof Float32Array ? y : dequantize(y);
    for (let i = 0; i < xs.length; i++) diff = Math.max(diff, Math.abs(xs[i]! - ys[i]!));
  }
  return diff;
}

describe('an adapter on an adapter, registered as one', () => {
  it('merged(chain) == merged(combined) within 1e-5, over the imported model; the PEFT export reads back and imports identically', async () => {
    const v1 = loadChatModelVersion(registry.dir('v1')).model;
    // The first adapter (SFT, say): q and v on layer 0 only.
    const first = await randomPeft(trainableFromChatModel(v1), { rank: 2, alpha: 4, targets: 'q_proj,v_proj', layers: [0] }, 3, path.join(tmpRoot, 'first'));
    const v2 = await registry.registerChatAdapter(path.join(tmpRoot, 'first'), 'v1', { source: 'sft' });
    // The second (DPO after SFT), trained on v2 as it serves (its adapter merged): every projection, every layer, another scale.
    const onV2 = trainableFromChatModel(loadChatModelVersion(registry.dir(v2.version)).model);
    const second = await randomPeft(onV2, { rank: 3, alpha: 9, targets: 'all' }, 4, path.join(tmpRoot, 'second'));
    onV2.dispose();
    await expect(registry.registerChatAdapter(path.join(tmpRoot, 'second'), v2.version)).rejects.toThrow(/v2 is itself an adapter \(on v1\)/);
    const v3 = await registry.registerChatAdapter(path.join(tmpRoot, 'second'), v2.version, { source: 'rlhf', onAdapter: 'combine' });
    expect(v3).toMatchObject({ parent: 'v2', kind: 'chat' });
    const served = loadChatModelVersion(registry.dir(v3.version));
    expect(served.manifest.adapter).toEqual({ base: 'v1' });

    // One adapter of rank 5 with the second's scale (9/3 = 3), on every projection of both layers.
    const combined = readPeftAdapter(registry.dir(v3.version));
    expect(combined.config).toMatchObject({ rank: 5, alpha: 15, targets: ['q', 'k', 'v', 'attn_out', 'mlp_gate', 'mlp_in', 'mlp_out'] });
    expect(combined.config.layers).toBeUndefined();
    expect(combined.tensors.size).toBe(2 * 7 * 2);
    expect(combined.base?.fingerprint).toBe(first.base?.fingerprint);
    // Blocks: A1 rows then A2 rows; B1 rescaled by s1/s = 2/3; zero where the first had no adapter.
    const a = combined.tensors.get('model.layers.0.self_attn.q_proj.lora_A')!;
    const inp = a.shape[1]!;
    expect(Array.from(a.data.slice(0, 2 * inp))).toEqual(Array.from(first.tensors.get('model.layers.0.self_attn.q_proj.lora_A')!.data));
    expect(Array.from(a.data.slice(2 * inp))).toEqual(Array.from(second.tensors.get('model.layers.0.self_attn.q_proj.lora_A')!.data));
    const b = combined.tensors.get('model.layers.0.self_attn.q_proj.lora_B')!;
    const b1 = first.tensors.get('model.layers.0.self_attn.q_proj.lora_B')!;
    expect(b.data[0]).toBeCloseTo((2 / 3) * b1.data[0]!, 6);
    expect(Array.from(combined.tensors.get('model.layers.1.self_attn.q_proj.lora_A')!.data.slice(0, 2 * inp)).every((x) => x === 0)).toBe(true);
    expect(Array.from(combined.tensors.get('model.layers.0.mlp.up_proj.lora_B')!.data).filter((_, i) => i % 5 < 2).every((x) => x === 0)).toBe(true);

    // The chain: v1 + first merged, then + second merged; against v1 + combined.
    const chain = mergeLoraIntoChatModel(mergeLoraIntoChatModel(v1, first), second);
    const diff = maxWeightDiff(chain, served.model);
    console.log(`adapter on an adapter: rank 2 (q, v, layer 0) + rank 3 (all) = rank ${combined.config.rank}; max |merged(chain) − merged(combined)| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-5);
    expect(maxWeightDiff(v1, served.model)).toBeGreaterThan(1e-3); // not vacuous
    const ids = [5, 17, 99, 3, 250, 42];
    const lc = chain.forward(ids);
    const ls = served.model.forward(ids);
    expect(Math.max(...Array.from(lc, (x, i) => Math.abs(x - ls[i]!)))).toBeLessThan(1e-4);
    // combineLoras itself, on the arrays read back: the same as the registry wrote.
    expect(combineLoras(first, second).tensors.get('model.layers.1.mlp.down_proj.lora_B')!.data).toEqual(combined.tensors.get('model.layers.1.mlp.down_proj.lora_B')!.data);

    // Exported as PEFT's folder, read back: identical; imported onto v1 (a whole model): the same weights.
    const out = path.join(tmpRoot, 'export-peft');
    await exportChatModel(registry.dir(v3.version), 'peft', out);
    const back = readPeftAdapter(out);
    expect(back.config).toEqual(combined.config);
    for (const [n, t] of combined.tensors) expect(back.tensors.get(n)!.data, n).toEqual(t.data);
    const v4 = await registry.registerChatAdapter(out, 'v1', { source: 'import' });
    expect(maxWeightDiff(loadChatModelVersion(registry.dir(v4.version)).model, served.model)).toBe(0);
  });
});
