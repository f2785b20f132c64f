/**
 * Words too common to rank text by, English and Chinese: the one list that retrieval's search terms
 * (rag/search-terms.ts) and the prompt's context fitting (qa-prompt.ts) both skip. In the model
 * layer because the prompt layout needs it and every layer above may import the model.
 */
export const STOPWORDS: ReadonlySet<string> = new Set(
  'a an and are as at be by can do does for from has have how i if in is it me my of on or our should the their there this to us was we what when where which who why will with you your 的 了 是 在 和 吗 呢 吧 我 我们 你 要 有 什么 怎么 如何 多少 几 哪 哪些 请问 可以 需要'.split(' '),
);
