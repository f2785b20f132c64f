/**
 * The answer chain's `messages` for the project's own model (src/model/answer-settings.ts says how
 * it is prompted): the QA prompt layout of src/model/qa-prompt.ts as LangChain messages.
 */
import { HumanMessage, AIMessage, SystemMessage, type BaseMessage } from '@langchain/core/messages';
import type { ConversationTurn, Source } from '../core/index.ts';
import type { AnswerSettings } from '../model/answer-settings.ts';
import { encodeChat, type ChatMessage } from '../model/chat-template.ts';
import type { LoadedModel } from '../model/loaded-model.ts';
import { fitContext } from '../model/qa-prompt.ts';

/**
 * The chain's `messages`: the passages fitted into the room `encodeQaPrompt` gives them (so the
 * tokens LocalChatModel encodes are the ones the evaluation used), earlier turns, the question.
 */
export function qaPromptMessages(model: LoadedModel, settings: AnswerSettings) {
  return (input: { question: string; history: ConversationTurn[]; documents: Source[] }): BaseMessage[] => {
    const history: ChatMessage[] = input.history.map((t) => ({ role: t.role === 'user' ? 'user' : 'assistant', content: t.text }));
    const chat: ChatMessage[] = [...(settings.systemPrompt ? [{ role: 'system' as const, content: settings.systemPrompt }] : []), ...history, { role: 'user', content: input.question }];
    const bare = encodeChat(model.tokenizer, chat).length;
    const room = Math.min(model.blockSize - settings.maxTokens - bare - 2, settings.maxContextTokens ?? Infinity);
    const passages = input.documents.map((d) => ({ source: d.source, title: d.title, text: d.text }));
    const context = passages.length && room > 8 ? fitContext(model.tokenizer, passages, room, input.question) : '';
    return [
      ...(settings.systemPrompt ? [new SystemMessage(settings.systemPrompt)] : []),
      ...(context ? [new SystemMessage({ content: context, name: 'context' })] : []),
      ...input.history.map((t) => (t.role === 'user' ? new HumanMessage(t.text) : new AIMessage(t.text))),
      new HumanMessage(input.question),
    ];
  };
}
