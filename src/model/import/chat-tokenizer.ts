/**
 * An imported chat model's tokenizer and chat template: tokenizer.json through
 * `@huggingface/tokenizers`, the template (tokenizer_config.json's `chat_template`, or a GGUF's
 * `tokenizer.chat_template`) through `@huggingface/jinja`, the end-of-turn ids from
 * generation_config.json (often several: Llama 3's <|end_of_text|>, <|eot_id|>, <|eom_id|>).
 *
 * One rule of our own: text that a person typed never becomes a special token. The template is
 * rendered with a private marker in place of each message's content; the rendered text around the
 * markers (the template's own <|im_start|>, <|eot_id|>, …) is tokenized with special tokens, each
 * message's content with special tokens switched off. A user writing "<|im_start|>system" gets the
 * ordinary pieces of that text, never the control id.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
  [key: string]: unknown;
}

export interface TokenizerJson {
  added_tokens?: AddedTokenJson[];
  model?: { type?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatTokenizerOptions {
  /** The Jinja chat template; absent: the model has none (then encodeChat refuses). */
  chatTemplate?: string;
  /** Ids that end a reply. */
  eosIds?: number[];
  /** Strings the template may use (bos_token, eos_token, …). */
  templateStrings?: Record<string, string>;
}

/** A token string from tokenizer_config.json (a string, or an AddedToken object with `content`). */
export function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** tokenizer_config.json's chat_template: a string, or a list of named templates ("default" taken). */
export function chatTemplateOf(config: Record<string, unknown>): string | undefined {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t as { name?: string; template?: string }[];
    return (named.find((x) => x.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}

export class ChatTokenizer {
  /** With special tokens matched in text: for the template's own text. */
  private readonly withSpecials: Tokenizer;
  /** Special tokens never matched: for what people typed. */
  private readonly plain: Tokenizer;
  private readonly template: Template | undefined;
  readonly specialIds: Set<number>;
  readonly eosIds: Set<number>;
  readonly chatTemplate: string | undefined;
  /** Strings the template may use (bos_token, eos_token, …), as tokenizer_config.json or the GGUF metadata gave them. */
  readonly templateStrings: Readonly<Record<string, string>>;

  constructor(
    readonly json: TokenizerJson,
    options: ChatTokenizerOptions = {},
  ) {
    const added = json.added_tokens ?? [];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.withSpecials = new Tokenizer(json as never, {});
    this.plain = new Tokenizer({ ...json, added_tokens: added.filter((t) => !t.special) } as never, {});
    this.chatTemplate = options.chatTemplate;
    this.template = options.chatTemplate ? new Template(options.chatTemplate) : undefined;
    this.eosIds = new Set(options.eosIds ?? []);
    this.templateStrings = options.templateStrings ?? {};
  }

  get vocabSize(): number {
    return this.withSpecials.get_vocab(true).size;
  }

  idOf(token: string): number | undefined {
    return this.withSpecials.token_to_id(token);
  }

  /** Text a person typed: never a special id. */
  encodeText(text: string): number[] {
    if (!text.length) return [];
    const ids = this.plain.encode(text, { add_special_tokens: false }).ids;
    if (ids.some((id: number) => this.specialIds.has(id))) throw new Error('tokenizer: plain text produced a special token (its vocabulary lists a special token as an ordinary piece)');
    return ids;
  }

  /** Text written by the template (or the program): special tokens in it are matched. */
  encodeControl(text: string): number[] {
    return text.length ? this.withSpecials.encode(text, { add_special_tokens: false }).ids : [];
  }

  decode(ids: number[], options: { skipSpecial?: boolean } = {}): string {
    return ids.length ? this.withSpecials.decode(ids, { skip_special_tokens: options.skipSpecial ?? true }) : '';
  }

  /** The template's text for these messages (what the model reads, before tokenization). */
  renderChat(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    if (!this.template) throw new Error('this model has no chat template (tokenizer_config.json chat_template, or GGUF tokenizer.chat_template)');
    return this.template.render({
      ...this.templateStrings,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? true,
    });
  }

  /**
   * The prompt ids for a conversation: the template's text with its special tokens, each message's
   * content as plain text (see the file comment). A message the template leaves out is left out.
   */
  encodeChat(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): number[] {
    const marks = messages.map((_, i) => `\uE000${i}\uE001`);
    const rendered = this.renderChat(
      messages.map((m, i) => ({ ...m, content: marks[i]! })),
      options,
    );
    const ids: number[] = [];
    let rest = rendered;
    for (const [i, mark] of marks.entries()) {
      const at = rest.indexOf(mark);
      if (at < 0) continue;
      ids.push(...this.encodeControl(rest.slice(0, at)), ...this.encodeText(messages[i]!.content));
      rest = rest.slice(at + mark.length);
    }
    if (/\uE000\d+\uE001/.test(rest)) throw new Error('chat template: it repeated or reordered message contents; teamllm cannot keep typed text apart from its special tokens');
    ids.push(...this.encodeControl(rest));
    return ids;
  }
}

/** GPT-2's byte → printable character table (byte-level BPE vocabularies are written in it). */
export function byteLevelAlphabet(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out: string[] = new Array(256);
  for (const b of keep) out[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (out[b] === undefined) out[b] = String.fromCodePoint(256 + n++);
  return out;
}

/**
 * The pre-tokenizer split of the byte-level BPE vocabularies teamllm rebuilds from GGUF files, by
 * llama.cpp's `tokenizer.ggml.pre` name (the same expressions as the models' own tokenizer.json).
 */
export const BPE_PRE_TOKENIZERS: Record<string, string> = {
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  'llama-bpe': "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

/**
 * A byte-level BPE tokenizer.json (the form Qwen2/2.5/3 and Llama 3 ship) from a vocabulary,
 * its merges and the split expression. Control (3) and user-defined (4) token types become added
 * tokens; control ones are special.
 */
export function byteLevelBpeTokenizerJson(tokens: string[], tokenTypes: number[], merges: string[], splitRegex: string): TokenizerJson {
  const vocab: Record<string, number> = {};
  const added: AddedTokenJson[] = [];
  for (const [id, t] of tokens.entries()) {
    const type = tokenTypes[id] ?? 1;
    if (type === 3 || type === 4) added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === 3 });
    else vocab[t] = id;
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: splitRegex }, behavior: 'Isolated', invert: false }, byteLevel] },
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
}
