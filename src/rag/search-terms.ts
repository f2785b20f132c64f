/**
 * Turns text into search terms for BM25 in any language. Intl.Segmenter (ICU, built into Node)
 * finds word boundaries in space-separated languages and many Chinese words; because ICU often
 * splits a Chinese term differently in a question than in a document (公积金 vs 公/积/金), each
 * run of CJK characters also yields all its character bigrams, which match whatever the split.
 *
 * Options (off by default, so the plain call stays what the answerers' word overlap reads; BM25
 * turns both on, local-knowledge-base.ts DEFAULT_LEXICAL):
 * - `stem`: English words are reduced to their Porter stem (npm `stemmer`, MIT): "donors" and
 *   "donor" match, and so do "reimbursed" and "reimbursement";
 * - `cjkUnigrams`: single Chinese characters too, marked `#` (生孩子 shares 生 with 生育 but no
 *   bigram); the query side weights them below words (query-expansion.ts).
 *
 * jieba (`@node-rs/jieba` cutForSearch) was measured in place of ICU and did not help
 * (docs/knowledge-base.md).
 */
import { stemmer } from 'stemmer';
import { CJK, CJK_RUN } from '../model/text/cjk.ts';
import { STOPWORDS } from '../model/text/stopwords.ts';

const segmenter = new Intl.Segmenter('zh', { granularity: 'word' });
const LATIN_WORD = /^[a-z][a-z'-]*$/;
const HYPHENATED = /\b[a-z]+(?:-[a-z]+)+\b/g;
/**
 * Search skips the question words too: in a small knowledge base "many" or "get" is absent, so its
 * idf is the highest and a sentence answering "How many days do I get?" matched it too little.
 */
const SKIP = new Set([...STOPWORDS, 'get', 'got', 'many', 'much']);

export interface TermOptions {
  /** CJK character bigrams (default true). */
  bigrams?: boolean;
  /** Porter stems of English words (default false). */
  stem?: boolean;
  /** Single Chinese characters, after the other terms (default false). */
  cjkUnigrams?: boolean;
}

/** An English word's Porter stem; other words unchanged. */
export function stem(word: string): string {
  return LATIN_WORD.test(word) && word.length > 3 ? stemmer(word.replace(/'s$/, '')) : word;
}

/** One spelling for the weekdays: 礼拜五 and 星期五 are the 周五 a timetable writes. */
const WEEKDAY_ZH = /(?:礼拜|星期)([一二三四五六日天])/gu;

export function searchTerms(text: string, options: TermOptions = {}): string[] {
  const normalized = text.normalize('NFKC').toLowerCase().replace(WEEKDAY_ZH, (_, d: string) => `周${d === '天' ? '日' : d}`);
  const terms: string[] = [];
  for (const { segment, isWordLike } of segmenter.segment(normalized)) {
    if (!isWordLike || SKIP.has(segment)) continue;
    // Single Chinese characters are too common to rank by; the bigrams below carry them.
    if (CJK.test(segment) && [...segment].length < 2) continue;
    terms.push(options.stem ? stem(segment) : segment);
  }
  // A hyphenated word is also one word ("Wi-Fi" → wifi, "e-mail" → email): askers often write it joined.
  for (const [word] of normalized.matchAll(HYPHENATED)) {
    const joined = word.replace(/-/g, '');
    if (!SKIP.has(joined)) terms.push(options.stem ? stem(joined) : joined);
  }
  const runs = [...normalized.matchAll(CJK_RUN)].map(([run]) => run);
  if (options.bigrams !== false) {
    for (const run of runs) {
      const chars = [...run];
      if (chars.length === 1) terms.push(run);
      for (let i = 0; i + 1 < chars.length; i++) terms.push(chars[i]! + chars[i + 1]!);
    }
  }
  if (options.cjkUnigrams) for (const run of runs) for (const c of run) if (!SKIP.has(c)) terms.push(`#${c}`);
  return terms;
}
