/**
 * Character-level tokenizer (one id per Unicode code point), as nanoGPT's shakespeare_char uses.
 * Good for benchmarks and tiny corpora; the BPE tokenizer is the one for real text.
 */
import {
  type CharTokenizerFile,
  type EncodeOptions,
  type SpecialTokenName,
  type StreamDecoder,
  type Tokenizer,
  SPECIAL_TOKEN_NAMES,
  SPECIAL_TOKEN_TEXT,
  splitOnSpecial,
} from './types.ts';

export class CharTokenizer implements Tokenizer {
  readonly kind = 'char' as const;
  readonly vocabSize: number;
  readonly special: Partial<Record<SpecialTokenName, number>>;
  private readonly chars: string[];
  private readonly ids: Map<string, number>;
  private readonly specialIds: Set<number>;

  constructor(chars: string[], special: Partial<Record<SpecialTokenName, number>> = {}) {
    this.chars = chars;
    this.ids = new Map(chars.map((c, i) => [c, i]));
    this.special = { ...special };
    this.specialIds = new Set(Object.values(this.special));
    this.vocabSize = chars.length + this.specialIds.size;
  }

  /** The sorted set of characters in `text` (nanoGPT's prepare.py), plus optional special tokens. */
  static fromText(text: string, options: { specialTokens?: boolean } = {}): CharTokenizer {
    const chars = [...new Set(Array.from(text))].sort();
    const special: Partial<Record<SpecialTokenName, number>> = {};
    if (options.specialTokens) SPECIAL_TOKEN_NAMES.forEach((n, i) => (special[n] = chars.length + i));
    return new CharTokenizer(chars, special);
  }

  static fromJSON(file: CharTokenizerFile): CharTokenizer {
    return new CharTokenizer(file.chars, file.specialTokens);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    const parts = options.allowSpecial ? splitOnSpecial(text, this.special) : [text];
    for (const part of parts) {
      if (typeof part === 'number') {
        out.push(part);
        continue;
      }
      for (const ch of part) {
        const id = this.ids.get(ch);
        if (id === undefined) {
          throw new Error(`Character ${JSON.stringify(ch)} is not in this character-level vocabulary`);
        }
        out.push(id);
      }
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < ids.length; i++) s += this.tokenText(ids[i]!);
    return s;
  }

  streamDecoder(): StreamDecoder {
    return { push: (id) => this.tokenText(id), flush: () => '' };
  }

  tokenText(id: number): string {
    if (id < this.chars.length) return this.chars[id] ?? '';
    for (const [name, sid] of Object.entries(this.special)) if (sid === id) return SPECIAL_TOKEN_TEXT[name as SpecialTokenName];
    return '';
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  toJSON(): CharTokenizerFile {
    return { type: 'char', version: 1, chars: this.chars, specialTokens: this.special };
  }
}
