/**
 * SFT examples for an imported chat model, in that model's own chat template (its Jinja
 * template through ChatTokenizer), with the loss on the assistant's tokens only: the content of
 * each assistant turn and the end-of-turn token the template closes it with (<|im_end|>,
 * <|eot_id|>...), so the model learns to stop.
 *
 * An example with retrieved passages is laid out as the bot asks the model at answer time
 * (rag/chat-model-answerer.ts chatAnswerMessages: its system message, then the numbered passages
 * and the question as the user's turn), so it learns the prompt it will be served with.
 *
 * Typed text never becomes a special token: the template is rendered with a marker in place of
 * each message's content, as ChatTokenizer.encodeChat does, so the ids are exactly the prompt
 * ids the served model sees, followed by the answer.
 */
import type { ChatMessage, ChatTokenizer } from '../../model/import/chat-tokenizer.ts';
import { chatAnswerMessages, withoutSystem } from '../../rag/chat-model-answerer.ts';
import type { EncodedExample, SftExample } from './data.ts';

/** The conversation an example stands for: with passages, the answerer's system message and passages before the last question. */
export function chatSftMessages(example: SftExample, systemPrompt?: string): ChatMessage[] {
  const messages = example.messages.map((m) => ({ role: m.role, content: m.content }));
  if (example.context?.length) {
    const lastUser = messages.map((m) => m.role).lastIndexOf('user');
    if (lastUser < 0) throw new Error('an SFT example with passages needs a user question');
    const passages = example.context.map((p) => ({ source: p.source ?? '', title: p.title ?? '', text: p.text }));
    const [system, user] = chatAnswerMessages(messages[lastUser]!.content, passages, systemPrompt);
    return [system!, ...messages.slice(0, lastUser).filter((m) => m.role !== 'system'), user!, ...messages.slice(lastUser + 1)];
  }
  if (systemPrompt && !messages.some((m) => m.role === 'system')) return [{ role: 'system', content: systemPrompt }, ...messages];
  return messages;
}

/** Templates without a system role (Mistral's raise an exception) get its text at the start of the first user turn, as the answerer does. */
function renderable(tokenizer: ChatTokenizer, messages: ChatMessage[]): ChatMessage[] {
  try {
    tokenizer.renderChat(messages, { addGenerationPrompt: false });
    return messages;
  } catch {
    return withoutSystem(messages);
  }
}

/**
 * Ids and next-token targets of one example (-1 where the loss does not count), or undefined when
 * it does not fit `maxTokens` or has no assistant turn.
 */
export function encodeChatSftExample(tokenizer: ChatTokenizer, example: SftExample, options: { maxTokens: number; systemPrompt?: string }): EncodedExample | undefined {
  const messages = renderable(tokenizer, chatSftMessages(example, options.systemPrompt));
  if (!messages.some((m) => m.role === 'assistant')) return undefined;
  const marks = messages.map((_, i) => `\uE000${i}\uE001`);
  let rest = tokenizer.renderChat(
    messages.map((m, i) => ({ ...m, content: marks[i]! })),
    { addGenerationPrompt: false },
  );
  const ids: number[] = [];
  const counted: boolean[] = [];
  const push = (toks: number[], count: boolean) => {
    for (const t of toks) {
      ids.push(t);
      counted.push(count);
    }
  };
  let closeTurn = false;
  // The template's text between contents; the end-of-turn token right after an answer is the answer's last target.
  const pushControl = (text: string) => {
    const control = tokenizer.encodeControl(text);
    const closes = closeTurn && control.length > 0 && tokenizer.eosIds.has(control[0]!);
    push(control.slice(0, closes ? 1 : 0), true);
    push(control.slice(closes ? 1 : 0), false);
  };
  for (const [i, mark] of marks.entries()) {
    const at = rest.indexOf(mark);
    if (at < 0) continue;
    pushControl(rest.slice(0, at));
    const assistant = messages[i]!.role === 'assistant';
    push(tokenizer.encodeText(messages[i]!.content), assistant);
    closeTurn = assistant;
    rest = rest.slice(at + mark.length);
  }
  pushControl(rest);
  if (ids.length > options.maxTokens) return undefined;
  const targets = new Int32Array(ids.length).fill(-1);
  let assistantTokens = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    if (!counted[t + 1]) continue;
    targets[t] = ids[t + 1]!;
    assistantTokens += 1;
  }
  if (assistantTokens === 0) return undefined;
  return { ids: Int32Array.from(ids), targets, assistantTokens, truncated: false };
}
