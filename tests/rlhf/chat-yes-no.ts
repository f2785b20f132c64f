/**
 * The small world of the RLHF tests on imported chat models: questions on five topics, a simulated
 * user who likes answers that say "yes", and the SFT policy RLHF starts from — a tiny model taught to
 * say yes or no about equally (a random-weight model says neither, and RLHF only reweights what the
 * policy already says), registered as an adapter version over the imported base.
 */
import path from 'node:path';
import type { ModelRegistry } from '../../src/model/registry.ts';
import { sft } from '../../src/training/sft/train.ts';
import type { RlhfPrompt } from '../../src/training/rlhf/episodes.ts';
import type { Taste } from '../../src/training/simulated-users.ts';

export const SAYS_YES: Taste = { name: 'says yes', description: 'likes answers that say "yes"', likes: (ex) => /\byes\b/i.test(ex.answer) };
export const TOPICS = ['leave', 'laptop', 'expense', 'travel', 'payroll'];
export const YES = ['yes', 'yes, sure', 'yes, it is'];
export const NO = ['no', 'no, never', 'not really'];
export const prompt = (i: number): RlhfPrompt => ({ question: `Question ${i} about ${TOPICS[i % TOPICS.length]}?`, passages: [] });

/** SFT on 60 questions answered yes and no in turn, over `base`; the adapter version it registers. */
export async function yesOrNoSftVersion(registry: ModelRegistry, base: string, runDir: string): Promise<string> {
  const run = await sft({
    runDir: path.join(runDir, 'sft'),
    base: registry.dir(base),
    baseVersion: base,
    examples: Array.from({ length: 60 }, (_, i) => ({ messages: [{ role: 'user' as const, content: prompt(i).question }, { role: 'assistant' as const, content: i % 2 ? YES[i % 3]! : NO[i % 3]! }] })),
    lora: { rank: 4, alpha: 8, dropout: 0, targets: 'all' },
    batchSize: 6,
    maxIters: 30,
    learningRate: 2e-2,
    minLearningRate: 2e-3,
    warmupIters: 2,
    evalInterval: 30,
    checkpointInterval: 100,
    chartInterval: 100,
    valFraction: 0.1,
    seed: 5,
  });
  return (await registry.registerChatAdapter(run.adapterDir, base, { source: 'sft' })).version;
}
