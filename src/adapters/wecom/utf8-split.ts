/** WeCom counts message length in UTF-8 bytes (a Chinese character is 3, most emoji 4), not characters. */
export const WECOM_TEXT_LIMIT_BYTES = 2048;

const encoder = new TextEncoder();

export function utf8Length(text: string): number {
  return encoder.encode(text).length;
}

/** Breaking after one of these reads naturally; a hard cut mid-sentence is the last resort. */
const PARAGRAPH = /\n\s*\n/g;
const LINE = /\n/g;
const SENTENCE = /[。！？；.!?;]\s*|[，、,:：]\s*|\s+/gu;

/**
 * Cuts text into pieces of at most `maxBytes` UTF-8 bytes, never inside a code point, preferring
 * a paragraph, line, sentence or word boundary in the later part of each piece. The pieces
 * concatenate back to the original text exactly.
 */
export function splitUtf8(text: string, maxBytes = WECOM_TEXT_LIMIT_BYTES): string[] {
  if (maxBytes < 4) throw new RangeError('maxBytes must leave room for one code point (4 bytes)');
  const pieces: string[] = [];
  let rest = text;
  while (utf8Length(rest) > maxBytes) {
    const hardEnd = fitPrefix(rest, maxBytes);
    const end = preferredBreak(rest.slice(0, hardEnd)) ?? hardEnd;
    pieces.push(rest.slice(0, end));
    rest = rest.slice(end);
  }
  if (rest) pieces.push(rest);
  return pieces;
}

/** The longest prefix (in UTF-16 units, ending on a code point boundary) within `maxBytes`. */
function fitPrefix(text: string, maxBytes: number): number {
  let bytes = 0;
  let index = 0;
  for (const char of text) {
    const cp = char.codePointAt(0)!;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + size > maxBytes) break;
    bytes += size;
    index += char.length;
  }
  return index;
}

/** End of the last natural boundary in the second half of `window`, if there is one. */
function preferredBreak(window: string): number | undefined {
  const floor = Math.floor(window.length / 2);
  for (const pattern of [PARAGRAPH, LINE, SENTENCE]) {
    let best: number | undefined;
    for (const match of window.matchAll(pattern)) {
      const end = match.index + match[0].length;
      if (end > floor && end <= window.length) best = end;
    }
    if (best !== undefined) return best;
  }
  return undefined;
}
