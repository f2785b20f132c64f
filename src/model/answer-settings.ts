/**
 * How the bot prompts the project's own model: exactly as SFT trained it and as the QA evaluation
 * scored it (`encodeQaPrompt`): the same number of retrieved passages, fitted into the same room
 * with `fitContext` (the lines sharing the most terms with the question), the same answer length,
 * greedy decoding, free or extractive (copy-constrained: only verbatim spans of the retrieved
 * context, src/model/extractive.ts). The settings travel with the model: SFT writes them into the
 * adapter's meta (`retrievalK`, `answerTokens`, `decoding`, `prompt.maxContextTokens`), which a
 * served version carries either as `meta.adapter` (base + adapter) or `meta.lora.meta` (merged
 * weights). A model whose meta does not name a decoding decodes freely.
 */
import type { GenerateOptions } from './generate.ts';
import { extractiveHook, type DecodingMode } from './extractive.ts';
import type { LoadedModel } from './loaded-model.ts';

export interface AnswerSettings {
  /** Passages retrieved into the prompt. */
  passages: number;
  /** Answer tokens at most (also the room kept free for the answer). */
  maxTokens: number;
  maxContextTokens?: number;
  systemPrompt?: string;
  /** 'extractive': answers are verbatim spans of the retrieved context; 'free': any tokens. */
  decoding: AnswerDecoding;
  /** True when the settings came from the model's SFT meta (false: defaults for a model without one). */
  fromModel: boolean;
}

export type AnswerDecoding = DecodingMode;

const DEFAULTS = { passages: 3, maxTokens: 64 };

/** The decoding named in an SFT meta record (`decoding`), 'free' when it names none. */
export function decodingOf(meta: Record<string, unknown> | undefined): AnswerDecoding {
  return meta?.decoding === 'extractive' ? 'extractive' : 'free';
}

const record = (v: unknown): Record<string, unknown> | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
const positive = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined);

/** `decoding`: TEAMLLM_ANSWER_DECODING ('model', the default, keeps what the model's meta says). */
export function answerSettings(model: LoadedModel, decoding: AnswerDecoding | 'model' = 'model'): AnswerSettings {
  const meta = model.info.meta;
  const sft = record(meta.adapter) ?? record(record(meta.lora)?.meta);
  const prompt = record(sft?.prompt);
  const k = positive(sft?.retrievalK);
  const tokens = positive(sft?.answerTokens);
  const maxTokens = Math.min(tokens ?? DEFAULTS.maxTokens, Math.floor(model.blockSize / 2));
  const maxContextTokens = positive(prompt?.maxContextTokens);
  return {
    passages: k ?? DEFAULTS.passages,
    maxTokens,
    ...(maxContextTokens ? { maxContextTokens } : {}),
    ...(typeof prompt?.systemPrompt === 'string' ? { systemPrompt: prompt.systemPrompt } : {}),
    // An SFT model's meta names its decoding; a base model's own meta may too (the quickstart's does).
    decoding: decoding === 'model' ? decodingOf(sft ?? meta) : decoding,
    fromModel: k !== undefined || tokens !== undefined,
  };
}

/** Greedy, at most `maxTokens`: the decoding the QA evaluation scored. */
export function answerGeneration(settings: AnswerSettings): GenerateOptions {
  return { maxTokens: settings.maxTokens, temperature: 0 };
}

/**
 * The per-prompt constraint of the settings' decoding (LocalChatModel's `constrain`): extractive
 * decoding copies from the prompt's context block; a prompt without context decodes freely.
 */
export function answerConstraint(model: LoadedModel, settings: Pick<AnswerSettings, 'decoding'>) {
  return settings.decoding === 'extractive' ? (prompt: readonly number[]) => extractiveHook(model.tokenizer, prompt) : undefined;
}
