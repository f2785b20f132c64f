/**
 * How a policy behaves on prompts: answers sampled from it (temperature 1, its own distribution),
 * scored by the reward model, checked against a known taste when there is one (simulated users),
 * and its KL to the frozen reference: E_y~π[log π(y|x) − log π_ref(y|x)], the sequence KL, estimated
 * from the same samples.
 */
import type { GPT } from '../../model/gpt.ts';
import { Random, mixSeed } from '../../model/random.ts';
import type { RewardModel } from '../reward/reward-model.ts';
import type { RatedExample, Taste } from '../simulated-users.ts';
import { answerLogProbs, sampleAnswers, withoutAdapter, type Episode } from './policy.ts';
import type { EpisodeCodec, RlhfPrompt } from './episodes.ts';

export interface PolicyEvaluation {
  n: number;
  /** Mean reward-model score of the answers (NaN without a reward model). */
  reward: number;
  /** Share of answers the taste likes (NaN without a taste). */
  preferredRate: number;
  /** Mean sequence KL(π‖π_ref) in nats. */
  kl: number;
  /** Mean per-token entropy of the policy on its answers, nats. */
  entropy: number;
  /** Mean answer length in tokens. */
  answerTokens: number;
  examples: (RatedExample & { liked?: boolean; score?: number })[];
}

export interface EvaluatePolicyOptions {
  reward?: RewardModel;
  taste?: Taste;
  samplesPerPrompt?: number;
  seed?: number;
}

/** `codec`: the policy's prompts and answers as ids (`teamllmEpisodes`, or an imported model's `chatEpisodes`). */
export async function evaluatePolicy(model: GPT, codec: EpisodeCodec, prompts: readonly RlhfPrompt[], options: EvaluatePolicyOptions): Promise<PolicyEvaluation> {
  const { stopIds, pad } = codec;
  const rng = new Random(mixSeed(options.seed ?? 5, 77));
  const k = options.samplesPerPrompt ?? 4;
  const episodes: Episode[] = [];
  const logps: number[][] = [];
  const examples: PolicyEvaluation['examples'] = [];
  for (const p of prompts) {
    const prompt = codec.prompt(p);
    for (const a of sampleAnswers(model, prompt, k, { maxTokens: codec.maxAnswerTokens, stopIds, rng })) {
      episodes.push({ prompt, answer: a.tokens });
      logps.push(a.logprobs);
      examples.push({ question: p.question, passages: p.passages, answer: codec.text(a.tokens) });
    }
  }
  const ref = withoutAdapter(model, () => answerLogProbs(model, episodes, pad).logp);
  const { entropy } = answerLogProbs(model, episodes, pad);
  let kl = 0;
  let ent = 0;
  let tokens = 0;
  episodes.forEach((e, i) => {
    for (let t = 0; t < e.answer.length; t++) {
      kl += logps[i]![t]! - ref[i]![t]!;
      ent += entropy[i]![t]!;
    }
    tokens += e.answer.length;
  });
  let reward = NaN;
  if (options.reward && examples.length) {
    const scores = await options.reward.score(examples);
    scores.forEach((s, i) => (examples[i]!.score = s));
    reward = scores.reduce((a, b) => a + b, 0) / scores.length;
  }
  let preferredRate = NaN;
  if (options.taste && examples.length) {
    for (const ex of examples) ex.liked = options.taste.likes(ex);
    preferredRate = examples.filter((e) => e.liked).length / examples.length;
  }
  const n = episodes.length;
  return { n, reward, preferredRate, kl: n ? kl / n : 0, entropy: tokens ? ent / tokens : 0, answerTokens: n ? tokens / n : 0, examples };
}
