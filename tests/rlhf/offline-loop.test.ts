/**
 * Proof that DPO and KTO work from the feedback store: the toy SFT policy answers the users'
 * questions, simulated users (they like answers that quote the passage) rate them, and DPO on pairs
 * (a liked and a disliked answer to one question) or KTO on the unpaired 👍/👎 makes the policy
 * quote clearly more often on questions nobody rated, at a small KL to the SFT policy.
 */
import { promises as fs } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from '../model/helpers.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { rlhfData } from '../../src/training/rlhf/data.ts';
import { evaluatePolicy } from '../../src/training/rlhf/evaluate.ts';
import { teamllmEpisodes } from '../../src/training/rlhf/episodes.ts';
import { trainOffline, type OfflineStepStats } from '../../src/training/rlhf/offline.ts';
import { QUOTES_SOURCE } from '../../src/training/simulated-users.ts';
import { ratedStore, toySetup } from './helpers.ts';

await useBackend('wasm');
const setup = await toySetup();
const { model, tokenizer, questions, layout } = setup;
const { store, dir, votes } = await ratedStore(setup);
afterAll(async () => {
  await store.close();
  await fs.rm(dir, { recursive: true, force: true });
});

describe.each(['dpo', 'kto'] as const)('%s from simulated 👍/👎', (algo) => {
  it('raises the preferred-behaviour rate on held-out questions at bounded KL', async () => {
    expect(votes.rated).toBe(120);
    expect(votes.up).toBeGreaterThan(20); // both kinds of answers were given and rated
    expect(votes.down).toBeGreaterThan(20);
    const data = await rlhfData(store, { heldOutFraction: 0 });
    if (algo === 'dpo') expect(data.train.pairs.length).toBeGreaterThan(100);
    else expect(data.train.votes.length).toBe(120);
    const heldOut = questions.filter((q) => q.split === 'test');
    const evaluate = () => evaluatePolicy(model, teamllmEpisodes(tokenizer, layout, model.config.vocabSize), heldOut, { taste: QUOTES_SOURCE, samplesPerPrompt: 8, seed: 9 });
    const before = await evaluate();
    const steps: OfflineStepStats[] = [];
    const r = await trainOffline({
      model,
      tokenizer,
      layout,
      algo,
      pairs: data.train.pairs,
      votes: data.train.votes,
      steps: 30,
      batchSize: 8,
      learningRate: 1e-3,
      beta: 0.5,
      lora: { rank: 4, alpha: 8 },
      onStep: (s) => void steps.push(s),
    });
    const after = await evaluate();
    LoraAdapter.detach(model);
    expect(after.preferredRate).toBeGreaterThan(before.preferredRate + 0.15);
    expect(after.kl).toBeGreaterThan(0);
    expect(after.kl).toBeLessThan(5);
    // The implicit reward separates liked from disliked answers by the end.
    const last = steps.slice(-5);
    expect(last.reduce((a, s) => a + s.rewardLiked - s.rewardDisliked, 0) / last.length).toBeGreaterThan(0);
    r.adapter.dispose();
  }, 120_000);
});
