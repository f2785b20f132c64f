/**
 * Turns text into search terms for BM25 in any language. Intl.Segmenter (ICU, built into Node)
 * finds word boundaries in space-separated languages and many Chinese words; because ICU often
 * splits a Chinese term differently in a question than in a document (公积金 vs 公/积/金), each
 * run of CJK characters also yields all its character bigrams, which match whatever the split.
 */
const segmenter = new Intl.Segmenter('zh', { granularity: 'word' });
const CJK_RUN = /[\u3400-\u9fff\uf900-\ufaff]+/g;
const CJK = /[\u3400-\u9fff\uf900-\ufaff]/;
const STOPWORDS = new Set(
  'a an and are as at be by can do does for from has have how i if in is it me my of on or our should the their there this to us was we what when where which who why will with you your 的 了 是 在 和 吗 呢 吧 我 我们 你 要 有 什么 怎么 如何 多少 几 哪 哪些 请问 可以 需要'.split(' '),
);

export function searchTerms(text: string, options: { bigrams?: boolean } = {}): string[] {
  const normalized = text.normalize('NFKC').toLowerCase();
  const terms: string[] = [];
  for (const { segment, isWordLike } of segmenter.segment(normalized)) {
    if (!isWordLike || STOPWORDS.has(segment)) continue;
    // Single Chinese characters are too common to rank by; the bigrams below carry them.
    if (CJK.test(segment) && [...segment].length < 2) continue;
    terms.push(segment);
  }
  if (options.bigrams === false) return terms;
  for (const [run] of normalized.matchAll(CJK_RUN)) {
    const chars = [...run];
    if (chars.length === 1) terms.push(run);
    for (let i = 0; i + 1 < chars.length; i++) terms.push(chars[i]! + chars[i + 1]!);
  }
  return terms;
}
