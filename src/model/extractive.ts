/**
 * Copy-constrained ("extractive") decoding: the model still scores every token, but at each step
 * only tokens that continue a verbatim span of the prompt's retrieved context are allowed (and the
 * end token once something was generated and the span reached a clause end). Small models that cannot yet copy from their context
 * reliably then still answer with a sentence of the right passage instead of noise.
 *
 * The constraint is built from the prompt's own token ids (the `<|context|> … <|end|>` block), so
 * BPE boundaries are exactly those the model saw. Spans may only start at a line start (after a
 * newline, or the start of a passage's text) or a sentence start (after 。！？ or after . ! ? and a
 * space; list, table and heading markup at the line start skipped), and never copy a passage
 * header line (`[n] title (source)`, see formatContext in src/model/qa-prompt.ts). They may end
 * at a clause end (before punctuation, a newline or the end of the passage): allowing the end token
 * after any token, the quickstart model stopped after one or two words (tmp/notes/extractive.md).
 *
 * State: the set of context positions the text generated so far ends at. Allowed next tokens are
 * the tokens after those positions; a step costs O(matches). When no position continues, only the
 * end token is allowed; with no start at all (a context of headers only) nothing is, and generation
 * ends. A prompt without a context block gets no constraint (extractiveHook returns undefined).
 */
import type { Tokenizer } from './tokenizer/index.ts';

/** How answers are decoded: 'extractive' (verbatim spans of the context) or 'free'. */
export type DecodingMode = 'extractive' | 'free';
export const DECODING_MODES: readonly DecodingMode[] = ['extractive', 'free'];

export type AllowedTokens = (generated: readonly number[]) => Iterable<number> | null;

export interface ExtractiveConstraintOptions {
  /** The end token (allowed once at least one token was generated). */
  endToken?: number;
  /**
   * Where spans may start: at any word (default), or only at line and sentence starts. Measured on
   * the held-out handbook questions (docs/fine-tuning.md): word starts doubled "contains the gold
   * answer" (16% → 32% for the quickstart base) — small models trained on short answers begin
   * them mid-sentence ("€40 per month…"), which sentence starts forbid.
   */
  starts?: 'sentence' | 'word';
  /**
   * Where an answer may end: only at a clause end (default) — before or after punctuation (, ; :
   * . ! ? and their CJK forms, a closing bracket, a table bar), before a newline, a header line
   * or the end of the context, markup (** _ `) and spaces skipped — or after any token ('any'; measured: the
   * quickstart model then stops after a word or two, tmp/notes/extractive.md).
   */
  ends?: 'any' | 'clause';
}

const utf8 = new TextEncoder();
const WORD_CHAR = /[\p{L}\p{N}]/u;
const HAN = /\p{Script=Han}/u;

/**
 * A token that begins a word: a space then a letter or digit, or a letter or digit after a
 * non-word character. Chinese has no spaces between words, so any Han character may begin one.
 */
function isWordStart(text: string, c0: number, piece: string): boolean {
  if (/^\s[\p{L}\p{N}]/u.test(piece)) return true;
  const first = piece[0];
  if (first === undefined || !WORD_CHAR.test(first)) return false;
  return c0 === 0 || !WORD_CHAR.test(text[c0 - 1]!) || HAN.test(first);
}
const HEADER = /^\[(\d+)\](?: |$)/;
const CJK_SENTENCE_END = new Set(['。', '！', '？']);
const LATIN_SENTENCE_END = new Set(['.', '!', '?']);
// A clause ends before (or after) punctuation: Latin , ; : . ! ? only when a space or the end
// follows ("4,000" and "3.5" go on), CJK punctuation, closing brackets and table bars always.
const CLAUSE_END = /^[ \t*_`]*(?:[,;:.!?](?=[\s*_`)\]]|$)|[。！？，；：、)）\]|]|\n|$)/u;
const ENDS_LATIN_CLAUSE = /[,;:.!?][*_`]*$/u;
const ENDS_CJK_CLAUSE = /[。！？，；：、)）\]|][*_`]*$/u;

/** Whether an answer may end at character `c` of `text` (see ExtractiveConstraintOptions.ends). */
export function isClauseEnd(text: string, c: number): boolean {
  const before = text.slice(Math.max(0, c - 8), c);
  const after = text.slice(c, c + 16);
  return CLAUSE_END.test(after) || ENDS_CJK_CLAUSE.test(before) || (ENDS_LATIN_CLAUSE.test(before) && /^(?:\s|$)/u.test(after));
}

function tokenByteLength(tokenizer: Tokenizer, id: number): number {
  const t = tokenizer as Tokenizer & { tokenBytes?: (id: number) => Uint8Array };
  return t.tokenBytes ? t.tokenBytes(id).length : utf8.encode(tokenizer.decode([id])).length;
}

/** Character ranges [start, end) of the passage header lines of a formatted context block. */
export function headerLineRanges(text: string): [number, number][] {
  const out: [number, number][] = [];
  let last = 0;
  let at = 0;
  let prevBlank = true; // the start of the block counts as "after a blank line"
  while (at <= text.length) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    const line = text.slice(at, end);
    const m = HEADER.exec(line);
    if (m && prevBlank && Number(m[1]) > last) {
      last = Number(m[1]);
      out.push([at, Math.min(text.length, end + 1)]);
    }
    prevBlank = line.trim() === '';
    at = end + 1;
  }
  return out;
}

/** Whether a span may start at character `i` of `text` (a line start or a sentence start). */
export function isSpanStart(text: string, i: number): boolean {
  if (i <= 0) return true;
  const prev = text[i - 1]!;
  if (prev === '\n') return true;
  if (CJK_SENTENCE_END.has(prev)) return true;
  if (LATIN_SENTENCE_END.has(prev) && /\s/.test(text[i] ?? '')) return true; // the token " Next" after "end."
  if (/[ \t]/.test(prev)) {
    // After ". " (the space in the previous token) or "。 ".
    let j = i - 1;
    while (j > 0 && /[ \t]/.test(text[j - 1]!)) j--;
    if (j === 0) return true;
    const before = text[j - 1]!;
    if (before === '\n' || LATIN_SENTENCE_END.has(before) || CJK_SENTENCE_END.has(before)) return true;
  }
  return false;
}

export class ExtractiveConstraint {
  /** Context token ids. */
  readonly tokens: readonly number[];
  /** copyable[j]: token j may be part of an answer (not a header line). */
  readonly copyable: readonly boolean[];
  /** start[j]: a span may begin at token j. */
  readonly start: readonly boolean[];
  /** end[j]: an answer may end after token j. */
  readonly end: readonly boolean[];
  private readonly startsByToken = new Map<number, number[]>();
  private readonly endToken: number | undefined;
  // Incremental state: positions matched by the first `length` generated tokens.
  private length = 0;
  private matches: number[] = [];
  private lastGenerated: number | undefined;

  constructor(tokenizer: Tokenizer, contextTokens: readonly number[], options: ExtractiveConstraintOptions = {}) {
    this.tokens = [...contextTokens];
    this.endToken = options.endToken ?? tokenizer.special.end;
    const text = tokenizer.decode(this.tokens);
    // The character each UTF-8 byte belongs to, and which byte offsets start a character.
    const bytes = utf8.encode(text).length;
    const charOf = new Int32Array(bytes + 1);
    const boundary = new Uint8Array(bytes + 1);
    let b = 0;
    let ci = 0;
    for (const ch of text) {
      const n = utf8.encode(ch).length;
      boundary[b] = 1;
      for (let k = 0; k < n; k++) charOf[b + k] = ci;
      b += n;
      ci += ch.length;
    }
    charOf[bytes] = ci;
    boundary[bytes] = 1;
    const headers = headerLineRanges(text);
    const inHeader = (from: number, to: number) => headers.some(([s, e]) => from < e && to > s);
    const copyable: boolean[] = [];
    const start: boolean[] = [];
    const endAfter: number[] = [];
    let byte = 0;
    let pendingMarkup = false;
    for (const id of this.tokens) {
      const len = tokenByteLength(tokenizer, id);
      const c0 = charOf[Math.min(byte, bytes)]!;
      const c1 = len > 0 ? charOf[Math.min(byte + len - 1, bytes)]! + 1 : c0;
      const ok = !tokenizer.isSpecial(id) && !inHeader(c0, Math.max(c1, c0 + 1));
      copyable.push(ok);
      const piece = text.slice(c0, c1);
      const atStart = ok && boundary[Math.min(byte, bytes)] === 1 && (isSpanStart(text, c0) || (options.starts !== 'sentence' && isWordStart(text, c0, piece)));
      // List, table and heading markup ("- ", "| ", "### ", "**") is not an answer: a span starts at
      // the first token after it with a letter or digit.
      const pending: boolean = atStart || (start.length > 0 && pendingMarkup);
      const wordy = /[\p{L}\p{N}]/u.test(piece);
      start.push(ok && pending && wordy);
      pendingMarkup = ok && pending && !wordy && !piece.includes('\n');
      endAfter.push(c1);
      byte += len;
    }
    const clauseEnd = (j: number) =>
      j + 1 >= this.tokens.length || !copyable[j + 1] || isClauseEnd(text, endAfter[j]!);
    this.end = this.tokens.map((_, j) => options.ends === 'any' || clauseEnd(j));
    this.copyable = copyable;
    this.start = start;
    start.forEach((s, j) => {
      if (!s) return;
      const id = this.tokens[j]!;
      const list = this.startsByToken.get(id);
      if (list) list.push(j);
      else this.startsByToken.set(id, [j]);
    });
  }

  /**
   * The constraint of a chat prompt: its `<|context|> … <|end|>` block (the last one). Undefined
   * when the prompt has no context block (no passage was retrieved: decode freely); a block with
   * nothing to copy (headers only) allows nothing, so the answer is empty.
   */
  static fromPrompt(tokenizer: Tokenizer, promptTokens: readonly number[], options: Omit<ExtractiveConstraintOptions, 'endToken'> = {}): ExtractiveConstraint | undefined {
    const ctx = tokenizer.special.context;
    const end = tokenizer.special.end;
    if (ctx === undefined || end === undefined) return undefined;
    const open = promptTokens.lastIndexOf(ctx);
    if (open < 0) return undefined;
    let close = promptTokens.indexOf(end, open + 1);
    if (close < 0) close = promptTokens.length;
    return new ExtractiveConstraint(tokenizer, promptTokens.slice(open + 1, close), { ...options, endToken: end });
  }

  /** Positions of the context the generated tokens end at (each a verbatim copy from a span start). */
  positions(generated: readonly number[]): readonly number[] {
    this.sync(generated);
    return this.matches;
  }

  /** The tokens that may come next: tokens continuing a match, and the end token after the first token. */
  allowed(generated: readonly number[]): Set<number> {
    this.sync(generated);
    const out = new Set<number>();
    if (generated.length === 0) {
      for (const id of this.startsByToken.keys()) out.add(id);
      return out;
    }
    let canEnd = false;
    for (const j of this.matches) {
      const k = j + 1;
      if (k < this.tokens.length && this.copyable[k]) out.add(this.tokens[k]!);
      if (this.end[j]) canEnd = true;
    }
    if (this.endToken !== undefined && (canEnd || out.size === 0)) out.add(this.endToken);
    return out;
  }

  /** The hook for GenerateOptions.allowedTokens. */
  hook(): AllowedTokens {
    return (generated) => this.allowed(generated);
  }

  private sync(generated: readonly number[]): void {
    const n = generated.length;
    // One more token than last time (the usual case): advance the matches, O(matches).
    if (n === this.length + 1 && (n === 1 || generated[n - 2] === this.lastGenerated)) {
      this.advance(generated[n - 1]!);
      return;
    }
    if (n === this.length && (n === 0 || generated[n - 1] === this.lastGenerated)) return;
    // Anything else (a new generation, a different history): recompute from the start.
    this.length = 0;
    this.matches = [];
    this.lastGenerated = undefined;
    for (const id of generated) this.advance(id);
  }

  private advance(id: number): void {
    if (this.length === 0) this.matches = [...(this.startsByToken.get(id) ?? [])];
    else {
      const next: number[] = [];
      for (const j of this.matches) {
        const k = j + 1;
        if (k < this.tokens.length && this.copyable[k] && this.tokens[k] === id) next.push(k);
      }
      this.matches = next;
    }
    this.length += 1;
    this.lastGenerated = id;
  }
}

/** The allowed-tokens hook for a prompt, or undefined when the prompt carries no context to copy. */
export function extractiveHook(tokenizer: Tokenizer, promptTokens: readonly number[], options: Omit<ExtractiveConstraintOptions, 'endToken'> = {}): AllowedTokens | undefined {
  return ExtractiveConstraint.fromPrompt(tokenizer, promptTokens, options)?.hook();
}
