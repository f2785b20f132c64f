/**
 * An imported encoder's tokenizer: its tokenizer.json through `@huggingface/tokenizers` (WordPiece
 * for BERT, Unigram/SentencePiece for XLM-R), with one rule of our own: text a user typed never
 * yields a special token. The library would turn a typed "[CLS]" or "</s>" into the control token
 * (it splits added tokens out of the text first); here special added tokens are not matched in
 * text at all, any special id the model still produces is replaced by the unknown token, and only
 * the tokens the encoder itself adds around a sequence ([CLS] … [SEP], <s> … </s>) are special.
 */
import { Tokenizer } from '@huggingface/tokenizers';

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

interface TokenizerJson {
  added_tokens?: AddedTokenJson[];
  model?: { type?: string; unk_token?: string; unk_id?: number; vocab?: unknown; [key: string]: unknown };
  post_processor?: unknown;
  [key: string]: unknown;
}

export interface EncodedText {
  ids: number[];
  /** Token type ids (all 0: one sequence). */
  typeIds: number[];
}

export class EncoderTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly specialIds: Set<number>;
  private readonly unkId: number;
  /** What the encoder adds before and after a sequence. */
  readonly prefix: number[];
  readonly suffix: number[];

  constructor(
    readonly json: TokenizerJson,
    config: Record<string, unknown> = {},
  ) {
    const added = json.added_tokens ?? [];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    // Special tokens stay in the vocabulary (ids still map) but are never split out of text.
    const plain = { ...json, added_tokens: added.filter((t) => !t.special) };
    this.tokenizer = new Tokenizer(plain, { ...config, split_special_tokens: true });
    const unkToken = json.model?.unk_token ?? (typeof json.model?.unk_id === 'number' ? undefined : '[UNK]');
    const unk = unkToken !== undefined ? this.tokenizer.token_to_id(unkToken) : json.model?.unk_id;
    this.unkId = typeof unk === 'number' ? unk : 0;
    // Where the post-processor puts the sequence: compare one probe with and without it.
    const probe = this.tokenizer.encode('a', { add_special_tokens: false }).ids;
    const wrapped = this.tokenizer.encode('a', { add_special_tokens: true }).ids;
    const at = indexOfRun(wrapped, probe);
    if (at < 0) throw new Error('tokenizer.json: its post-processor does not keep the text between the tokens it adds');
    this.prefix = wrapped.slice(0, at);
    this.suffix = wrapped.slice(at + probe.length);
  }

  get vocabSize(): number {
    return this.tokenizer.get_vocab(true).size;
  }

  /** The text's own tokens (no [CLS]/[SEP]); never a special id. */
  tokenize(text: string): number[] {
    const ids: number[] = text.length ? this.tokenizer.encode(text, { add_special_tokens: false }).ids : [];
    return ids.map((id: number) => (this.specialIds.has(id) ? this.unkId : id));
  }

  /** [prefix] text [suffix], the text cut to fit `maxTokens` in all. */
  encode(text: string, maxTokens = Number.POSITIVE_INFINITY): EncodedText {
    const room = Math.max(0, maxTokens - this.prefix.length - this.suffix.length);
    const body = this.tokenize(text).slice(0, room);
    const ids = [...this.prefix, ...body, ...this.suffix];
    return { ids, typeIds: ids.map(() => 0) };
  }

  /** The text of the ids, special tokens left out (the library no longer knows them as special: see the constructor). */
  decode(ids: number[]): string {
    const text = ids.filter((id) => !this.specialIds.has(id));
    return text.length ? this.tokenizer.decode(text, { skip_special_tokens: true }) : '';
  }

  idOf(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}

function indexOfRun(haystack: number[], needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * A BERT WordPiece tokenizer.json from a vocabulary (the form Hugging Face writes for bert-base
 * and bge): lower-casing BertNormalizer, BertPreTokenizer, WordPiece with "##" continuations,
 * [CLS] text [SEP]. GGUF files carry only the vocabulary; this rebuilds the rest as llama.cpp's
 * own WordPiece tokenizer reads it (it always lower-cases).
 */
export function wordPieceTokenizerJson(vocab: string[], special: { cls: string; sep: string; unk: string; pad?: string; mask?: string }, lowercase = true): TokenizerJson {
  const ids = new Map(vocab.map((t, i) => [t, i]));
  const need = (t: string) => {
    const id = ids.get(t);
    if (id === undefined) throw new Error(`the vocabulary has no ${t} token`);
    return id;
  };
  const specials = [special.pad, special.unk, special.cls, special.sep, special.mask].filter((t): t is string => !!t && ids.has(t));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((t) => ({ id: need(t), content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: special.cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: special.sep, type_id: 0 } }],
      pair: [
        { SpecialToken: { id: special.cls, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: special.sep, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: special.sep, type_id: 1 } },
      ],
      special_tokens: {
        [special.cls]: { id: special.cls, ids: [need(special.cls)], tokens: [special.cls] },
        [special.sep]: { id: special.sep, ids: [need(special.sep)], tokens: [special.sep] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: special.unk, continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: Object.fromEntries(vocab.map((t, i) => [t, i])) },
  };
}

/** SentencePiece's piece types, as GGUF's tokenizer.ggml.token_type stores them (llama.h llama_token_type). */
export const PIECE_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

export interface UnigramVocabulary {
  pieces: string[];
  scores: number[];
  /** PIECE_TYPE per piece. */
  types: number[];
  /** SentencePiece's normaliser rules in their binary form (normalizer_spec.precompiled_charsmap); empty: none. */
  charsmap: Uint8Array;
  /** Whether "▁" is put before the text (SentencePiece's add_dummy_prefix). */
  addSpacePrefix: boolean;
  unk: number;
  /** Put before and after the text, when set. */
  bos?: number;
  eos?: number;
}

/**
 * An XLM-R SentencePiece tokenizer.json from a Unigram vocabulary, in the form transformers'
 * XLMRobertaConverter writes it (and llama.cpp's converter reads back: it takes the charsmap from
 * `normalizer.precompiled_charsmap` and the scores from `model.vocab`): Precompiled normaliser,
 * Metaspace ("▁" for spaces, one before the text), Unigram with the scores, unknown and control
 * pieces as special added tokens, `<s> text </s>`. GGUF files carry exactly these parts; this
 * puts them back together so a GGUF's tokenizer runs through the same library as a folder's.
 */
export function unigramTokenizerJson(v: UnigramVocabulary): TokenizerJson {
  const { pieces, scores, types } = v;
  const special = (id: number) => types[id] === PIECE_TYPE.control || types[id] === PIECE_TYPE.unknown;
  const added = pieces.flatMap((content, id) =>
    special(id) || types[id] === PIECE_TYPE.userDefined ? [{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: special(id) }] : [],
  );
  const around = (id: number | undefined) => (id === undefined ? [] : [{ SpecialToken: { id: pieces[id]!, type_id: 0 } }]);
  const metaspace = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: v.addSpacePrefix ? 'always' : 'never', split: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: v.charsmap.length ? { type: 'Precompiled', precompiled_charsmap: Buffer.from(v.charsmap).toString('base64') } : null,
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'TemplateProcessing',
      single: [...around(v.bos), { Sequence: { id: 'A', type_id: 0 } }, ...around(v.eos)],
      pair: [...around(v.bos), { Sequence: { id: 'A', type_id: 0 } }, ...around(v.eos), ...around(v.eos), { Sequence: { id: 'B', type_id: 0 } }, ...around(v.eos)],
      special_tokens: Object.fromEntries([v.bos, v.eos].filter((id): id is number => id !== undefined).map((id) => [pieces[id]!, { id: pieces[id]!, ids: [id], tokens: [pieces[id]!] }])),
    },
    decoder: metaspace,
    model: { type: 'Unigram', unk_id: v.unk, vocab: pieces.map((p, i) => [p, scores[i] ?? 0]), byte_fallback: types.includes(PIECE_TYPE.byte) },
  };
}
