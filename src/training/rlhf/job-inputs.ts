/**
 * What an RLHF job starts from: the users' feedback (split by question, checked against what the
 * algorithm needs), the reward model and the policy.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { StoreOpener } from '../../core/index.ts';
import { ensureBackend } from '../../model/backend.ts';
import type { GPT } from '../../model/gpt.ts';
import { CHAT_MANIFEST, loadChatModelVersion } from '../../model/import/chat-manifest.ts';
import { trainableFromChatModel } from '../../model/lora/imported-base.ts';
import { LoadedModel } from '../../model/loaded-model.ts';
import { formatMetrics } from '../jobs/job-format.ts';
import type { RewardModel } from '../reward/reward-model.ts';
import { loadRewardModel } from '../reward/store.ts';
import { chatEpisodes } from './chat-episodes.ts';
import { rlhfData, type RlhfData, type RlhfSplit } from './data.ts';
import { teamllmEpisodes, type EpisodeCodec, type PromptLayout, type RlhfPrompt } from './episodes.ts';
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
export async function loadJobRewardModel(p: RlhfJobOptions, home: string, given: RewardModel | undefined, log: Log, policy?: RlhfPolicy, policyDir?: string): Promise<{ reward?: RewardModel; owned: boolean }> {
  if (given) return { reward: given, owned: false };
  try {
    // A reward model on the policy's own imported version reads the policy's engine (held once).
    const shared = policy?.kind === 'chat' && policyDir ? { sharedChat: { dir: policyDir, model: policy.chat.model, tokenizer: policy.chat.tokenizer } } : {};
    const reward = await loadRewardModel(home, p.reward, shared);
    log(`reward model "${reward.info.name}" (${formatMetrics(reward.info.metrics)})`);
    return { reward, owned: true };
  } catch (err) {
    if (p.algo === 'ppo') throw new Error(`PPO needs a usable reward model: ${(err as Error).message}`);
    log(`no reward model (${(err as Error).message}): the held-out implicit reward margin is the measure`);
    return { owned: false };
  }
}

/** Longest prompt and answer trained on an imported model (its own context is often 32k positions), as SFT. */
const CHAT_RLHF_MAX_TOKENS = 2048;

/**
 * The policy to improve and how its prompts and answers become ids: a model trained here (its
 * LoadedModel, our template; answers at most half of its context) or an imported chat model's
 * version (its weights frozen as served, shared with its engine; its own chat template; an adapter
 * version with its adapter merged).
 */
export type RlhfPolicy = { gpt: GPT; codec: EpisodeCodec } & (
  | { kind: 'teamllm'; loaded: LoadedModel; layout: PromptLayout }
  | { kind: 'chat'; chat: ReturnType<typeof loadChatModelVersion> }
);

export async function loadPolicy(base: { dir: string; version?: string }, maxTokens: number): Promise<RlhfPolicy> {
  if (existsSync(path.join(base.dir, CHAT_MANIFEST))) {
    if (!base.version) throw new Error('an imported chat model is tuned by its version (base=vN)');
    const chat = loadChatModelVersion(base.dir);
    await ensureBackend();
    // Frozen in the dtype it is served in, its matrices the engine's own arrays (no float32 copy):
    // the QA check answers with the same engine. An adapter version loads with its adapter merged
    // (the touched matrices float32, frozen as they are): the fresh LoRA trains on top of it, and
    // the two are registered as one adapter over the imported model (registry, lora/combine.ts).
    const gpt = trainableFromChatModel(chat.model, { frozen: true });
    const context = Math.min(gpt.config.blockSize, CHAT_RLHF_MAX_TOKENS);
    const codec = chatEpisodes(chat.tokenizer, { maxAnswerTokens: Math.min(maxTokens, Math.floor(context / 2)), maxTokens: context, vocabSize: gpt.config.vocabSize });
    return { kind: 'chat', gpt, codec, chat };
  }
  const loaded = await LoadedModel.load(base.dir, base.version);
  const { blockSize } = loaded.gpt.config;
  const layout = { blockSize, maxTokens: Math.min(maxTokens, Math.floor(blockSize / 2)) };
  return { kind: 'teamllm', gpt: loaded.gpt, codec: teamllmEpisodes(loaded.tokenizer, layout, loaded.gpt.config.vocabSize), loaded, layout };
}

export function disposePolicy(policy: RlhfPolicy): void {
  if (policy.kind === 'teamllm') policy.loaded.dispose();
  else policy.gpt.dispose();
}

/** Leaves out what the policy cannot encode (a prompt longer than an imported model's context), and says so. */
export function fitToPolicy(data: RlhfData, codec: EpisodeCodec, log: Log): RlhfData {
  let dropped = 0;
  const fits = (prompt: RlhfPrompt, answer: string) => {
    try {
      codec.episode(prompt, answer);
      return true;
    } catch {
      dropped += 1;
      return false;
    }
  };
  const split = (s: RlhfSplit): RlhfSplit => ({
    prompts: s.prompts.filter((q) => fits(q, '')),
    votes: s.votes.filter((v) => fits(v.prompt, v.answer)),
    pairs: s.pairs.filter((x) => fits(x.prompt, x.chosen) && fits(x.prompt, x.rejected)),
  });
  const out = { ...data, train: split(data.train), heldOut: split(data.heldOut) };
  if (dropped) log(`${dropped} prompts or answers do not fit the model's context: left out`);
  return out;
}
