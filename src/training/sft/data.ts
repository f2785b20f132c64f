/**
 * SFT data: examples in the formats people already have, turned into token sequences of the chat
 * template with the loss on the assistant's tokens only.
 *
 * Accepted records (JSONL, one per line, or a JSON array):
 *
 *   alpaca    {"instruction": "...", "input": "...", "output": "...", "system"?: "..."}
 *   sharegpt  {"conversations": [{"from": "system|human|gpt", "value": "..."}, ...]}
 *   messages  {"messages": [{"role": "system|user|assistant", "content": "..."}], "context"?: [...]}
 *             (what `teamllm data export --kind sft` writes for answers rated 👍)
 *   qa        {"question": "...", "answer": "...", "context"?: [...]}   (e.g. the handbook's questions)
 *
 * `context` is a list of passages `{source?, title?, text}` (or plain strings): they go into the
 * template's `<|context|>` block exactly as the bot puts retrieved passages there at answer time
 * (`formatContext`, src/model/qa-prompt.ts), so the model learns to answer from them.
 *
 * The template (src/model/chat-template.ts):
 *   <|system|>…<|end|> <|context|>[1] title (source)\ntext…<|end|> <|user|>…<|end|> <|assistant|>…<|end|>
 * Targets are -1 (ignored) everywhere except the assistant's content and its closing <|end|>.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ChatMessage } from '../../model/chat-template.ts';
import type { SpecialTokenName, Tokenizer } from '../../model/tokenizer/index.ts';
import { fitContext, formatContext, type Passage } from '../../model/qa-prompt.ts';

export type SftFormat = 'alpaca' | 'sharegpt' | 'messages' | 'qa' | 'generated';

export interface SftExample {
  /** The conversation; it ends with an assistant turn. */
  messages: ChatMessage[];
  /** Retrieved passages the answer is based on. */
  context?: Passage[];
  id?: string;
  format?: SftFormat;
}

export interface EncodedExample {
  /** Input tokens. */
  ids: Int32Array;
  /** Next-token targets (same length): the token that follows, or -1 where the loss does not count. */
  targets: Int32Array;
  /** Tokens the loss counts. */
  assistantTokens: number;
  /** Something had to be cut to fit (context, old turns or the end of the answer). */
  truncated: boolean;
}

// ---------------------------------------------------------------------------------------------
// Parsing

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function parsePassages(v: unknown, where: string): Passage[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v.trim() ? [{ text: v }] : undefined;
  if (!Array.isArray(v)) throw new Error(`${where}: "context" must be a list of passages`);
  return v.map((p, i) => {
    if (typeof p === 'string') return { text: p };
    const o = p as Record<string, unknown>;
    const text = str(o.text) ?? str(o.pageContent) ?? str(o.content);
    if (text === undefined) throw new Error(`${where}: passage ${i + 1} has no "text"`);
    const out: Passage = { text };
    if (str(o.source)) out.source = str(o.source)!;
    if (str(o.title)) out.title = str(o.title)!;
    return out;
  });
}

const SHAREGPT_ROLES: Record<string, ChatMessage['role']> = {
  system: 'system',
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  bot: 'assistant',
  chatgpt: 'assistant',
  model: 'assistant',
};

/** One record in any accepted format -> an example. `where` names it in errors ("file.jsonl:12"). */
export function parseSftRecord(record: unknown, where = 'record'): SftExample {
  if (!record || typeof record !== 'object' || Array.isArray(record)) throw new Error(`${where}: expected a JSON object`);
  const r = record as Record<string, unknown>;
  const id = str(r.id) ?? (typeof r.id === 'number' ? String(r.id) : undefined) ?? str(r.answerId);
  const context = parsePassages(r.context ?? r.passages, where);
  let messages: ChatMessage[];
  let format: SftFormat;
  if (Array.isArray(r.messages)) {
    format = 'messages';
    messages = r.messages.map((m, i) => {
      const o = m as Record<string, unknown>;
      const role = str(o.role);
      const content = str(o.content);
      if (role !== 'system' && role !== 'user' && role !== 'assistant') throw new Error(`${where}: message ${i + 1} has role "${String(o.role)}" (system, user or assistant)`);
      if (content === undefined) throw new Error(`${where}: message ${i + 1} has no text "content"`);
      return { role, content };
    });
  } else if (Array.isArray(r.conversations)) {
    format = 'sharegpt';
    messages = r.conversations.map((m, i) => {
      const o = m as Record<string, unknown>;
      const from = str(o.from) ?? str(o.role);
      const role = from ? SHAREGPT_ROLES[from.toLowerCase()] : undefined;
      const value = str(o.value) ?? str(o.content);
      if (!role) throw new Error(`${where}: turn ${i + 1} is from "${String(from)}" (human, gpt or system)`);
      if (value === undefined) throw new Error(`${where}: turn ${i + 1} has no text "value"`);
      return { role, content: value };
    });
    const system = str(r.system);
    if (system) messages.unshift({ role: 'system', content: system });
  } else if (str(r.instruction) !== undefined && str(r.output) !== undefined) {
    format = 'alpaca';
    const input = str(r.input)?.trim();
    messages = [
      { role: 'user', content: input ? `${r.instruction as string}\n\n${input}` : (r.instruction as string) },
      { role: 'assistant', content: r.output as string },
    ];
    const system = str(r.system);
    if (system) messages.unshift({ role: 'system', content: system });
  } else if (str(r.question) !== undefined && str(r.answer) !== undefined) {
    format = 'qa';
    messages = [
      { role: 'user', content: r.question as string },
      { role: 'assistant', content: r.answer as string },
    ];
  } else {
    throw new Error(`${where}: not an SFT record (expected alpaca instruction/output, sharegpt conversations, messages, or question/answer)`);
  }
  if (!messages.some((m) => m.role === 'assistant')) throw new Error(`${where}: the conversation has no assistant turn to learn from`);
  while (messages.length && messages.at(-1)!.role !== 'assistant') messages.pop();
  const ex: SftExample = { messages, format };
  if (context?.length) ex.context = context;
  if (id) ex.id = id;
  return ex;
}

/** Records of one .jsonl file (or a .json array), with file:line in errors. Blank lines are skipped. */
export async function readSftFile(file: string): Promise<SftExample[]> {
  const text = await fs.readFile(file, 'utf8');
  const name = path.basename(file);
  if (file.endsWith('.json') && text.trimStart().startsWith('[')) {
    const list = JSON.parse(text) as unknown[];
    return list.map((r, i) => parseSftRecord(r, `${name}[${i}]`));
  }
  const out: SftExample[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (err) {
      throw new Error(`${name}:${i + 1}: not valid JSON (${(err as Error).message})`);
    }
    out.push(parseSftRecord(record, `${name}:${i + 1}`));
  });
  return out;
}

/** Every .jsonl/.json file given, or found (recursively) in the folders given. */
export async function readSftData(paths: string | string[]): Promise<SftExample[]> {
  const files: string[] = [];
  const walk = async (p: string) => {
    const st = await fs.stat(p);
    if (st.isDirectory()) {
      for (const n of (await fs.readdir(p)).sort()) await walk(path.join(p, n));
    } else if (/\.(jsonl|json)$/i.test(p)) files.push(p);
  };
  for (const p of [paths].flat()) await walk(p);
  if (files.length === 0) throw new Error(`No .jsonl or .json files in ${[paths].flat().join(', ')}`);
  const out: SftExample[] = [];
  for (const f of files) out.push(...(await readSftFile(f)));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding

function special(tokenizer: Tokenizer, name: SpecialTokenName): number {
  const id = tokenizer.special[name];
  if (id === undefined) throw new Error(`This tokenizer has no <|${name}|> token: SFT needs a tokenizer with the chat special tokens (a BPE tokenizer trained by teamllm has them)`);
  return id;
}

export interface EncodeSftOptions {
  /** Longest sequence (the model's block size). */
  maxTokens: number;
  /** Added as the system message to examples without one. */
  systemPrompt?: string;
  /** Upper bound on context tokens (default: whatever room is left). */
  maxContextTokens?: number;
}

/** The question that passages are picked for: the last user turn. */
function lastUser(messages: ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]!.role === 'user') return messages[i]!.content;
  return '';
}

/**
 * Tokens and loss targets of one example. The context is fitted to the room the conversation
 * leaves; then the oldest turns go; last, the end of a too-long final answer is cut. Returns
 * undefined when no assistant token fits at all.
 */
export function encodeSftExample(tokenizer: Tokenizer, example: SftExample, options: EncodeSftOptions): EncodedExample | undefined {
  const end = special(tokenizer, 'end');
  let messages = example.messages;
  if (options.systemPrompt && !messages.some((m) => m.role === 'system')) messages = [{ role: 'system', content: options.systemPrompt }, ...messages];
  const block = (m: ChatMessage) => ({ role: m.role, ids: [special(tokenizer, m.role), ...tokenizer.encode(m.content), end] });
  const system = messages.filter((m) => m.role === 'system').map(block);
  let turns = messages.filter((m) => m.role !== 'system').map(block);
  let truncated = false;
  const size = (ctx: number[]) => system.reduce((n, b) => n + b.ids.length, 0) + ctx.length + turns.reduce((n, b) => n + b.ids.length, 0);
  // Context: fitted into the room the conversation leaves (at most maxContextTokens).
  let context: number[] = [];
  if (example.context?.length) {
    const room = Math.min(options.maxTokens - size([]) - 2, options.maxContextTokens ?? Infinity);
    const text = room > 8 ? fitContext(tokenizer, example.context, room, lastUser(messages)) : '';
    if (text) context = [special(tokenizer, 'context'), ...tokenizer.encode(text), end];
    if (text !== formatContext(example.context)) truncated = true;
  }
  // Old turns go first (keep the last user + assistant pair).
  while (size(context) > options.maxTokens && turns.length > 2) {
    turns = turns.slice(turns[0]!.role === 'user' && turns[1]?.role === 'assistant' ? 2 : 1);
    truncated = true;
  }
  if (size(context) > options.maxTokens && context.length) {
    context = [];
    truncated = true;
  }
  // Then the end of the final answer.
  const over = size(context) - options.maxTokens;
  if (over > 0) {
    const last = turns.at(-1)!;
    if (last.role !== 'assistant' || last.ids.length - over < 2) return undefined;
    last.ids = last.ids.slice(0, last.ids.length - over);
    truncated = true;
  }
  const ids: number[] = [];
  const counted: boolean[] = [];
  const push = (toks: number[], count: boolean) => {
    for (const t of toks) {
      ids.push(t);
      counted.push(count);
    }
  };
  for (const b of system) push(b.ids, false);
  push(context, false);
  for (const b of turns) {
    if (b.role === 'assistant') {
      push(b.ids.slice(0, 1), false); // <|assistant|> is the prompt
      push(b.ids.slice(1), true); // the answer and its <|end|>
    } else push(b.ids, false);
  }
  const targets = new Int32Array(ids.length).fill(-1);
  let assistantTokens = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    if (counted[t + 1]) {
      targets[t] = ids[t + 1]!;
      assistantTokens += 1;
    }
  }
  if (assistantTokens === 0) return undefined;
  return { ids: Int32Array.from(ids), targets, assistantTokens, truncated };
}
