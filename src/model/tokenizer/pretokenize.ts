/**
 * Pre-tokenization: the text is cut into chunks and BPE merges never cross a chunk boundary.
 *
 * Like GPT-4's pattern (English contractions, words with their leading space, numbers in groups of
 * up to three digits, punctuation runs, whitespace), with one change for Chinese and Japanese: runs
 * of Han, Hiragana and Katakana are chunks of their own (not glued to Latin letters), so merges
 * inside them learn frequent characters and words ("公司", "年假") from the corpus.
 */
const CJK = '\\p{sc=Han}\\p{sc=Hiragana}\\p{sc=Katakana}';

export const DEFAULT_PATTERN = [
  "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])",
  ` ?[[\\p{L}\\p{M}]--[${CJK}]]+`,
  `[${CJK}]+`,
  '\\p{N}{1,3}',
  ' ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*',
  '\\s*[\\r\\n]+',
  '\\s+(?!\\S)',
  '\\s+',
].join('|');

export function compilePattern(source: string = DEFAULT_PATTERN): RegExp {
  return new RegExp(source, 'gv');
}

/** The chunks of `text` (their concatenation is `text`). */
export function* pretokenize(text: string, re: RegExp = compilePattern()): Generator<string> {
  re.lastIndex = 0;
  let last = 0;
  for (const m of text.matchAll(re)) {
    // The pattern covers every character; guard anyway so no text is ever dropped.
    if (m.index! > last) yield text.slice(last, m.index);
    yield m[0];
    last = m.index! + m[0].length;
  }
  if (last < text.length) yield text.slice(last);
}
