/**
 * The reward model on an imported chat model (a tiny random-weight Qwen3 and Llama 3 registered as
 * `teamllm model import` does): inputs in the model's own chat template, the score read at the
 * end-of-turn token closing the answer; the gradients of the head and the LoRA tensors against
 * finite differences; trained on a simulated user's pairs and votes it ranks held-out answers,
 * passes its gate, is saved with PEFT's adapter files and a head, loads back with the same scores,
 * and a run stopped and resumed ends with the uninterrupted run's weights.
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
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { trainableFromChatModel } from '../../src/model/lora/imported-base.ts';
import { isPeftAdapterFolder, readPeftAdapter } from '../../src/model/lora/peft.ts';
import { readSafetensors } from '../../src/model/safetensors.ts';
import { chatEpisodes } from '../../src/training/rlhf/chat-episodes.ts';
import { chatRewardInputs } from '../../src/training/reward/reward-base.ts';
import { combinedLoss, createHead, HEAD_BIAS, HEAD_WEIGHT, pairLoss, rewardBatch, rewardScores, voteLoss } from '../../src/training/reward/model.ts';
import { trainRewardModel, type RewardTrainOptions } from '../../src/training/reward/train.ts';
import { loadRewardModel, readRewardConfig, setCurrentRewardModel } from '../../src/training/reward/store.ts';
import type { RewardData } from '../../src/training/feedback-datasets.ts';
import { tinyChatModel, writeHfChatFolder, type TinyArch } from '../model/import/tiny-llama.ts';
import { expectGradientsMatch } from '../lora/adapter-gradients.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-chat-reward-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

await useBackend('wasm');
const home = path.join(tmpRoot, 'home');
const registry = new ModelRegistry(home);
for (const [i, arch] of (['qwen3', 'llama'] as TinyArch[]).entries()) {
  writeHfChatFolder(path.join(tmpRoot, arch), tinyChatModel(arch, 11 + i));
  await registry.registerChatModel(inspectHfChatModel(path.join(tmpRoot, arch)));
}
const VERSION: Record<'qwen3' | 'llama', string> = { qwen3: 'v1', llama: 'v2' };

// The simulated user likes answers that say "yes".
const TOPICS = ['leave', 'laptop', 'expense', 'travel', 'payroll'];
const YES = ['yes', 'yes, sure', 'yes, it is', 'yes of course'];
const NO = ['no', 'no, never', 'not really', 'no way'];
const example = (i: number, answer: string) => ({ question: `Question ${i} about ${TOPICS[i % TOPICS.length]}?`, passages: [] as { text: string }[], answer, answerId: `${i}-${answer}`, questionKey: `q${i}`, model: 'tiny@v1' });
const split = (from: number, n: number): RewardData['train'] => ({
  pairs: Array.from({ length: n }, (_, k) => ({ questionKey: `q${from + k}`, chosen: example(from + k, YES[k % 4]!), rejected: example(from + k, NO[(k + 1) % 4]!) })),
  votes: Array.from({ length: n }, (_, k) => {
    const liked = k % 2 === 0;
    return { ...example(from + k, liked ? YES[(k + 2) % 4]! : NO[(k + 3) % 4]!), label: liked, up: liked ? 1 : 0, down: liked ? 0 : 1 };
  }),
});
const data = { train: split(0, 32), heldOut: split(100, 12) };

describe('reward model inputs on an imported chat model', () => {
  it("are the served prompt, the answer and the end-of-turn token closing it (the token the head reads)", () => {
    const chat = loadChatModelVersion(registry.dir('v1'));
    const inputs = chatRewardInputs(chat.tokenizer, 2048);
    const imEnd = chat.tokenizer.idOf('<|im_end|>')!;
    const ex = { question: 'Is it yes?', passages: [{ text: 'Employees get twenty days.' }], answer: 'yes, sure' };
    const ids = inputs.encode(ex);
    // The DPO episode of the same question and answer, as the bot asks it.
    const e = chatEpisodes(chat.tokenizer, { maxAnswerTokens: 64, maxTokens: 4096 }).episode({ question: ex.question, passages: ex.passages }, ex.answer);
    expect(ids).toEqual([...e.prompt, ...e.answer]);
    expect(ids.at(-1)).toBe(imEnd);
    expect(chat.tokenizer.decode(ids, { skipSpecial: false })).toMatch(/<\|im_start\|>user\nPassages:.*Question: Is it yes\?<\|im_end\|>\n<\|im_start\|>assistant\nyes, sure<\|im_end\|>$/s);
    expect(inputs.pad).toBe(imEnd);
    // Too long: the answer is cut, the end-of-turn token stays last; then passages go.
    const cut = chatRewardInputs(chat.tokenizer, e.prompt.length + 3).encode({ ...ex, answer: 'yes '.repeat(40) });
    expect(cut).toHaveLength(e.prompt.length + 3);
    expect(cut.at(-1)).toBe(imEnd);
    const short = chatRewardInputs(chat.tokenizer, e.prompt.length - 5).encode(ex);
    expect(chat.tokenizer.decode(short, { skipSpecial: false })).not.toMatch(/Passages:/);
    expect(short.at(-1)).toBe(imEnd);
    expect(() => chatRewardInputs(chat.tokenizer, 4).encode(ex)).toThrow(/does not fit the reward model's 4 tokens/);
  });

  for (const arch of ['qwen3', 'llama'] as const) {
    it(`the gradients of the head and every LoRA tensor match finite differences (tiny ${arch})`, () => {
      const chat = loadChatModelVersion(registry.dir(VERSION[arch]));
      const model = trainableFromChatModel(chat.model);
      const inputs = chatRewardInputs(chat.tokenizer, 256);
      const adapter = LoraAdapter.create(model, { rank: 2, alpha: 3, dropout: 0, targets: 'all' });
      const rng = new Random(31);
      adapter.setParams(new Map(adapter.paramNames.map((n) => [n, tf.keep(tf.tensor(rng.normalArray(adapter.params.get(n)!.size, 0.2), adapter.params.get(n)!.shape))] as [string, tf.Tensor])));
      adapter.attach(model);
      const head = createHead(model.config.nEmbd, 4);
      head.set(HEAD_BIAS, tf.keep(tf.tensor1d([0.3])));
      const pairs = data.train.pairs.slice(0, 2);
      const votes = data.train.votes.slice(0, 3);
      const batch = rewardBatch([...pairs.map((p) => inputs.encode(p.chosen)), ...pairs.map((p) => inputs.encode(p.rejected)), ...votes.map((v) => inputs.encode(v))], inputs.pad);
      const names = [...adapter.paramNames, HEAD_WEIGHT, HEAD_BIAS];
      const lossOf = (ps: tf.Tensor[]) => {
        const s = rewardScores(model, batch, new Map([...model.params, ...names.map((n, i) => [n, ps[i]!] as [string, tf.Tensor])]));
        return combinedLoss({ pairs: pairLoss(tf.slice(s, [0], [2]), tf.slice(s, [2], [2])), votes: voteLoss(tf.slice(s, [4], [3]), votes.map((v) => v.label)) }, { pairs: 1, votes: 1 }) as tf.Scalar;
      };
      const loss = expectGradientsMatch(names, [...adapter.paramList(), head.get(HEAD_WEIGHT)!, head.get(HEAD_BIAS)!], lossOf, { h: 3e-3, rng });
      expect(loss).toBeGreaterThan(0);
      [batch.x, batch.last, ...head.values()].forEach((t) => t.dispose());
      LoraAdapter.detach(model);
      adapter.dispose();
      model.dispose();
    });
  }
});

describe('training a reward model on an imported chat model', () => {
  const opts = (run: string, name: string): RewardTrainOptions => ({
    runDir: path.join(home, 'runs', run),
    outDir: path.join(home, 'reward', name),
    name,
    base: registry.dir('v1'),
    baseVersion: 'v1',
    lora: { rank: 4, alpha: 8, dropout: 0, targets: 'all' },
    maxIters: 16,
    batchSize: 8,
    learningRate: 1e-2,
    warmupIters: 2,
    evalInterval: 8,
    checkpointInterval: 5,
    seed: 3,
    gate: { minHeldOutPairs: 10, minHeldOutVotes: 10 },
  });

  it('ranks held-out answers, passes its gate, is saved in PEFT format with its head and loads back with the same scores; resumed == uninterrupted', { timeout: 300_000 }, async () => {
    const lines: string[] = [];
    const whole = await trainRewardModel(opts('1-reward', 'rm'), data, { log: (l) => lines.push(l) });
    console.log(`reward model on the tiny Qwen3: held-out pair accuracy ${whole.before.accuracy.value} -> ${whole.after.accuracy.value}, vote AUC ${whole.before.auc.value.toFixed(3)} -> ${whole.after.auc.value.toFixed(3)}, ${whole.msPerStep.toFixed(0)} ms/step`);
    expect(whole.status).toBe('completed');
    expect(whole.after.accuracy.value).toBeGreaterThanOrEqual(0.9);
    expect(whole.after.auc.value).toBeGreaterThan(0.9);
    expect(whole.gate.passed).toBe(true);
    expect(whole.lora.targets).toContain('mlp_gate'); // "all" read as the llama family names it
    // PEFT's adapter files, the head and the config that says how inputs are encoded.
    const dir = whole.dir!;
    expect(isPeftAdapterFolder(dir)).toBe(true);
    expect(readPeftAdapter(dir).tensors.has('model.layers.0.mlp.gate_proj.lora_A')).toBe(true);
    const config = await readRewardConfig(dir);
    expect(config.encoding).toMatchObject({ template: 'chat' });
    expect(config.base.version).toBe('v1');
    await setCurrentRewardModel(home, 'rm');
    const rm = await loadRewardModel(home);
    const held = data.heldOut.pairs;
    const scores = await rm.score([...held.map((p) => p.chosen), ...held.map((p) => p.rejected)]);
    const right = held.filter((_, i) => scores[i]! > scores[held.length + i]!).length;
    expect(right / held.length).toBe(whole.after.accuracy.value);
    rm.dispose();

    // Stopped at step 7 and resumed: the same adapter and head, bit for bit.
    const stop = new AbortController();
    const stopped = await trainRewardModel(opts('2-reward', 'rm2'), data, { signal: stop.signal, onProgress: (ev) => void (ev.phase === 'train' && ev.step === 7 && stop.abort()) });
    expect(stopped).toMatchObject({ status: 'aborted', steps: 7, checkpointStep: 7 });
    const resumed = await trainRewardModel(opts('2-reward', 'rm2'), data);
    expect(resumed).toMatchObject({ status: 'completed', resumedFrom: 7, steps: 16 });
    for (const file of ['adapter_model.safetensors', 'head.safetensors']) {
      const a = await readSafetensors(path.join(whole.dir!, file));
      const b = await readSafetensors(path.join(resumed.dir!, file));
      expect(a.tensors.size).toBeGreaterThan(0);
      for (const [name, t] of a.tensors) expect(Array.from(b.tensors.get(name)!.data), `${file} ${name}`).toEqual(Array.from(t.data));
    }
  });
});
