/**
 * What every tokenizer offers: text <-> ids, and the special tokens of the chat template.
 */

/** The roles and markers of the chat template, each one token. */
export const SPECIAL_TOKEN_NAMES = ['system', 'user', 'assistant', 'context', 'end'] as const;
export type SpecialTokenName = (typeof SPECIAL_TOKEN_NAMES)[number];

/** How special tokens are written in text (and in the tokenizer file). */
export const SPECIAL_TOKEN_TEXT: Record<SpecialTokenName, string> = {
  system: '<|system|>',
  user: '<|user|>',
  assistant: '<|assistant|>',
  context: '<|context|>',
  end: '<|end|>',
};

export interface EncodeOptions {
  /**
   * Recognise special-token text such as `<|user|>` as the special token. Off by default, so text
   * typed by users cannot forge the chat template's markers.
   */
  allowSpecial?: boolean;
}

/** Turns ids back into text piece by piece, holding back incomplete UTF-8 sequences. */
export interface StreamDecoder {
  /** Text completed by this token ('' when the token ends mid-character). */
  push(id: number): string;
  /** Whatever is still held back. */
  flush(): string;
}

export interface Tokenizer {
  readonly kind: 'char' | 'bpe';
  /** Ids are 0..vocabSize-1 (special tokens included). */
  readonly vocabSize: number;
  /** Special token ids by name (absent when the tokenizer was built without them). */
  readonly special: Partial<Record<SpecialTokenName, number>>;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>): string;
  streamDecoder(): StreamDecoder;
  /** A readable form of one token (for inspection and debugging). */
  tokenText(id: number): string;
  isSpecial(id: number): boolean;
  /** The serialisable form, written to tokenizer.json. */
  toJSON(): TokenizerFile;
}

export interface CharTokenizerFile {
  type: 'char';
  version: 1;
  /** Characters (code points) in id order; special tokens follow them. */
  chars: string[];
  specialTokens: Partial<Record<SpecialTokenName, number>>;
}

export interface BpeTokenizerFile {
  type: 'bpe';
  version: 1;
  /** The pre-tokenizer (regular expression source, flags 'gv'). */
  pattern: string;
  /** Merges in rank order: ids 256 + i are made of the pair merges[i]. */
  merges: [number, number][];
  specialTokens: Partial<Record<SpecialTokenName, number>>;
  /** For people reading the file only: each id's text (bytes that are not UTF-8 as <0xNN>). */
  vocab?: string[];
}

export type TokenizerFile = CharTokenizerFile | BpeTokenizerFile;

/** Splits text around special-token markers: [text, specialId, text, ...]. */
export function splitOnSpecial(
  text: string,
  special: Partial<Record<SpecialTokenName, number>>,
): (string | number)[] {
  const entries = Object.entries(special) as [SpecialTokenName, number][];
  if (entries.length === 0) return [text];
  const byText = new Map(entries.map(([name, id]) => [SPECIAL_TOKEN_TEXT[name], id]));
  const re = new RegExp([...byText.keys()].map((t) => t.replace(/[|<>]/g, (c) => `\\${c}`)).join('|'), 'g');
  const out: (string | number)[] = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index! > last) out.push(text.slice(last, m.index));
    out.push(byText.get(m[0])!);
    last = m.index! + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}
