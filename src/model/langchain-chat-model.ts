/**
 * The project's own model behind LangChain's chat-model interface, so the answer chain (and any
 * LangChain code a company writes) can use it like any other model, with streaming.
 *
 * Messages map onto the model's chat template: system -> <|system|>, human -> <|user|>,
 * ai -> <|assistant|>; a system message named "context" carries the retrieved passages into
 * the template's <|context|> block, which is where SFT taught the model to look for them.
 */
import type { CallbackManagerForLLMRun } from '@langchain/core/callbacks/manager';
import { BaseChatModel, type BaseChatModelCallOptions, type BaseChatModelParams } from '@langchain/core/language_models/chat_models';
import { AIMessage, AIMessageChunk, type BaseMessage } from '@langchain/core/messages';
import { ChatGenerationChunk, type ChatResult } from '@langchain/core/outputs';
import type { ChatMessage } from './chat-template.ts';
import type { GenerateOptions } from './generate.ts';
import type { LoadedModel } from './loaded-model.ts';

export interface LocalChatModelParams extends BaseChatModelParams {
  model: LoadedModel;
  generation?: GenerateOptions;
  /**
   * A decoding constraint for each prompt (its tokens as encoded here), e.g. extractive decoding's
   * `extractiveHook`; undefined for a prompt means free decoding.
   */
  constrain?: ((promptTokens: readonly number[]) => GenerateOptions['allowedTokens'] | undefined) | undefined;
}

export const CONTEXT_MESSAGE_NAME = 'context';

export function toTemplate(messages: BaseMessage[]): { messages: ChatMessage[]; context: string[] } {
  const out: ChatMessage[] = [];
  const context: string[] = [];
  for (const m of messages) {
    const text = typeof m.content === 'string' ? m.content : m.content.map((c) => ('text' in c ? String(c.text) : '')).join('');
    const type = m.getType();
    if (type === 'system' && m.name === CONTEXT_MESSAGE_NAME) context.push(text);
    else if (type === 'system') out.push({ role: 'system', content: text });
    else if (type === 'ai') out.push({ role: 'assistant', content: text });
    else out.push({ role: 'user', content: text });
  }
  return { messages: out, context };
}

export class LocalChatModel extends BaseChatModel<BaseChatModelCallOptions> {
  private readonly local: LoadedModel;
  private readonly generation: GenerateOptions;
  private readonly constrain: LocalChatModelParams['constrain'];

  constructor(params: LocalChatModelParams) {
    super(params);
    this.local = params.model;
    this.constrain = params.constrain;
    this.generation = params.generation ?? { maxTokens: 200, temperature: 0.7, topK: 40, repetitionPenalty: 1.1 };
  }

  _llmType(): string {
    return 'teamllm-local';
  }

  override async *_streamResponseChunks(
    messages: BaseMessage[],
    options: this['ParsedCallOptions'],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    const { messages: chat, context } = toTemplate(messages);
    const prompt = this.local.encodeChat(chat, {
      ...(context.length ? { context } : {}),
      reserve: Math.min(this.generation.maxTokens ?? 200, Math.floor(this.local.blockSize / 2)),
    });
    const stop = [...(this.generation.stop ?? []), ...(options.stop ?? [])];
    const allowedTokens = this.constrain?.(prompt);
    const stream = this.local.generate(prompt, {
      ...this.generation,
      ...(stop.length ? { stop } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(allowedTokens ? { allowedTokens } : {}),
    });
    for await (const token of stream) {
      if (!token.text) continue;
      yield new ChatGenerationChunk({ text: token.text, message: new AIMessageChunk({ content: token.text }) });
      await runManager?.handleLLMNewToken(token.text);
    }
  }

  async _generate(messages: BaseMessage[], options: this['ParsedCallOptions'], runManager?: CallbackManagerForLLMRun): Promise<ChatResult> {
    let text = '';
    for await (const chunk of this._streamResponseChunks(messages, options, runManager)) text += chunk.text;
    return { generations: [{ text, message: new AIMessage(text) }] };
  }
}
