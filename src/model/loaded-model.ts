/**
 * A model ready to answer: weights on the tensor backend, its tokenizer, and generation.
 */
import { GPT } from './gpt.ts';
import type { Tokenizer } from './tokenizer/index.ts';
import { loadModelFiles, type ModelConfigFile } from './model-files.ts';
import { ensureBackend } from './backend.ts';
import { generate, generateAll, type GenerateOptions, type GeneratedToken, type GenerationResult } from './generate.ts';
import { encodeChat, type ChatMessage, type ChatPromptOptions } from './chat-template.ts';

export interface ModelInfoLike {
  /** Registry version ('v3') or the folder name. */
  version: string;
  dir: string;
  numParameters: number;
  meta: Record<string, unknown>;
}

export class LoadedModel {
  constructor(
    readonly gpt: GPT,
    readonly tokenizer: Tokenizer,
    readonly info: ModelInfoLike,
  ) {}

  /** Loads a model folder (registry version, checkpoint, or a run's `model/`). */
  static async load(dir: string, version?: string): Promise<LoadedModel> {
    await ensureBackend();
    const { model, tokenizer, config } = await loadModelFiles(dir);
    const name = version ?? dir.split(/[\\/]/).filter(Boolean).pop() ?? dir;
    return new LoadedModel(model, tokenizer, {
      version: name,
      dir,
      numParameters: model.numParameters,
      meta: (config as ModelConfigFile).meta ?? {},
    });
  }

  get blockSize(): number {
    return this.gpt.config.blockSize;
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  decode(ids: number[]): string {
    return this.tokenizer.decode(ids);
  }

  /** Prompt tokens for a conversation, leaving `reserve` positions for the answer. */
  encodeChat(messages: ChatMessage[], options: ChatPromptOptions & { reserve?: number } = {}): number[] {
    const reserve = options.reserve ?? Math.floor(this.blockSize / 4);
    return encodeChat(this.tokenizer, messages, { maxTokens: Math.max(8, this.blockSize - reserve), ...options });
  }

  /** Streams tokens after `promptTokens`; the generator returns the full result. */
  generate(
    promptTokens: number[],
    options: GenerateOptions = {},
    onToken?: (token: GeneratedToken) => void,
  ): AsyncGenerator<GeneratedToken, GenerationResult, void> {
    return generate(this.gpt, this.tokenizer, promptTokens, options, onToken);
  }

  /** Generates to the end from a text prompt. */
  async complete(prompt: string, options: GenerateOptions = {}, onToken?: (token: GeneratedToken) => void): Promise<GenerationResult> {
    return generateAll(this.gpt, this.tokenizer, this.tokenizer.encode(prompt), options, onToken);
  }

  /** Answers a conversation (chat template), streaming through onToken. */
  async chat(
    messages: ChatMessage[],
    options: GenerateOptions & { context?: string | string[] } = {},
    onToken?: (token: GeneratedToken) => void,
  ): Promise<GenerationResult> {
    const chatOptions: ChatPromptOptions & { reserve?: number } = {};
    if (options.context !== undefined) chatOptions.context = options.context;
    if (options.maxTokens !== undefined) chatOptions.reserve = Math.min(options.maxTokens, this.blockSize - 8);
    const prompt = this.encodeChat(messages, chatOptions);
    return generateAll(this.gpt, this.tokenizer, prompt, options, onToken);
  }

  dispose(): void {
    this.gpt.dispose();
  }
}

export async function loadModel(dir: string, version?: string): Promise<LoadedModel> {
  return LoadedModel.load(dir, version);
}
