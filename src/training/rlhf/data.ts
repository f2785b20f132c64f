/**
 * RLHF's data from the feedback store, split into train and held-out by question (the reward
 * model's split, `rewardData`, so a question the reward model held out is held out here too):
 *
 * - prompts: the distinct questions users asked, with the passages retrieval gave them (PPO);
 * - votes: every answer with a net 👍 or 👎 (KTO);
 * - pairs: a liked and a disliked answer to the same question (DPO).
 */
import type { BotStore } from '../../core/index.ts';
import { rewardData, type RewardExample, type RewardSplit } from '../feedback-datasets.ts';
import type { PreferencePair, Vote } from './offline.ts';
import type { RlhfPrompt } from './episodes.ts';

export interface RlhfSplit {
  prompts: RlhfPrompt[];
  votes: Vote[];
  pairs: PreferencePair[];
}

export interface RlhfData {
  train: RlhfSplit;
  heldOut: RlhfSplit;
  stats: { votes: number; up: number; down: number; pairs: number; questions: number; heldOutQuestions: number };
}

function prompt(ex: RewardExample): RlhfPrompt {
  return { question: ex.question, passages: ex.passages };
}

function convert(split: RewardSplit): RlhfSplit {
  const seen = new Map<string, RlhfPrompt>();
  for (const v of split.votes) if (!seen.has(v.questionKey)) seen.set(v.questionKey, prompt(v));
  return {
    prompts: [...seen.values()],
    votes: split.votes.map((v) => ({ prompt: prompt(v), answer: v.answer, liked: v.label })),
    pairs: split.pairs.map((p) => ({ prompt: prompt(p.chosen), chosen: p.chosen.answer, rejected: p.rejected.answer })),
  };
}

export async function rlhfData(store: BotStore, options: { heldOutFraction?: number; seed?: number; anonymousVotes?: boolean } = {}): Promise<RlhfData> {
  const d = await rewardData(store, options);
  return { train: convert(d.train), heldOut: convert(d.heldOut), stats: d.stats };
}
