/**
 * Turns text into search terms for BM25 in any language. Intl.Segmenter (ICU, built into Node)
 * finds word boundaries in Chinese as well as in space-separated languages; CJK runs also give
 * character bigrams, so a query still matches when ICU segments it differently from the document.
 */
const segmenter = new Intl.Segmenter(undefined, { granularity: 'word' });
const CJK = /[\u3400-\u9fff\uf900-\ufaff]/;
const STOPWORDS = new Set(
  'a an and are as at be by can do does for from has have how i if in is it me my of on or our should the their there this to us was we what when where which who why will with you your 的 了 是 在 和 吗 呢 吧 我 我们 你 要 有 什么 怎么 如何 多少 几 哪 哪些 请问'.split(' '),
);

export function searchTerms(text: string): string[] {
  const terms: string[] = [];
  for (const { segment, isWordLike } of segmenter.segment(text.normalize('NFKC').toLowerCase())) {
    if (!isWordLike) continue;
    if (CJK.test(segment)) {
      if (!STOPWORDS.has(segment)) terms.push(segment);
      const chars = [...segment];
      if (chars.length > 2) for (let i = 0; i + 1 < chars.length; i++) terms.push(chars[i]! + chars[i + 1]!);
    } else if (!STOPWORDS.has(segment)) {
      terms.push(segment);
    }
  }
  return terms;
}
