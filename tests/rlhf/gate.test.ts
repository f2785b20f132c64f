/**
 * The RLHF promotion gate (rlhfGate): each rule on its own, including the check against the
 * users' own held-out votes that a reward-model-judged run must also pass.
 */
import { describe, expect, it } from 'vitest';
import { rlhfGate, type RlhfMeasure } from '../../src/training/rlhf/pipeline.ts';

const qa = (f1: number) => ({ n: 25, exactMatch: 0.2, f1, containsGold: 0.3 }) as unknown as NonNullable<RlhfMeasure['qa']>;
const measure = (over: Partial<RlhfMeasure> = {}): RlhfMeasure => ({ reward: 0.1, rewardKind: 'reward-model', kl: 0, entropy: 1, heldOutMargin: 0, qa: qa(0.3), ...over });
const options = { completed: true, maxKl: 2, qaTolerance: 0, marginTolerance: 0, rewardName: 'rm-v1' };

describe('rlhfGate', () => {
  it('passes a run whose reward rose, within the KL bound, with the held-out votes and QA not down', () => {
    const g = rlhfGate(measure(), measure({ reward: 0.4, kl: 0.3, heldOutMargin: 0.2 }), options);
    expect(g.passed).toBe(true);
    expect(g.failed).toEqual([]);
    expect(g.reasons.join('\n')).toMatch(/reward \(rm-v1\) rose: 0\.100 → 0\.400/);
    expect(g.reasons.join('\n')).toMatch(/held-out votes agree/);
  });

  it("keeps back a run the reward model likes but the users' held-out votes do not (reward over-optimisation)", () => {
    const g = rlhfGate(measure(), measure({ reward: 0.9, kl: 0.5, heldOutMargin: -0.35 }), options);
    expect(g.passed).toBe(false);
    expect(g.failed).toHaveLength(1);
    expect(g.failed[0]).toMatch(/held-out votes disagree with the reward model: liked − disliked implicit reward fell 0\.000 → -0\.350/);
    // A tolerance lets small noise through, not a real drop.
    expect(rlhfGate(measure(), measure({ reward: 0.9, heldOutMargin: -0.05 }), { ...options, marginTolerance: 0.1 }).passed).toBe(true);
    expect(rlhfGate(measure(), measure({ reward: 0.9, heldOutMargin: -0.35 }), { ...options, marginTolerance: 0.1 }).passed).toBe(false);
  });

  it('skips the held-out-votes check when there are no held-out votes (or no reward model)', () => {
    const g = rlhfGate(measure({ heldOutMargin: undefined }), measure({ reward: 0.4, heldOutMargin: undefined }), options);
    expect(g.passed).toBe(true);
    expect(g.reasons.join('\n')).not.toMatch(/held-out votes/);
  });

  it('keeps back a run whose reward did not rise, whose KL is over the bound, whose QA fell, or that stopped', () => {
    expect(rlhfGate(measure(), measure({ reward: 0.1 }), options).failed[0]).toMatch(/did not rise/);
    expect(rlhfGate(measure(), measure({ reward: 0.4, kl: 2.5 }), options).failed[0]).toMatch(/KL to the SFT policy 2\.500 is over the bound 2/);
    expect(rlhfGate(measure(), measure({ reward: 0.4, qa: qa(0.2) }), options).failed[0]).toMatch(/QA accuracy dropped: f1 30\.0% → 20\.0%/);
    expect(rlhfGate(measure(), measure({ reward: 0.4 }), { ...options, completed: false }).passed).toBe(false);
  });
});
