/**
 * Tiered rules and the case the question states. Policies answer by tiers — "已满10年不满20年的，
 * 年休假10天", "a contract of one year or more and under three years: at most two months' trial",
 * "Years of service: 5–9; Annual leave: 27 days" — and employees ask with their own case: "我工作
 * 已经12年了，每年有几天年假？", "I have been here 6 years". Word overlap cannot tell the tiers apart
 * (they share every word); the numbers can. This module reads the quantities a question states and
 * the ranges a passage states, in one time scale, so that the answerer can prefer the value whose
 * tier holds the asker's case and drop the ones whose tier excludes it.
 */
const ZH_DIGITS: Record<string, number> = { 零: 0, 〇: 0, 一: 1, 二: 2, 两: 2, 三: 3, 四: 4, 五: 5, 六: 6, 七: 7, 八: 8, 九: 9 };

/** "12", "1.5", "十二", "二十", "两", "一百零五" → the number; NaN when it is none. */
export function parseNumber(text: string): number {
  const t = text.replace(/,/g, '');
  if (/^\d+(?:\.\d+)?$/.test(t)) return Number(t);
  if (!/^[零〇一二两三四五六七八九十百千]+$/u.test(t)) return NaN;
  let total = 0;
  let digit = 0;
  for (const ch of t) {
    if (ch in ZH_DIGITS) digit = ZH_DIGITS[ch]!;
    else {
      const scale = ch === '十' ? 10 : ch === '百' ? 100 : 1000;
      total += (digit || 1) * scale;
      digit = 0;
    }
  }
  return total + digit;
}

/** Days per unit of time, so that "两年" meets "三个月以上不满一年" and "6 years" meets "5–9 years". */
const DAYS: [RegExp, number][] = [
  [/^(?:years?|年|周岁|岁)$/u, 365],
  [/^(?:months?|个月|月)$/u, 30],
  [/^(?:weeks?|周|星期)$/u, 7],
  [/^(?:days?|天|日)$/u, 1],
  // Hours: a flight of "almost 12 hours" falls in "More than 9 hours".
  [/^(?:hours?|小时)$/u, 1 / 24],
];
function daysPer(unit: string): number | undefined {
  return DAYS.find(([re]) => re.test(unit.toLowerCase()))?.[1];
}

const NUM = '(\\d+(?:\\.\\d+)?|[零〇一二两三四五六七八九十百千]+)';
const ZH_UNIT = '(个月|周岁|年|月|周|星期|天|日|岁|小时)';
const EN_UNITS = 'years?|months?|weeks?|days?|hours?';
const EN_UNIT = `(${EN_UNITS})`;

/** A quantity of time the question states as the asker's case, in days ("工作已经12年" → 4380). */
export function statedQuantities(question: string): number[] {
  const q = question.normalize('NFKC');
  const out: number[] = [];
  // A newcomer's case is zero: "I just joined", "new hire", "刚入职" fall in "0–4 years", "不满1年".
  if (/\bjust (?:joined|started|been hired)\b|\bnew (?:hire|joiner|starter)\b|\bmy first (?:year|months?)\b|刚入职|刚来公司|刚进公司|新入职|新员工/iu.test(q)) out.push(0);
  const zh = new RegExp(`(?<![第几多少\\d])${NUM}\\s*${ZH_UNIT}(?![以内前后\\d零〇一二两三四五六七八九十])`, 'gu');
  for (const m of q.matchAll(zh)) {
    // "一年" in "每年", "一个月" in "一个月最多…" is a period, not a case: only numbers other than one, or one after 了/满/签.
    const n = parseNumber(m[1]!);
    const per = daysPer(m[2]!);
    if (!Number.isFinite(n) || per === undefined) continue;
    if (n === 1 && !/[满签了做干]$/u.test(q.slice(0, m.index))) continue;
    out.push(n * per);
  }
  const en = new RegExp(`\\b${NUM}\\s*${EN_UNIT}\\b`, 'giu');
  for (const m of q.matchAll(en)) {
    const n = parseNumber(m[1]!);
    const per = daysPer(m[2]!);
    if (Number.isFinite(n) && per !== undefined && n > 0 && !/\bhow many\s*$/i.test(q.slice(0, m.index))) out.push(n * per);
  }
  return out;
}

export interface StatedRange {
  /** Where the range is written in the text. */
  start: number;
  end: number;
  /** Lower bound in days, inclusive (0 when open). */
  min: number;
  /** Upper bound in days, exclusive (Infinity when open). */
  max: number;
}

/**
 * The ranges of time a text states: "已满10年不满20年", "三个月以上不满一年", "不满一年", "1年以上",
 * "0–4 years", "5-9 years", "10+ years", "between 3 and 15 years", "fewer than 3 years", "at least 3
 * years", "2 or more years", "longer than 6 months", "6 months or shorter".
 * A bare "5–9" counts in years when the text names years before it (a table row read with its
 * header: "Years of service: 5–9; …").
 */
export function statedRanges(text: string): StatedRange[] {
  const t = text.normalize('NFKC');
  const out: StatedRange[] = [];
  const add = (start: number, end: number, min: number, max: number) => {
    if (!out.some((r) => start < r.end && end > r.start)) out.push({ start, end, min, max });
  };
  const zhBetween = new RegExp(`(?:已?满)?\\s*${NUM}\\s*${ZH_UNIT}\\s*(?:以上|及以上)?(?:[，,]?\\s*)?(?:不满|未满|以下|至|到|[-–~])\\s*${NUM}\\s*${ZH_UNIT}`, 'gu');
  for (const m of t.matchAll(zhBetween)) {
    const a = parseNumber(m[1]!) * (daysPer(m[2]!) ?? NaN);
    const b = parseNumber(m[3]!) * (daysPer(m[4]!) ?? NaN);
    if (Number.isFinite(a) && Number.isFinite(b)) add(m.index!, m.index! + m[0].length, a, /[至到\-–~]/u.test(m[0]) ? b + 1 : b);
  }
  for (const m of t.matchAll(new RegExp(`(?<![未不])(?:已?满)\\s*${NUM}\\s*${ZH_UNIT}(?!\\s*(?:不满|未满))|${NUM}\\s*${ZH_UNIT}\\s*(?:以上|及以上)`, 'gu'))) {
    const n = parseNumber(m[1] ?? m[3]!) * (daysPer(m[2] ?? m[4]!) ?? NaN);
    if (Number.isFinite(n)) add(m.index!, m.index! + m[0].length, n, Infinity);
  }
  for (const m of t.matchAll(new RegExp(`(?:不满|未满)\\s*${NUM}\\s*${ZH_UNIT}|${NUM}\\s*${ZH_UNIT}\\s*以下`, 'gu'))) {
    const n = parseNumber(m[1] ?? m[3]!) * (daysPer(m[2] ?? m[4]!) ?? NaN);
    if (Number.isFinite(n)) add(m.index!, m.index! + m[0].length, 0, n);
  }
  const yearsNamed = (at: number) => /\byears?\b|年/iu.test(t.slice(0, at));
  // "5–9 years", "6 to 9 hours" ("to" only with its unit: "from 9 to 17" is a time of day).
  for (const m of t.matchAll(new RegExp(`\\b(\\d+(?:\\.\\d+)?)\\s*(?:[–-]|(to))\\s*(\\d+(?:\\.\\d+)?)(?:\\s*${EN_UNIT}\\b)?`, 'giu'))) {
    const per = m[4] ? daysPer(m[4]) : !m[2] && yearsNamed(m.index!) ? 365 : undefined;
    if (per !== undefined) add(m.index!, m.index! + m[0].length, Number(m[1]) * per, (Number(m[3]) + 1) * per);
  }
  for (const m of t.matchAll(new RegExp(`\\b(\\d+(?:\\.\\d+)?)\\s*(?:\\+|or more)\\s*${EN_UNIT}?|\\b(?:at least|more than|longer than|over)\\s+(\\d+(?:\\.\\d+)?)\\s*${EN_UNIT}`, 'giu'))) {
    const unit = m[2] ?? m[4];
    const per = unit ? daysPer(unit) : yearsNamed(m.index!) ? 365 : undefined;
    if (per !== undefined) add(m.index!, m.index! + m[0].length, Number(m[1] ?? m[3]) * per, Infinity);
  }
  for (const m of t.matchAll(new RegExp(`\\bbetween\\s+(\\d+(?:\\.\\d+)?)\\s+and\\s+(\\d+(?:\\.\\d+)?)\\s*${EN_UNIT}`, 'giu'))) {
    const per = daysPer(m[3]!)!;
    add(m.index!, m.index! + m[0].length, Number(m[1]) * per, (Number(m[2]) + 1) * per);
  }
  for (const m of t.matchAll(new RegExp(`\\b(?:less than|under|fewer than|shorter than|up to)\\s+(\\d+(?:\\.\\d+)?)\\s*${EN_UNIT}`, 'giu'))) {
    const per = daysPer(m[2]!);
    if (per !== undefined) add(m.index!, m.index! + m[0].length, 0, Number(m[1]) * per);
  }
  // "contracts of 6 months or shorter": up to and including the bound.
  for (const m of t.matchAll(new RegExp(`\\b(\\d+(?:\\.\\d+)?)\\s*${EN_UNIT}\\s+or\\s+(?:shorter|less|fewer|under)\\b`, 'giu'))) {
    const per = daysPer(m[2]!);
    if (per !== undefined) add(m.index!, m.index! + m[0].length, 0, (Number(m[1]) + 1) * per);
  }
  return out.sort((a, b) => a.start - b.start);
}

/**
 * Whether the tier that governs a value at `at` in `text` holds the asker's case: 1 when the
 * nearest range before the value (in the same clause run: no full stop between) contains a
 * quantity the question states, −1 when it excludes all of them, 0 when there is no tier or no
 * stated case; −1 for a value that is the bound of a condition when the question states no case
 * (as wrong an answer as a tier that excludes the case: "contracts of 6 months or shorter" sets no
 * probation; −0.5 before, the same on every dev split).
 */
export function tierFit(text: string, at: number, stated: number[]): number {
  const ranges = statedRanges(text);
  const own = ranges.find((r) => r.start <= at && at < r.end);
  // A value that is itself a bound ("fewer than 10 days per pay period", "满4个月") is a condition,
  // not what the rule grants; "up to 30 days" is the grant, "vest over 4 years" a duration and
  // "stay at least 12 weeks" a requirement.
  if (stated.length === 0) return own && !/^(?:up to|over|at least)\b/i.test(text.slice(own.start, own.end)) ? -1 : 0;
  const holds = (r: StatedRange) => stated.some((d) => d >= r.min && d < r.max);
  // Wrong when the condition excludes the asker's case.
  if (own) return holds(own) ? 0 : -1;
  const before = ranges.filter((r) => r.end <= at && !/[。.!?！？]\s/u.test(text.slice(r.end, at)));
  const range = before.at(-1);
  if (!range) return 0;
  return holds(range) ? 1 : -1;
}

/**
 * Whether a whole unit (a table row, one rule) is the tier of the asker's case: 1 when one of its
 * ranges holds a stated quantity, −1 when it states ranges and all exclude every one, 0 otherwise.
 */
export function unitTierFit(text: string, stated: number[]): number {
  if (stated.length === 0) return 0;
  const ranges = statedRanges(text);
  if (ranges.length === 0) return 0;
  return ranges.some((r) => stated.some((d) => d >= r.min && d < r.max)) ? 1 : -1;
}
