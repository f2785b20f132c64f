/**
 * The chat template: each turn is `<|role|> text <|end|>`, retrieved passages go in a
 * `<|context|> ... <|end|>` block, and the prompt ends with `<|assistant|>` for the model to
 * continue. Role markers are special tokens; user text is encoded with allowSpecial off, so it
 * cannot forge them.
 */
import type { Tokenizer, SpecialTokenName } from './tokenizer/index.ts';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatPromptOptions {
  /** Retrieved passages, placed after the system message. */
  context?: string | string[];
  /** End with `<|assistant|>` (default true). */
  addGenerationPrompt?: boolean;
  /** Longest prompt in tokens: context is cut first, then the oldest turns (the system message stays). */
  maxTokens?: number;
}

function special(tokenizer: Tokenizer, name: SpecialTokenName): number {
  const id = tokenizer.special[name];
  if (id === undefined) throw new Error(`This tokenizer has no <|${name}|> token; chat needs a tokenizer with special tokens`);
  return id;
}

function block(tokenizer: Tokenizer, role: SpecialTokenName, text: string): number[] {
  return [special(tokenizer, role), ...tokenizer.encode(text), special(tokenizer, 'end')];
}

export function encodeChat(tokenizer: Tokenizer, messages: ChatMessage[], options: ChatPromptOptions = {}): number[] {
  const system = messages.filter((m) => m.role === 'system').map((m) => block(tokenizer, 'system', m.content));
  const turns = messages.filter((m) => m.role !== 'system').map((m) => block(tokenizer, m.role, m.content));
  const contextText = Array.isArray(options.context) ? options.context.join('\n\n') : options.context;
  let context = contextText ? block(tokenizer, 'context', contextText) : [];
  const tail = options.addGenerationPrompt === false ? [] : [special(tokenizer, 'assistant')];
  const size = () => system.flat().length + context.length + turns.flat().length + tail.length;
  const max = options.maxTokens;
  if (max !== undefined) {
    if (size() > max && context.length > 0) {
      const excess = size() - max;
      const keep = Math.max(0, context.length - 2 - excess);
      context = keep > 0 ? [context[0]!, ...context.slice(1, 1 + keep), context[context.length - 1]!] : [];
    }
    while (size() > max && turns.length > 1) turns.shift();
    if (size() > max && turns.length === 1) {
      // One very long message: keep its end.
      const only = turns[0]!;
      const room = Math.max(2, only.length - (size() - max));
      turns[0] = [only[0]!, ...only.slice(only.length - room + 1)];
    }
  }
  return [...system.flat(), ...context, ...turns.flat(), ...tail];
}
