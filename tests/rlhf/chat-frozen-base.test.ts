/**
 * The RLHF job and the reward model on an imported base hold it once: the policy's and the reward
 * model's matrices are the engine's own arrays, frozen in their stored dtype (no float32 copy),
 * also over an adapter version (its merged matrices frozen as float32); the frozen policy's
 * log-probs equal the float32 copy's; the QA check's merge of a trained adapter into the engine
 * writes into none of the arrays the frozen policy still reads.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { Random } from '../../src/model/random.ts';
import type { GPT } from '../../src/model/gpt.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { inspectHfChatModel } from '../../src/model/import/llama-checkpoint.ts';
import type { WeightMatrix } from '../../src/model/import/weights.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { mergeLoraIntoChatModel, trainableFromChatModel } from '../../src/model/lora/imported-base.ts';
import { readPeftAdapter, writePeftAdapter } from '../../src/model/lora/peft.ts';
import { chatEpisodes } from '../../src/training/rlhf/chat-episodes.ts';
import { disposePolicy, loadPolicy } from '../../src/training/rlhf/job-inputs.ts';
import { collateEpisodes, sequenceLogProbs } from '../../src/training/rlhf/policy.ts';
import { openRewardBase } from '../../src/training/reward/reward-base.ts';
import { HEAD_BIAS, HEAD_WEIGHT } from '../../src/training/reward/model.ts';
import { loadRewardModel, rewardDir, saveRewardModel } from '../../src/training/reward/store.ts';
import { LlamaModel } from '../../src/model/import/llama.ts';
import { tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-chat-frozen-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

await useBackend('cpu');
writeHfChatFolder(path.join(tmpRoot, 'qwen3'), tinyChatModel('qwen3', 3));
const registry = new ModelRegistry(path.join(tmpRoot, 'home'));
await registry.registerChatModel(inspectHfChatModel(path.join(tmpRoot, 'qwen3')));

function randomAdapter(gpt: GPT, seed: number): LoraAdapter {
  const adapter = LoraAdapter.create(gpt, { rank: 2, alpha: 4, targets: 'all' });
  const rng = new Random(seed);
  adapter.setParams(new Map(adapter.paramNames.map((n) => [n, tf.keep(tf.tensor(rng.normalArray(adapter.params.get(n)!.size, 0.2), adapter.params.get(n)!.shape))] as [string, tf.Tensor])));
  return adapter;
}

/** Every 2-D weight of the trainable model is a frozen matrix, the engine's very array. */
function expectSharedWithEngine(gpt: GPT, engine: LlamaModel): void {
  for (const [name, t] of gpt.params) expect(t.rank, `${name} is a tensor`).toBe(1);
  const weights = engine.weights();
  let matrices = 0;
  for (const [name, w] of weights) {
    if (w instanceof Float32Array) continue;
    expect(gpt.frozen.get(name)?.data, name).toBe(w.data);
    matrices += 1;
  }
  expect(gpt.frozen.size).toBe(matrices);
}

function logProbs(gpt: GPT, vocabSize: number, tokenizer: Parameters<typeof chatEpisodes>[0], adapter?: LoraAdapter): number[] {
  const codec = chatEpisodes(tokenizer, { maxAnswerTokens: 8, maxTokens: 128, vocabSize });
  const episodes = ['yes', 'no, never', 'not really'].map((a, i) => codec.episode({ question: `Question ${i} about leave?`, passages: [] }, a));
  const batch = collateEpisodes(episodes, codec.pad);
  if (adapter) adapter.attach(gpt);
  const out = tf.tidy(() => Array.from(sequenceLogProbs(gpt, batch).dataSync()));
  if (adapter) LoraAdapter.detach(gpt);
  return out;
}

function expectClose(a: number[], b: number[], tolerance: number): void {
  expect(a).toHaveLength(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `log-prob ${i}: ${a[i]} vs ${b[i]}`).toBeLessThan(tolerance * Math.max(1, Math.abs(b[i]!)));
}

describe('RLHF and the reward model on an imported base hold it once', () => {
  it('the policy of an imported version: frozen matrices shared with its engine, log-probs of the float32 copy', async () => {
    const policy = await loadPolicy({ dir: registry.dir('v1'), version: 'v1' }, 8);
    if (policy.kind !== 'chat') throw new Error('expected the imported model');
    expectSharedWithEngine(policy.gpt, policy.chat.model);
    const full = trainableFromChatModel(policy.chat.model);
    const { vocabSize } = full.config;
    expectClose(logProbs(policy.gpt, vocabSize, policy.chat.tokenizer), logProbs(full, vocabSize, policy.chat.tokenizer), 1e-5);
    full.dispose();
    disposePolicy(policy);
  });

  it("over an adapter version: its merged float32 matrices frozen as they are; the QA check's merge leaves the policy's arrays as they were", async () => {
    const v1 = await loadPolicy({ dir: registry.dir('v1'), version: 'v1' }, 8);
    const first = randomAdapter(v1.gpt, 21);
    const adapterDir = path.join(tmpRoot, 'adapter-v1');
    await writePeftAdapter(adapterDir, first, { baseModel: null });
    first.dispose();
    disposePolicy(v1);
    const v2 = (await registry.registerChatAdapter(adapterDir, 'v1', { source: 'sft' })).version;

    const policy = await loadPolicy({ dir: registry.dir(v2), version: v2 }, 8);
    if (policy.kind !== 'chat') throw new Error('expected the imported model');
    const { gpt, chat } = policy;
    expectSharedWithEngine(gpt, chat.model);
    expect(gpt.frozen.get('model.layers.0.self_attn.q_proj.weight')!.dtype).toBe('f32');
    const full = trainableFromChatModel(chat.model);
    const { vocabSize } = full.config;
    // The RLHF adapter on top of the merged version, as the job trains it.
    const second = randomAdapter(gpt, 22);
    const before = logProbs(gpt, vocabSize, chat.tokenizer, second);
    expectClose(before, logProbs(full, vocabSize, chat.tokenizer, second), 1e-5);

    // The QA check after training: the adapter merged into the engine, a new engine.
    const snapshot = new Map([...gpt.frozen].map(([name, w]) => [name, Float32Array.from(new Float32Array(w.data.buffer, w.data.byteOffset, w.data.byteLength / 4))]));
    const dir = path.join(tmpRoot, 'adapter-rlhf');
    await writePeftAdapter(dir, second, { baseModel: null });
    const merged = mergeLoraIntoChatModel(chat.model, readPeftAdapter(dir));
    for (const [name, w] of gpt.frozen) {
      const now = new Float32Array(w.data.buffer, w.data.byteOffset, w.data.byteLength / 4);
      expect(now, name).toEqual(snapshot.get(name));
      expect((merged.weights().get(name) as WeightMatrix).data === w.data, `${name} is merged into a new array`).toBe(!name.includes('_proj'));
    }
    expect(logProbs(gpt, vocabSize, chat.tokenizer, second)).toEqual(before);
    second.dispose();
    full.dispose();
    disposePolicy(policy);
  });

  it("the reward model's base: frozen matrices, no float32 copy; on the policy's version it reads the policy's engine", async () => {
    const base = await openRewardBase(registry.dir('v1'));
    expect(base.kind).toBe('chat');
    for (const [name, t] of base.model.params) expect(t.rank, `${name} is a tensor`).toBe(1);
    expect(base.model.frozen.has('model.layers.0.mlp.down_proj.weight')).toBe(true);
    // A reward model on v1 (random adapter and head, its gate passed), saved as the trainer saves it.
    const adapter = randomAdapter(base.model, 31);
    adapter.meta = { name: 'rm' };
    const C = base.model.config.nEmbd;
    const head = new Map<string, tf.Tensor>([[HEAD_WEIGHT, tf.keep(tf.tensor2d(new Random(32).normalArray(C, 0.5), [C, 1]))], [HEAD_BIAS, tf.keep(tf.tensor1d([0.1]))]]);
    const home = path.join(tmpRoot, 'home');
    await saveRewardModel(rewardDir(home, 'rm'), {
      adapter, head, saveAdapter: base.saveAdapter,
      config: { format: 'teamllm-reward/1', name: 'rm', base: { version: 'v1', dir: registry.dir('v1'), fingerprint: adapter.base.fingerprint, config: base.model.config }, encoding: base.encoding, metrics: {}, gate: { passed: true, reasons: [] }, data: {}, trainedAt: new Date().toISOString() },
    });
    adapter.dispose();
    tf.dispose([...head.values()]);
    base.model.dispose();

    const answers = [{ question: 'Is leave paid?', passages: [], answer: 'yes' }, { question: 'Laptop?', passages: [{ text: 'IT hands out laptops.' }], answer: 'not really' }];
    const own = await loadRewardModel(home, 'rm');
    const alone = await own.score(answers);
    own.dispose();
    const policy = await loadPolicy({ dir: registry.dir('v1'), version: 'v1' }, 8);
    if (policy.kind !== 'chat') throw new Error('expected the imported model');
    const sharing = await loadRewardModel(home, 'rm', { sharedChat: { dir: registry.dir('v1'), model: policy.chat.model, tokenizer: policy.chat.tokenizer } });
    expect(await sharing.score(answers)).toEqual(alone);
    sharing.dispose();
    // The shared engine is the one read: another model given as v1 is refused by the adapter's base check.
    const other = new LlamaModel(policy.chat.model.config, new Map([...policy.chat.model.weights()].map(([n, w]) => [n, w instanceof Float32Array ? w.map((v) => v * 1.5) : w])));
    await expect(loadRewardModel(home, 'rm', { sharedChat: { dir: registry.dir('v1'), model: other, tokenizer: policy.chat.tokenizer } })).rejects.toThrow(/cannot be used on v1/);
    disposePolicy(policy);
  });
});
