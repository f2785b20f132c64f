/**
 * A reward model that is the simulated users' rule itself (+1 liked, −1 disliked, no noise): the
 * ceiling a learned reward model can reach. Tests and the demo use it to check PPO on its own;
 * the real loop (`teamllm train rlhf --algo ppo`) loads the learned reward model instead.
 */
import type { RewardModel } from '../reward/reward-model.ts';
import type { Taste } from '../simulated-users.ts';

export function tasteReward(taste: Taste): RewardModel {
  return {
    info: { name: `taste:${taste.name}`, dir: '', baseVersion: '', metrics: {} },
    score: async (batch) => batch.map((ex) => (taste.likes(ex) ? 1 : -1)),
    dispose: () => {},
  };
}
