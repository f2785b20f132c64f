/**
 * The model a reward model is trained on and scores with, and how a rated answer becomes its
 * input:
 *
 *   - a model trained here (its folder): our chat template of special tokens (encodeRewardInput),
 *     the adapter in teamllm's files;
 *   - an imported chat model's version (Llama/Qwen family, chat-model.json): its engine's
 *     matrices frozen in the dtype they are served in, as a trainable llama-arch model whose
 *     norms are float32 (lora/imported-base.ts; no float32 copy of the matrices), the question and its passages laid
 *     out in the model's own chat template exactly as the bot asks it and the answer as the
 *     assistant's turn (chat-episodes.ts, chat-data.ts's encoding), the score read at the
 *     end-of-turn token that closes the answer; the adapter in PEFT's format.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { GPT } from '../../model/gpt.ts';
import type { ChatTokenizer } from '../../model/import/chat-tokenizer.ts';
import { CHAT_MANIFEST, loadChatModelVersion } from '../../model/import/chat-manifest.ts';
import type { LoraAdapter } from '../../model/lora/adapter.ts';
import { trainableFromChatModel } from '../../model/lora/imported-base.ts';
import { writePeftAdapter } from '../../model/lora/peft.ts';
import { loadModelFiles } from '../../model/model-files.ts';
import type { Passage } from '../../model/qa-prompt.ts';
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import type { RatedExample } from '../simulated-users.ts';
import { chatEpisodes } from '../rlhf/chat-episodes.ts';
import { encodeRewardInput, type RewardEncodeOptions } from './model.ts';

/** How inputs were encoded, as reward_config.json records it: `template: 'chat'` for an imported model's own template. */
export type RewardEncoding = RewardEncodeOptions & { template?: 'chat' };

/** A rated answer as the reward model's token ids (ending with the token the head reads), and the padding id of a batch. */
export interface RewardInputs {
  encode(ex: RatedExample): number[];
  pad: number;
}

/** Longest input of a reward model on an imported model (its own context is often 32k positions), as SFT and DPO. */
const CHAT_REWARD_MAX_TOKENS = 2048;

export function teamllmRewardInputs(tokenizer: Tokenizer, encoding: RewardEncodeOptions): RewardInputs {
  return { encode: (ex) => encodeRewardInput(tokenizer, ex, encoding), pad: tokenizer.special.end ?? 0 };
}

/**
 * Inputs in an imported model's chat template: the served prompt (the answerer's system message,
 * the numbered passages and the question), the answer and the end-of-turn token closing it, which
 * is the last token (the one the head reads). Too long: the answer is cut before its end-of-turn
 * token; a prompt that still does not fit loses its last passages, one at a time.
 */
export function chatRewardInputs(tokenizer: ChatTokenizer, maxTokens: number): RewardInputs {
  const codec = chatEpisodes(tokenizer, { maxAnswerTokens: Number.MAX_SAFE_INTEGER, maxTokens: Number.MAX_SAFE_INTEGER });
  const encode = (ex: RatedExample): number[] => {
    for (let kept = ex.passages.length; kept >= 0; kept--) {
      const { prompt, answer } = codec.episode({ question: ex.question, passages: ex.passages.slice(0, kept) as Passage[] }, ex.answer);
      const close = answer.at(-1);
      const closes = close !== undefined && codec.stopIds.has(close);
      const body = closes ? answer.slice(0, -1) : answer;
      const room = maxTokens - prompt.length - (closes ? 1 : 0);
      // At least one token of the answer (when it has one) beside the prompt, or fewer passages.
      if (room < Math.min(1, body.length)) continue;
      return [...prompt, ...body.slice(0, room), ...(closes ? [close] : [])];
    }
    throw new Error(`"${ex.question.slice(0, 60)}": the question alone does not fit the reward model's ${maxTokens} tokens in the chat template`);
  };
  return { encode, pad: codec.pad };
}

export interface RewardBase {
  kind: 'teamllm' | 'chat';
  /** The trainable model (its base frozen: float32 tensors, or an imported model's stored matrices); the caller disposes it. */
  model: GPT;
  inputs: RewardInputs;
  encoding: RewardEncoding;
  /** Writes the adapter's files into a reward model folder: teamllm's, or PEFT's for an imported base. */
  saveAdapter(dir: string, adapter: LoraAdapter): Promise<void>;
}

/** Whether `dir` is an imported chat model's version folder. */
export function isChatModelDir(dir: string): boolean {
  return existsSync(path.join(dir, CHAT_MANIFEST));
}

/** Opens the base of a reward model: a model folder trained here or an imported chat model's version folder. */
export async function openRewardBase(dir: string, options: { maxContextTokens?: number } = {}): Promise<RewardBase> {
  if (isChatModelDir(dir)) {
    const { model: engine, tokenizer, manifest } = loadChatModelVersion(dir);
    const model = trainableFromChatModel(engine, { frozen: true });
    const maxTokens = Math.min(model.config.blockSize, CHAT_REWARD_MAX_TOKENS);
    // Only the origin is kept: the trainable model holds the engine's matrices themselves.
    const origin = manifest.origin;
    return {
      kind: 'chat',
      model,
      inputs: chatRewardInputs(tokenizer, maxTokens),
      encoding: { template: 'chat', maxTokens },
      saveAdapter: (tmp, adapter) => writePeftAdapter(tmp, adapter, { baseModel: origin }),
    };
  }
  const { model, tokenizer } = await loadModelFiles(dir);
  const encoding: RewardEncodeOptions = { maxTokens: model.config.blockSize, ...(options.maxContextTokens ? { maxContextTokens: options.maxContextTokens } : {}) };
  return { kind: 'teamllm', model, inputs: teamllmRewardInputs(tokenizer, encoding), encoding, saveAdapter: (tmp, adapter) => adapter.save(tmp) };
}
