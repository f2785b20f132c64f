/**
 * How far an RLHF policy has moved: reward (the reward model's, or without one the implicit reward
 * margin on the users' held-out votes), KL to the reference, entropy.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { GPT } from '../../model/gpt.ts';
import { writeJsonAtomic } from '../../model/files.ts';
import type { RewardModel } from '../reward/reward-model.ts';
import type { Taste } from '../simulated-users.ts';
import type { RlhfData, RlhfSplit } from './data.ts';
import { evaluatePolicy } from './evaluate.ts';
import { collateEpisodes, sequenceLogProbs, withoutAdapter } from './policy.ts';
import type { EpisodeCodec, RlhfPrompt } from './episodes.ts';
import type { RlhfMeasure } from './gate.ts';

/** Mean (liked − disliked) implicit reward log π/π_ref on held-out votes or pairs: 0 while policy = reference. */
export function implicitMargin(gpt: GPT, codec: EpisodeCodec, split: Pick<RlhfSplit, 'pairs' | 'votes'>): number {
  const { pad } = codec;
  const items = split.pairs.length
    ? split.pairs.flatMap((p) => [
        { ep: codec.episode(p.prompt, p.chosen), sign: 1 },
        { ep: codec.episode(p.prompt, p.rejected), sign: -1 },
      ])
    : split.votes.map((v) => ({ ep: codec.episode(v.prompt, v.answer), sign: v.liked ? 1 : -1 }));
  if (!items.length) return NaN;
  const logps = (ref: boolean) => {
    const out: number[] = [];
    for (let i = 0; i < items.length; i += 16) {
      const batch = collateEpisodes(items.slice(i, i + 16).map((x) => x.ep), pad);
      const t = ref ? withoutAdapter(gpt, () => tf.tidy(() => sequenceLogProbs(gpt, batch))) : tf.tidy(() => sequenceLogProbs(gpt, batch));
      out.push(...t.dataSync());
      t.dispose();
      batch.x.dispose();
    }
    return out;
  };
  const pol = logps(false);
  const ref = logps(true);
  const liked = items.map((x, i) => (x.sign > 0 ? pol[i]! - ref[i]! : NaN)).filter(Number.isFinite);
  const disliked = items.map((x, i) => (x.sign < 0 ? pol[i]! - ref[i]! : NaN)).filter(Number.isFinite);
  const mean = (a: number[]) => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0);
  return mean(liked) - mean(disliked);
}

export type MeasurePolicy = (label: string, step: number) => Promise<RlhfMeasure>;

export function policyMeasurer(o: {
  gpt: GPT;
  codec: EpisodeCodec;
  data: RlhfData;
  evalPrompts: RlhfPrompt[];
  reward: RewardModel | undefined;
  evalSamples: number;
  seed: number;
  taste: Taste | undefined;
  log: (line: string) => void;
}): MeasurePolicy {
  const { gpt, codec, data, evalPrompts, reward, log } = o;
  return async (label, step) => {
    const policy = await evaluatePolicy(gpt, codec, evalPrompts, { samplesPerPrompt: o.evalSamples, seed: o.seed + 1000, ...(reward ? { reward } : {}), ...(o.taste ? { taste: o.taste } : {}) });
    const m: RlhfMeasure = reward
      ? { reward: policy.reward, rewardKind: 'reward-model', kl: policy.kl, entropy: policy.entropy, policy }
      : { reward: implicitMargin(gpt, codec, data.heldOut.votes.length ? data.heldOut : data.train), rewardKind: 'implicit-margin', kl: policy.kl, entropy: policy.entropy, policy };
    // The users' own held-out votes, independent of the reward model (only when there are some).
    if (reward && data.heldOut.votes.length) m.heldOutMargin = implicitMargin(gpt, codec, data.heldOut);
    const margin = m.heldOutMargin !== undefined ? `, held-out votes margin ${m.heldOutMargin.toFixed(3)}` : '';
    log(`${label} (step ${step}): reward ${m.reward.toFixed(3)} (${m.rewardKind})${margin}, KL ${m.kl.toFixed(3)}, entropy ${m.entropy.toFixed(3)}${o.taste ? `, ${o.taste.name} ${(100 * policy.preferredRate).toFixed(1)}%` : ''}`);
    return m;
  };
}

/** before.json / after.json: the measure with the first 20 sampled answers (enough to read, not the whole run). */
export async function writeMeasure(file: string, m: RlhfMeasure): Promise<void> {
  await writeJsonAtomic(file, { ...m, policy: { ...m.policy, examples: m.policy?.examples.slice(0, 20) } });
}
