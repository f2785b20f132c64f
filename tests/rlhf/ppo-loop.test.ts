/**
 * Proof that PPO works on a known taste: the toy SFT policy quotes its passage about a third of
 * the time; with the simulated users' rule as the reward, a few PPO iterations on the rated
 * questions make it quote clearly more often on questions it was never trained on in RLHF, at a
 * small KL to the SFT policy.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useBackend } from '../model/helpers.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { evaluatePolicy } from '../../src/training/rlhf/evaluate.ts';
import { teamllmEpisodes } from '../../src/training/rlhf/episodes.ts';
import { trainPpo, type PpoStepStats } from '../../src/training/rlhf/ppo.ts';
import { tasteReward } from '../../src/training/rlhf/taste-reward.ts';
import { loadOrTrainToyPolicy, toyQuestions, TOY_MAX_ANSWER_TOKENS } from '../../src/training/rlhf/toy-world.ts';
import { QUOTES_SOURCE } from '../../src/training/simulated-users.ts';

await useBackend('wasm');
const { model, tokenizer } = await loadOrTrainToyPolicy(path.join(import.meta.dirname, 'fixtures', 'toy-sft'));
const questions = toyQuestions();
const layout = { blockSize: model.config.blockSize, maxTokens: TOY_MAX_ANSWER_TOKENS };

describe('PPO on the simulated users\' taste', () => {
  it('raises the preferred-behaviour rate on held-out questions at bounded KL', async () => {
    const heldOut = questions.filter((q) => q.split === 'test');
    const reward = tasteReward(QUOTES_SOURCE);
    const evaluate = () => evaluatePolicy(model, teamllmEpisodes(tokenizer, layout, model.config.vocabSize), heldOut, { reward, taste: QUOTES_SOURCE, samplesPerPrompt: 8, seed: 9 });
    const before = await evaluate();
    expect(before.kl).toBeCloseTo(0, 5); // no adapter yet: the policy is the reference
    expect(before.preferredRate).toBeGreaterThan(0.1); // the SFT policy quotes sometimes: there is variance to learn from
    expect(before.preferredRate).toBeLessThan(0.6);
    const steps: PpoStepStats[] = [];
    const r = await trainPpo({
      model,
      tokenizer,
      prompts: questions.filter((q) => q.split === 'train'),
      reward,
      layout,
      steps: 8,
      promptsPerStep: 4,
      samplesPerPrompt: 4,
      ppoEpochs: 2,
      learningRate: 3e-3,
      lora: { rank: 4, alpha: 8 },
      initKlCoef: 0.05,
      targetKl: 3,
      seed: 1,
      onStep: (s) => void steps.push(s),
    });
    const after = await evaluate();
    LoraAdapter.detach(model);
    expect(steps).toHaveLength(8);
    expect(after.preferredRate).toBeGreaterThan(before.preferredRate + 0.15);
    expect(after.reward).toBeGreaterThan(before.reward);
    expect(after.kl).toBeGreaterThan(0);
    expect(after.kl).toBeLessThan(5);
    // Reward over training went up (last three iterations vs the first three).
    const mean = (xs: PpoStepStats[]) => xs.reduce((a, s) => a + s.reward, 0) / xs.length;
    expect(mean(steps.slice(-3))).toBeGreaterThan(mean(steps.slice(0, 3)));
    r.adapter.dispose();
    r.valueHead.dispose();
  }, 120_000);
});
