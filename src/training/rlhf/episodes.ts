/** Prompts and answers of RLHF as token ids, laid out exactly as the bot prompts at answer time. */
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import { encodeQaPrompt, type Passage } from '../../model/qa-prompt.ts';
import { answerText, stopIdsFor, type Episode } from './policy.ts';

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

/**
 * How a policy's prompts and answers become ids and back: the RLHF trainers and measures work on
 * episodes through this, so the same DPO/KTO loop and evaluation serve a model trained here (our
 * template, `teamllmEpisodes`) and an imported chat model (its own chat template, chat-episodes.ts).
 */
export interface EpisodeCodec {
  /** The prompt's ids, exactly as the model is asked at answer time. */
  prompt(p: RlhfPrompt): number[];
  /** A prompt and a given answer (closed by the end-of-turn token, cut to maxAnswerTokens). */
  episode(p: RlhfPrompt, answer: string): Episode;
  /** The text of sampled answer tokens (stop tokens left out). */
  text(tokens: readonly number[]): string;
  /** Ids that end a sampled answer. */
  stopIds: ReadonlySet<number>;
  /** Padding id of a batch (right padding: never attended to by the positions that count). */
  pad: number;
  maxAnswerTokens: number;
}

/** Episodes in our own template (`encodePrompt` / `encodeEpisode`). */
export function teamllmEpisodes(tokenizer: Tokenizer, layout: PromptLayout, vocabSize: number): EpisodeCodec {
  const stopIds = stopIdsFor(tokenizer, vocabSize);
  return {
    prompt: (p) => encodePrompt(tokenizer, p, layout),
    episode: (p, answer) => encodeEpisode(tokenizer, p, answer, layout),
    text: (tokens) => answerText(tokenizer, tokens, stopIds),
    stopIds,
    pad: tokenizer.special.end ?? 0,
    maxAnswerTokens: layout.maxTokens,
  };
}
