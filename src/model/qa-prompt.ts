/**
 * The QA prompt layout: how retrieved passages and a question become the model's prompt. Serving
 * (model/answer-settings.ts, rag/model-candidate-scorer.ts), the QA evaluation, RLHF and SFT all use
 * this one layout, so a model is trained on the prompts it is asked with. It needs only the
 * tokenizer and the chat template, so it lives beside them in the model layer.
 *
 * The template (chat-template.ts):
 *   <|system|>…<|end|> <|context|>[1] title (source)\ntext…<|end|> <|user|>…<|end|> <|assistant|>
 * `formatContext` lays passages out in the context block; `fitContext` keeps the lines that share
 * the most terms with the question when they do not all fit; `encodeQaPrompt` builds the prompt.
 */
import { encodeChat, type ChatMessage } from './chat-template.ts';
import { CJK } from './text/cjk.ts';
import { STOPWORDS } from './text/stopwords.ts';
import type { Tokenizer } from './tokenizer/index.ts';

/** A retrieved passage as the prompt shows it. */
export interface Passage {
  source?: string;
  title?: string;
  text: string;
}

/** Passages as the `<|context|>` block shows them: "[1] title (source)\ntext", blank line between. */
export function formatContext(passages: Passage[]): string {
  return passages.map((p, i) => `${passageHeader(p, i)}\n${p.text.trim()}`).join('\n\n');
}

function passageHeader(p: Passage, i: number): string {
  const title = p.title?.trim();
  const source = p.source?.trim();
  return `[${i + 1}]${title ? ` ${title}` : ''}${source ? ` (${source})` : ''}`;
}

// The shared list plus question words that only ask for a length or amount ("how much/many/long"):
// they pick no line, while retrieval's terms keep them (adding them there would change rankings).
// The list's Chinese words never reach this check (Chinese is matched by character bigrams).
const STOP = new Set([...STOPWORDS, 'did', 'whom', 'much', 'many', 'long']);

/** Words (Latin) and character bigrams (CJK) of a text, lower-cased, without stop words. */
export function queryTerms(text: string): Set<string> {
  const t = text.normalize('NFKC').toLowerCase();
  const out = new Set<string>();
  for (const m of t.matchAll(/[\p{L}\p{N}][\p{L}\p{N}'’-]*/gu)) {
    const w = m[0];
    if (CJK.test(w)) {
      const chars = [...w].filter((c) => CJK.test(c));
      for (let i = 0; i + 1 < chars.length; i++) out.add(chars[i]! + chars[i + 1]!);
      continue;
    }
    if (w.length >= 2 && !STOP.has(w)) out.add(w);
  }
  return out;
}

/** Lines of a passage, long ones cut at sentence ends (Chinese included). */
function units(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split(/\n/)) {
    const l = line.trim();
    if (!l) continue;
    if (l.length <= 160) {
      out.push(l);
      continue;
    }
    for (const s of l.split(/(?<=[.!?;。！？；])\s*/u)) if (s.trim()) out.push(s.trim());
  }
  return out;
}

/**
 * The `<|context|>` text for `passages` within `budget` tokens. When everything fits it is
 * `formatContext(passages)`. Otherwise passages keep their headers and, within them, the lines and
 * sentences sharing the most terms with `query` are kept (in their original order) until the
 * budget is used: a small model's short context then still holds the part that answers.
 */
export function fitContext(tokenizer: Tokenizer, passages: Passage[], budget: number, query = ''): string {
  if (passages.length === 0 || budget <= 0) return '';
  const full = formatContext(passages);
  if (tokenizer.encode(full).length <= budget) return full;
  const terms = queryTerms(query);
  type Unit = { passage: number; order: number; text: string; tokens: number; score: number };
  const all: Unit[] = [];
  const headers = passages.map((p, i) => passageHeader(p, i));
  passages.forEach((p, pi) => {
    units(p.text).forEach((text, order) => {
      const own = queryTerms(text);
      let score = 0;
      for (const t of terms) if (own.has(t)) score += 1;
      all.push({ passage: pi, order, text, tokens: tokenizer.encode(text).length + 1, score });
    });
  });
  let used = 0;
  const chosen = new Set<Unit>();
  const headerCost = headers.map((h) => tokenizer.encode(h).length + 2);
  const opened = new Set<number>();
  const ranked = [...all].sort((a, b) => b.score - a.score || a.passage - b.passage || a.order - b.order);
  for (const u of ranked) {
    const extra = u.tokens + (opened.has(u.passage) ? 0 : headerCost[u.passage]!);
    if (used + extra > budget) continue;
    used += extra;
    opened.add(u.passage);
    chosen.add(u);
  }
  const blocks: string[] = [];
  passages.forEach((_, pi) => {
    if (!opened.has(pi)) return;
    const lines = all.filter((u) => u.passage === pi && chosen.has(u)).map((u) => u.text);
    blocks.push(`${headers[pi]}\n${lines.join('\n')}`);
  });
  return blocks.join('\n\n');
}

/**
 * The prompt the model answers a question from (the bot, the QA evaluation and SFT all use this
 * one layout): passages fitted into the block after the question and `reserve` answer tokens.
 */
export function encodeQaPrompt(
  tokenizer: Tokenizer,
  input: { question: string; passages?: Passage[]; systemPrompt?: string; history?: ChatMessage[] },
  options: { blockSize: number; reserve: number; maxContextTokens?: number },
): number[] {
  const messages: ChatMessage[] = [];
  if (input.systemPrompt) messages.push({ role: 'system', content: input.systemPrompt });
  messages.push(...(input.history ?? []), { role: 'user', content: input.question });
  const bare = encodeChat(tokenizer, messages).length;
  const room = Math.min(options.blockSize - options.reserve - bare - 2, options.maxContextTokens ?? Infinity);
  const context = input.passages?.length && room > 8 ? fitContext(tokenizer, input.passages, room, input.question) : '';
  return encodeChat(tokenizer, messages, {
    ...(context ? { context } : {}),
    maxTokens: Math.max(8, options.blockSize - options.reserve),
  });
}
