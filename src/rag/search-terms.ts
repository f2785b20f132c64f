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
/** 钟头 is spoken Chinese for the 小时 that rules write. */
const HOUR_ZH = /钟头/gu;

/**
 * Chinese separable verbs (离合词): an asker splits them around a count or an aspect particle
 * ("加多少个钟头的班", "请三天假", "住了两天院"), a rule writes them whole (加班, 请假, 住院), and
 * neither ICU's words nor the bigrams join the halves again. The gap may hold only what grammar
 * puts there — numbers, measure words, 了/过/的 — so "上海办公室的班车" is not 上班. 休…假 and
 * 放…假 are left apart: "结婚能休几天假" is about 婚假, and a joined 休假 matched the procedural
 * "连续休假超过 5 个工作日" instead.
 */
const SEPARABLE_VERBS = ['加班', '值班', '上班', '请假', '出差', '住院', '看病', '生病', '结婚', '离婚', '辞职', '开会', '打卡', '停车', '体检'];
const SEPARABLE_GAP = '[了过着的个几多少久两一二三四五六七八九十百千半整天周月年次回趟场顿点小时钟头0-9]{1,8}';
const SEPARATED = new RegExp(SEPARABLE_VERBS.map((w) => `${w[0]}${SEPARABLE_GAP}${w[1]}`).join('|'), 'gu');

/** The separable verbs written apart in `text`, joined again. */
function joinedSeparableVerbs(text: string): string[] {
  return [...text.matchAll(SEPARATED)].map(([m]) => {
    const chars = [...m];
    return chars[0]! + chars[chars.length - 1]!;
  }).filter((w) => SEPARABLE_VERBS.includes(w));
}

/** "IT" in capitals is the department ("contact IT", "IT 服务台"), not the pronoun a stop word drops. */
const IT_DEPARTMENT = /(?<![A-Za-z])IT(?![A-Za-z])/g;

export function searchTerms(text: string, options: TermOptions = {}): string[] {
  const normalized = text
    .replace(IT_DEPARTMENT, ' itdept ')
    .normalize('NFKC')
    .toLowerCase()
    .replace(WEEKDAY_ZH, (_, d: string) => `周${d === '天' ? '日' : d}`)
    .replace(HOUR_ZH, '小时');
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
  terms.push(...joinedSeparableVerbs(normalized));
  // "HR的电话", "找HR": Chinese text writes the department 人力资源.
  if (runs.length > 0 && /(?<![a-z])hr(?![a-z])/.test(normalized)) terms.push('人力资源', '人力', '资源');
  if (options.cjkUnigrams) for (const run of runs) for (const c of run) if (!SKIP.has(c)) terms.push(`#${c}`);
  return terms;
}
