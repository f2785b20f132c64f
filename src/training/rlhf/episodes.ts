/** Prompts and answers of RLHF as token ids, laid out exactly as the bot prompts at answer time. */
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import { encodeQaPrompt, type Passage } from '../../model/qa-prompt.ts';
import type { Episode } from './policy.ts';

/** A real question from the answer records, with the passages retrieval gave it. */
export interface RlhfPrompt {
  question: string;
  passages: Passage[];
}

export interface PromptLayout {
  blockSize: number;
  /** Answer tokens at most (the prompt leaves room for them). */
  maxTokens: number;
  systemPrompt?: string;
  maxContextTokens?: number;
}

export function encodePrompt(tokenizer: Tokenizer, p: RlhfPrompt, layout: PromptLayout): number[] {
  return encodeQaPrompt(
    tokenizer,
    { question: p.question, passages: p.passages, ...(layout.systemPrompt ? { systemPrompt: layout.systemPrompt } : {}) },
    { blockSize: layout.blockSize, reserve: layout.maxTokens, ...(layout.maxContextTokens ? { maxContextTokens: layout.maxContextTokens } : {}) },
  );
}

/** A prompt and a given answer text (ended with the end token, cut to maxTokens). */
export function encodeEpisode(tokenizer: Tokenizer, p: RlhfPrompt, answer: string, layout: PromptLayout): Episode {
  const end = tokenizer.special.end;
  if (end === undefined) throw new Error('RLHF needs a tokenizer with the chat special tokens');
  const prompt = encodePrompt(tokenizer, p, layout);
  const ids = [...tokenizer.encode(answer), end].slice(0, layout.maxTokens);
  return { prompt, answer: ids };
}
