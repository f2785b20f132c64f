/**
 * What an RLHF job starts from: the users' feedback (split by question, checked against what the
 * algorithm needs), the reward model and the policy.
 */
import type { StoreOpener } from '../../core/index.ts';
import { LoadedModel } from '../../model/loaded-model.ts';
import { formatMetrics } from '../jobs/job-format.ts';
import type { RewardModel } from '../reward/reward-model.ts';
import { loadRewardModel } from '../reward/store.ts';
import { rlhfData, type RlhfData } from './data.ts';
import type { PromptLayout, RlhfPrompt } from './episodes.ts';
import type { RlhfJobOptions } from './job-spec.ts';

type Log = (line: string) => void;

export async function loadFeedback(p: RlhfJobOptions, stores: StoreOpener, log: Log): Promise<{ data: RlhfData; evalPrompts: RlhfPrompt[] }> {
  const store = stores.open();
  if (!store) throw new Error(`No feedback store at ${stores.location}: RLHF learns from answers users rated 👍/👎`);
  const data = await rlhfData(store, { heldOutFraction: p.heldOutFraction, seed: p.heldOutSeed }).finally(() => store.close());
  const s = data.stats;
  log(`feedback: ${s.votes} rated answers (${s.up} 👍, ${s.down} 👎), ${s.pairs} pairs, ${s.questions} questions of which ${s.heldOutQuestions} held out`);
  if (p.algo === 'dpo' && data.train.pairs.length === 0) throw new Error('DPO needs pairs: no question has both a 👍 and a 👎 answer yet (they come from "regenerate" or two model versions). Try algo=kto, which uses single votes.');
  if (p.algo === 'kto' && data.train.votes.length < 2) throw new Error(`KTO needs rated answers: ${data.train.votes.length} in the training split`);
  if (p.algo === 'ppo' && data.train.prompts.length === 0) throw new Error('PPO needs questions from the answer records: none are rated yet');
  let evalPrompts = data.heldOut.prompts;
  if (evalPrompts.length === 0) {
    evalPrompts = data.train.prompts;
    log('no held-out questions (too little feedback): reward and KL are measured on training questions');
  }
  return { data, evalPrompts };
}

/**
 * PPO cannot run without a reward model; DPO/KTO use one to measure when there is one. `owned`
 * says whether the job loaded it (and so must dispose of it) or was handed it.
 */
export async function loadJobRewardModel(p: RlhfJobOptions, home: string, given: RewardModel | undefined, log: Log): Promise<{ reward?: RewardModel; owned: boolean }> {
  if (given) return { reward: given, owned: false };
  try {
    const reward = await loadRewardModel(home, p.reward);
    log(`reward model "${reward.info.name}" (${formatMetrics(reward.info.metrics)})`);
    return { reward, owned: true };
  } catch (err) {
    if (p.algo === 'ppo') throw new Error(`PPO needs a usable reward model: ${(err as Error).message}`);
    log(`no reward model (${(err as Error).message}): the held-out implicit reward margin is the measure`);
    return { owned: false };
  }
}

/** The policy to improve, and the prompt layout its context window allows (answers at most half of it). */
export async function loadPolicy(base: { dir: string; version?: string }, maxTokens: number): Promise<{ loaded: LoadedModel; layout: PromptLayout }> {
  const loaded = await LoadedModel.load(base.dir, base.version);
  const { blockSize } = loaded.gpt.config;
  return { loaded, layout: { blockSize, maxTokens: Math.min(maxTokens, Math.floor(blockSize / 2)) } };
}
