/**
 * PPO on an imported chat model (a tiny random-weight Qwen3): the policy is the float32 trainable
 * copy with a fresh LoRA, the reference the same model with the adapter detached, answers sampled
 * in the model's own chat template. With the simulated user's rule as the reward it raises the
 * held-out preferred-answer rate at a bounded KL; the job (`teamllm train rlhf --algo ppo --base
 * <imported version>`) runs against a reward model learned on ANOTHER imported model (a tiny
 * Llama 3, another tokenizer: the answers' text is encoded for it its own way), on an SFT adapter
 * version as base, and registers one PEFT adapter over the imported model.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from '../model/helpers.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { inspectHfChatModel } from '../../src/model/import/llama-checkpoint.ts';
import { loadChatModelVersion } from '../../src/model/import/chat-manifest.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { trainableFromChatModel } from '../../src/model/lora/imported-base.ts';
import { readPeftAdapter } from '../../src/model/lora/peft.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { rewardData } from '../../src/training/feedback-datasets.ts';
import { trainRewardModel } from '../../src/training/reward/train.ts';
import { setCurrentRewardModel } from '../../src/training/reward/store.ts';
import { chatEpisodes } from '../../src/training/rlhf/chat-episodes.ts';
import { evaluatePolicy } from '../../src/training/rlhf/evaluate.ts';
import { trainPpo, type PpoStepStats } from '../../src/training/rlhf/ppo.ts';
import { runRlhfJob } from '../../src/training/rlhf/pipeline.ts';
import { tasteReward } from '../../src/training/rlhf/taste-reward.ts';
import { SimulatedUsers } from '../../src/training/simulated-users.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';
import { tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';
import { NO, SAYS_YES, YES, prompt, yesOrNoSftVersion } from './chat-yes-no.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-chat-ppo-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

await useBackend('wasm');
const home = path.join(tmpRoot, 'home');
const registry = new ModelRegistry(home);
writeHfChatFolder(path.join(tmpRoot, 'qwen3'), tinyChatModel('qwen3', 7));
writeHfChatFolder(path.join(tmpRoot, 'llama'), tinyChatModel('llama', 8));
await registry.registerChatModel(inspectHfChatModel(path.join(tmpRoot, 'qwen3'))); // v1: the policy's base
await registry.registerChatModel(inspectHfChatModel(path.join(tmpRoot, 'llama'))); // v2: the reward model's base


// The SFT policy PPO starts from says yes or no about equally (as in chat-dpo.test.ts), registered as v3 over v1.
const sftVersion = await yesOrNoSftVersion(registry, 'v1', tmpRoot);

describe('PPO on an imported chat model', () => {
  it('raises the held-out preferred-answer rate at a bounded KL', { timeout: 300_000 }, async () => {
    const model = trainableFromChatModel(loadChatModelVersion(registry.dir(sftVersion)).model);
    const codec = chatEpisodes(loadChatModelVersion(registry.dir('v1')).tokenizer, { maxAnswerTokens: 8, maxTokens: 128, vocabSize: model.config.vocabSize });
    const heldOut = Array.from({ length: 10 }, (_, i) => prompt(100 + i));
    const evaluate = () => evaluatePolicy(model, codec, heldOut, { taste: SAYS_YES, samplesPerPrompt: 8, seed: 9 });
    const before = await evaluate();
    expect(Math.abs(before.kl)).toBeLessThan(1e-5);
    expect(before.preferredRate).toBeGreaterThan(0.1);
    expect(before.preferredRate).toBeLessThan(0.7);
    const steps: PpoStepStats[] = [];
    const r = await trainPpo({
      model,
      episodes: codec,
      prompts: Array.from({ length: 40 }, (_, i) => prompt(i)),
      reward: tasteReward(SAYS_YES),
      baseVersion: sftVersion,
      steps: 8,
      promptsPerStep: 4,
      samplesPerPrompt: 4,
      ppoEpochs: 2,
      learningRate: 3e-3,
      lora: { rank: 4, alpha: 8, targets: 'all' },
      initKlCoef: 0.05,
      targetKl: 3,
      seed: 1,
      onStep: (s) => void steps.push(s),
    });
    const after = await evaluate();
    console.log(`PPO on the tiny Qwen3: preferred rate ${before.preferredRate.toFixed(3)} -> ${after.preferredRate.toFixed(3)}, KL ${after.kl.toFixed(3)} nats, reward ${steps[0]!.reward.toFixed(2)} -> ${steps.at(-1)!.reward.toFixed(2)}`);
    expect(r.status).toBe('completed');
    expect(steps).toHaveLength(8);
    expect(r.adapter.config.targets).toContain('mlp_gate');
    expect(r.adapter.base.version).toBe(sftVersion);
    expect(after.preferredRate).toBeGreaterThan(before.preferredRate + 0.15);
    expect(after.kl).toBeGreaterThan(0);
    expect(after.kl).toBeLessThan(5);
    LoraAdapter.detach(model);
    r.adapter.dispose();
    r.valueHead.dispose();
    model.dispose();
  });

  it('the job: a reward model learned on another imported model (another tokenizer), the SFT adapter version as base, one PEFT adapter over v1', { timeout: 300_000 }, async () => {
    // Users asked 40 questions; the bot answered each twice (yes and no); users voted by their taste.
    const store = new SqliteStore(path.join(home, 'teamllm.db'));
    const answers = [];
    for (let i = 0; i < 40; i++) {
      for (const [j, output] of [YES[i % 3]!, NO[i % 3]!].entries()) {
        answers.push(await store.saveAnswer({ platform: 'web', workspace: 't', channel: 'c', messageId: `${i}-${j}`, userId: `u${i % 4}`, question: prompt(i).question, passages: [], prompt: prompt(i).question, output, modelName: 'tiny', modelVersion: sftVersion, latencyMs: 1 }));
      }
    }
    await new SimulatedUsers({ taste: SAYS_YES, noise: 0, seed: 2 }).rate(store, answers);
    const data = await rewardData(store, { heldOutFraction: 0.3, seed: 0 });
    await store.close();
    const rm = await trainRewardModel(
      { runDir: path.join(home, 'runs', '1-reward'), outDir: path.join(home, 'reward', 'llama-rm'), name: 'llama-rm', base: registry.dir('v2'), baseVersion: 'v2', lora: { rank: 4, alpha: 8, dropout: 0, targets: 'all' }, maxIters: 16, batchSize: 8, learningRate: 1e-2, warmupIters: 2, seed: 3 },
      data,
    );
    expect(rm.gate.passed).toBe(true);
    await setCurrentRewardModel(home, 'llama-rm');

    const lines: string[] = [];
    const r = await runRlhfJob(
      { algo: 'ppo', base: sftVersion, steps: 4, promptsPerStep: 4, samplesPerPrompt: 4, ppoEpochs: 2, learningRate: 3e-3, rank: 2, alpha: 4, heldOutFraction: 0.3, evalSamples: 2, maxTokens: 8, skipQa: true, seed: 3 },
      { home, ...stageServices(home), runDir: path.join(home, 'runs', '2-rlhf'), taste: SAYS_YES, log: (l) => lines.push(l) },
    );
    console.log(`the PPO job on the tiny Qwen3 (reward model on the tiny Llama): reward ${r.before.reward.toFixed(3)} -> ${r.after.reward.toFixed(3)}, KL ${r.after.kl.toFixed(3)}, gate ${r.gate.passed ? 'passed' : 'kept back'}: ${r.gate.reasons.join('; ')}`);
    expect(lines.some((l) => /reward model "llama-rm"/.test(l))).toBe(true);
    expect(r.status).toBe('completed');
    expect(r.before.rewardKind).toBe('reward-model');
    expect(r.after.reward).toBeGreaterThan(r.before.reward); // the Llama reward model, reading the Qwen3 policy's answers as text
    expect(r.gate.reasons.join('\n')).toMatch(/KL/);
    const v = (await registry.get(r.modelVersion!))!;
    expect(v).toMatchObject({ kind: 'chat', parent: sftVersion, source: 'rlhf', gate: { passed: r.gate.passed } });
    expect(loadChatModelVersion(registry.dir(v.version)).manifest.adapter).toEqual({ base: 'v1' });
    expect(readPeftAdapter(registry.dir(v.version)).config).toMatchObject({ rank: 4 + 2 });
  });
});
