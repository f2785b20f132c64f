/**
 * Typed values in a sentence — amounts of money, percentages, times of day, dates, counts with
 * their unit, weekdays, years, e-mail addresses and phone numbers — found by the same rules everywhere: the QA generator turns them
 * into questions (training/sft/qa-generator.ts) and the answerer proposes them as direct answers
 * to questions that ask for that type (answer-candidates.ts). One list of units, one set of regexes.
 */
export type ValueKind = 'money' | 'percent' | 'time' | 'date' | 'count' | 'weekday' | 'year' | 'email' | 'phone';

export interface TypedValue {
  start: number;
  end: number;
  text: string;
  kind: ValueKind;
  /** The unit of a count ("days", "个月"), lower-cased, as written. */
  unit?: string;
}

export const MONTHS = 'January|February|March|April|May|June|July|August|September|October|November|December';
export const UNITS_EN =
  'working days|business days|calendar days|days|day|weeks|week|months|month|years|year|hours|hour|minutes|minute|seconds|characters|digits|employees|people|colleagues|persons|times|nights|members|offices|rooms|laptops|licences|licenses|sessions|steps|levels|kilometres|km|kg|GB|TB|MB';
export const UNITS_ZH = '个工作日|工作日|个月|月|天|日|周|星期|年|小时|个钟头|钟头|分钟|次|人|名|个|份|家|元|公里|层|晚|倍';
/** Units after a Chinese numeral as laws write them ("二个月", "三十日", "十六周岁"); not 个 or 名 alone: 一个, 一名 are rarely amounts. */
const ZH_NUMERAL_UNITS = '个工作日|工作日|个月|周岁|小时|天|日|周|年|次|倍|元';
const ZH_NUMERAL = '[零〇一二两三四五六七八九十百千万]+';

const RULES: { kind: ValueKind; re: RegExp }[] = [
  // Where to write or call: "phish@lumenharbor.com", "phone ext. 4400", "分机 8035", "400-820-6631".
  { kind: 'email', re: /[\w.+-]+@[\w-]+(?:\.[\w-]+)+/g },
  { kind: 'phone', re: /(?<=\b(?:phone|tel\.?|call|ext\.?|extension|hotline|dial)\s*(?:ext\.?\s*|number\s*)?[:：]?\s*|(?:分机|电话|热线|座机)\s*[:：]?\s*)\+?\d[\d -]{1,16}\d/giu },
  { kind: 'phone', re: /(?:\+\d{1,3} ?)?\b\d{3,4}-\d{3,4}-\d{3,4}\b|\+\d{1,3}(?: \d{1,4}){2,4}\b/g },
  {
    kind: 'money',
    re: /(?:[€£¥]|(?:US|HK|NZ|A|C|S)?\$|EUR ?|USD ?|RMB ?|CNY ?)\d[\d,.]*(?: ?(?:million|billion|thousand|k|万))?(?: ?(?:per|a|\/) ?(?:month|year|day|night|person|week|hour|km|kilometre|kilometer|mile|head))?|\d[\d,.]*(?: ?(?:million|billion))? ?(?:euros?|dollars|元|块钱)/gu,
  },
  { kind: 'percent', re: /\d+(?:\.\d+)?(?: ?[–-] ?\d+(?:\.\d+)?)? ?%|百分之[零〇一二两三四五六七八九十百\d.]+/gu },
  // A span of hours or days is one answer: "10:00–15:30", "3 月 1 日至 6 月 30 日", "15 December – 2 January".
  { kind: 'time', re: /\b\d{1,2}:\d{2} ?(?:[–~-]|至|到|to) ?\d{1,2}:\d{2}\b/g },
  { kind: 'date', re: /(?:\d{4} ?年 ?)?\d{1,2} ?月 ?\d{1,2} ?[日号] ?(?:[–~-]|至|到) ?(?:\d{4} ?年 ?)?(?:\d{1,2} ?月 ?)?\d{1,2} ?[日号]/g },
  { kind: 'date', re: new RegExp(`\\b\\d{1,2} (?:${MONTHS})(?: \\d{4})? ?[–-] ?\\d{1,2} (?:${MONTHS})(?: \\d{4})?\\b`, 'g') },
  { kind: 'time', re: /\b\d{1,2}:\d{2}\b/g },
  { kind: 'date', re: new RegExp(`\\b\\d{1,2} (?:${MONTHS})(?: \\d{4})?\\b|\\b(?:${MONTHS}) \\d{1,2}(?:, \\d{4})?\\b`, 'g') },
  { kind: 'date', re: /(?:\d{4} ?年 ?)?\d{1,2} ?月 ?\d{1,2} ?[日号]/g },
  // A month by its number, not a number of months (that is 个月): "随次年 1 月工资一起发放".
  { kind: 'date', re: /(?<![\d.每个几多少第])(?:1[0-2]|[1-9]) ?月(?![日号份\d])/g },
  // A day of every month: pay days, deadlines ("每月 10 日", "the 25th of each month").
  { kind: 'date', re: /每(?:个)?月 ?\d{1,2} ?[日号]/g },
  { kind: 'date', re: /\b(?:the )?\d{1,2}(?:st|nd|rd|th) (?:of )?(?:each|every|the|the following|the next) month\b/g },
  // One describing word may stand between the number and its unit: "2 wellbeing days", "8 free sessions".
  { kind: 'count', re: new RegExp(`\\b\\d[\\d,.]*(?:[–-]\\d+)? ?(?:(?!(?:of|per|a|an|the|in|or|and|to|more|than|for|at|on|by)\\b)[a-z]+ )?(?:${UNITS_EN})\\b`, 'g') },
  { kind: 'count', re: new RegExp(`\\d[\\d,.]*(?:[–-]\\d+)? ?(?:${UNITS_ZH})`, 'g') },
  // Not ordinals or references (第一年, 上一年度, 这一天, 同一天) nor 一次性.
  { kind: 'count', re: new RegExp(`(?<![第上下这同])${ZH_NUMERAL}(?:${ZH_NUMERAL_UNITS})(?![性])`, 'gu') },
  { kind: 'weekday', re: /(?<![A-Z][a-z]+ )\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)s?\b(?!["”])/g },
  { kind: 'weekday', re: /星期[一二三四五六日天]|周[一二三四五六日]/g },
  { kind: 'year', re: /\b(?:19|20)\d{2}\b/g },
];

const LEADING_NUMBER = /^(?:[\d,.–-]+|[零〇一二两三四五六七八九十百千万]+) ?/u;

/** Typed values in a sentence, earliest first, non-overlapping (the first rule that claims a span keeps it). */
export function typedValues(s: string): TypedValue[] {
  const found: TypedValue[] = [];
  for (const { kind, re } of RULES) {
    for (const m of s.matchAll(re)) {
      const start = m.index!;
      const end = start + m[0].length;
      if (found.some((f) => start < f.end && end > f.start)) continue;
      // An ordinal ("第二份合同", "第3年") counts nothing.
      if (kind === 'count' && s[start - 1] === '第') continue;
      const value: TypedValue = { start, end, text: m[0].trim(), kind };
      if (kind === 'count') value.unit = m[0].replace(LEADING_NUMBER, '').toLowerCase();
      found.push(value);
    }
  }
  return found.sort((a, b) => a.start - b.start);
}
