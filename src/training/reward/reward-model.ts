/**
 * The contract between the reward model (`teamllm train reward`) and what uses it (PPO, reports).
 * Kept in its own small file so the RLHF code can be written against it.
 */
import type { RatedExample } from '../simulated-users.ts';

export interface RewardModel {
  /** Where it was loaded from and what it was measured at. */
  readonly info: { name: string; dir: string; baseVersion: string; metrics: Record<string, number> };
  /** One scalar per example: higher = users like it more (logit of 👍). */
  score(batch: readonly RatedExample[]): Promise<number[]>;
  dispose(): void;
}
