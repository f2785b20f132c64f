/**
 * Candidate answers proposed from the retrieved passages, before any model looks at them:
 *
 * 1. the passages are cut into answer units — sentences, list items, and table rows read with
 *    their header ("Years of service: 5–9 years; Annual leave: 27 days"), markdown removed;
 * 2. each unit is scored against the question: the idf-weighted share of the question's terms it
 *    holds (terms of its heading path count half), whether it holds a value of the kind the
 *    question asks for (question-intent.ts), and the rank of its passage;
 * 3. each of the best units proposes direct answers: the typed values the question asks for
 *    ("25 days"), its clauses, and the unit itself.
 *
 * `prior` is this rule-based score. The answerer adds the model's score (answer-selection.ts): the
 * model chooses among the candidates, the rules only propose them.
 */
import type { Source } from '../core/index.ts';
import { questionIntent, type QuestionIntent } from './question-intent.ts';
import { searchTerms } from './search-terms.ts';
import { EXPANSION_WEIGHT, workplaceExpansions } from './workplace-words.ts';
import { unwrapMarkdown } from './markdown-lines.ts';
import { hasCjk } from '../model/text/cjk.ts';
import { typedValues, type TypedValue } from './typed-values.ts';
import { statedQuantities, statedRanges, tierFit, unitTierFit } from './stated-ranges.ts';

export interface AnswerUnit {
  /** Index of the passage (0-based) the unit comes from: cited as [passage + 1]. */
  passage: number;
  /** Plain text: no markdown emphasis, list markers, table bars or heading marks. */
  text: string;
  /** How well the unit matches the question, 0..1: `lexical` and `cosine` combined. */
  match: number;
  /** Idf-weighted share of the question's terms in the unit (heading terms count half; Chinese: characters too). */
  lexical: number;
  /** The encoder's cosine between question and unit (0 without an encoder). */
  cosine: number;
  /** Position of the unit in its passage, from 0. */
  order: number;
  /** The unit holds a value of a kind the question asks for. */
  typed: boolean;
  /** Rule score: match, type, passage rank. */
  score: number;
}

export interface AnswerCandidate {
  /** The direct answer: a value, a clause or the whole unit. */
  text: string;
  unit: AnswerUnit;
  kind: 'value' | 'clause' | 'unit';
  /** For values: how well its kind and unit fit what the question asks (2 both, 1 kind, 0.5 kind in another unit). */
  fit?: number;
  /** Rule score (the unit's score plus how well this span fits what the question asks). */
  prior: number;
  /** What a learned selector weighs (answer-selector.ts); `model` is filled in by the answerer. */
  features: CandidateFeatures;
}

export const CANDIDATE_FEATURES = ['prior', 'lexical', 'cosine', 'fit', 'near', 'value', 'clause', 'unit', 'long', 'passage', 'model'] as const;
export type CandidateFeature = (typeof CANDIDATE_FEATURES)[number];
export type CandidateFeatures = Record<CandidateFeature, number>;

function featuresOf(unit: AnswerUnit, kind: AnswerCandidate['kind'], prior: number, extra: { fit?: number; near?: number; long?: boolean } = {}): CandidateFeatures {
  return {
    prior,
    lexical: unit.lexical,
    cosine: unit.cosine,
    fit: (extra.fit ?? 0) / 2,
    near: extra.near ?? 0,
    value: kind === 'value' ? 1 : 0,
    clause: kind === 'clause' ? 1 : 0,
    unit: kind === 'unit' ? 1 : 0,
    long: extra.long ? 1 : 0,
    passage: unit.passage,
    model: 0,
  };
}

/** How much a term is worth: inverse document frequency in the knowledge base (1 when unknown). */
export type TermWeight = (term: string) => number;

/** Markdown inline syntax removed: links, emphasis, code, HTML tags, backslash escapes. */
export function plainText(s: string): string {
  return s
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/\[([^\]]+)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, ' ')
    .replace(/\*\*([^*]+)\*\*/g, '$1')
    .replace(/__([^_]+)__/g, '$1')
    .replace(/(?<![\w*])\*([^*\n]+)\*(?![\w*])/g, '$1')
    .replace(/`([^`]+)`/g, '$1')
    .replace(/\*\*|__/g, '')
    // Backslash escapes ("March 2023\." keeps a line from reading as a list item): the character itself.
    .replace(/\\([!-/:-@[-`{-~])/g, '$1')
    .replace(/\s+/g, ' ')
    .trim();
}

/** The cells of a markdown table row, as plain text; undefined for a line that is not one. */
export function tableCells(line: string): string[] | undefined {
  const t = line.trim();
  if (!t.startsWith('|')) return undefined;
  return t
    .replace(/^\||\|$/g, '')
    .split('|')
    .map((c) => plainText(c.trim()));
}

/** The line under a table's header: |---|:--:|. */
export function isTableRule(line: string): boolean {
  return /^\s*\|?\s*:?-{2,}/.test(line);
}

/** A table row as one unit, each cell with its column's header: "Years of service: 5–9 years; Annual leave: 27 days". */
export function rowText(header: string[], cells: string[]): string {
  return cells
    .map((c, j) => (header[j] && c ? `${header[j]}: ${c}` : c))
    .filter(Boolean)
    .join('; ');
}

/** Sentence ends: Chinese punctuation at once, Latin only before a space (so 0.23 and 4.5% stay whole) and not after "e.g." or "Dr.". */
export const SENTENCE_SPLIT = /(?<=[。！？；])\s*(?=\S)|(?<=[.!?;])(?<!\b(?:e\.g|i\.e|vs|cf|approx|incl|Dr|Mr|Ms|Mrs|St|No)\.)\s+(?=\S)/u;

/** A passage's units in reading order: sentences, list items, table rows with their header. */
export function answerUnits(text: string): string[] {
  const out: string[] = [];
  const lines = unwrapMarkdown(text).split('\n');
  let header: string[] | undefined;
  /** The sentence a list's items continue ("… colleagues therefore:"), while in that list. */
  let leadIn: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const cells = tableCells(line);
    if (cells) {
      leadIn = undefined;
      if (isTableRule(line)) continue;
      if (isTableRule(lines[i + 1] ?? '')) {
        header = cells;
        continue;
      }
      const row = rowText(header ?? [], cells);
      if (row) out.push(row);
      continue;
    }
    header = undefined;
    const item = /^\s*(?:[-*+]|\d+[.)])\s+/.test(line);
    const body = plainText(line.replace(/^\s*(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)/, ''));
    if (!body) continue;
    const sentences = body.split(SENTENCE_SPLIT).map((s) => s.trim());
    // "Rotterdam colleagues therefore:" + "- can work from home on the other days": a list item that
    // continues its lead-in sentence is read with it, so the unit says who may do what.
    if (item && leadIn && /^[a-z]/.test(sentences[0] ?? '')) sentences[0] = `${leadIn} ${sentences[0]}`;
    if (!item) leadIn = /^\s*#/.test(line) ? undefined : sentences.at(-1)?.match(/^(.{3,120}?)\s*:$/)?.[1];
    // "LHR-Guest: for visitors; the password changes every Monday": the part after the semicolon
    // is still about LHR-Guest, so it keeps the line's label.
    const label = sentences[0]?.match(/^[^:：;；]{2,40}?(?:\s*:\s|：\s*)/u)?.[0];
    if (label) for (let j = 1; j < sentences.length; j++) if (/^[a-z\p{Script=Han}]/u.test(sentences[j]!) && /[;；]$/u.test(sentences[j - 1]!)) sentences[j] = `${label}${sentences[j]}`;
    for (const s of sentences) if (s.length >= 2) out.push(s);
  }
  return out;
}

/** Clauses of a unit: cut at commas, semicolons, colons and dashes (CJK forms too), never inside a number (09:30, 4,000). */
function clauses(unit: string): string[] {
  const parts: string[] = [];
  let open = '';
  // Never inside brackets: "(e.g. flight, hotel, rental car)" is one clause's aside, not three clauses.
  for (const piece of unit.split(/(?<=[,;:，；：])(?!\d)\s*|\s+[—–]\s+/u)) {
    open = open ? `${open} ${piece}` : piece;
    if (bracketDepth(open) <= 0) {
      parts.push(open);
      open = '';
    }
  }
  if (open) parts.push(open);
  return parts.map((c) => c.replace(/[,;:，；：。.]+$/u, '').trim()).filter((c) => c.length >= 2);
}

/** Opening brackets minus closing ones. */
function bracketDepth(text: string): number {
  let depth = 0;
  for (const ch of text) {
    if (ch === '(' || ch === '（' || ch === '[') depth++;
    else if (ch === ')' || ch === '）' || ch === ']') depth--;
  }
  return depth;
}

/** Stemmed like BM25 reads passages (search-terms.ts), so "donors" meets "donor" and the term weights look up the index's own terms. */
const TERMS = { stem: true } as const;

function termSet(text: string): Set<string> {
  return new Set(searchTerms(text, TERMS));
}

/**
 * Idf-weighted share of `query` terms found in `own` (and, at half weight, in `heading`); the
 * handbook words an asker's everyday words stand for (`expanded`, workplace-words.ts) add what they
 * find at EXPANSION_WEIGHT, up to a full match.
 */
function weightedMatch(query: string[], own: Set<string>, heading: Set<string>, weight: TermWeight, expanded: string[] = []): number {
  let total = 0;
  let found = 0;
  for (const t of query) {
    const w = weight(t);
    total += w;
    if (own.has(t)) found += w;
    else if (heading.has(t)) found += w / 2;
  }
  for (const t of expanded) if (own.has(t)) found += EXPANSION_WEIGHT * weight(t);
  return total > 0 ? Math.min(1, found / total) : 0;
}

/** Similarity of the question to each unit (the trained encoder's cosine), when an encoder is trained. */
export type UnitSimilarity = (question: string, units: string[]) => number[];

export interface ProposeOptions {
  /** Term weights (default 1 for every term). */
  weight?: TermWeight;
  similarity?: UnitSimilarity;
  /** Units per question that propose candidates (default 4). */
  units?: number;
}

/** Characters too common in Chinese questions to say anything about a sentence. */
const COMMON_HAN = new Set([...'的了是在我你他她它们吗呢吧啊么什怎多少几个有没不能可以要会就都也和与或及对把被给让从到上下中这那哪谁']);

/** Share of the question's Han characters (common ones left out) in the unit: Chinese paraphrases keep characters, not words. */
function hanMatch(question: string, unit: string): number {
  const q = new Set([...question].filter((c) => /\p{Script=Han}/u.test(c) && !COMMON_HAN.has(c)));
  if (q.size === 0) return 0;
  const own = new Set(unit);
  let n = 0;
  for (const c of q) if (own.has(c)) n++;
  return n / q.size;
}

/** Scores every unit of the passages against the question, best first. */
export function scoreUnits(
  question: string,
  passages: Pick<Source, 'title' | 'text'>[],
  weight: TermWeight = () => 1,
  intent = questionIntent(question),
  similarity?: UnitSimilarity,
): AnswerUnit[] {
  const query = [...new Set(searchTerms(question, TERMS))];
  const expanded = workplaceExpansions(question, query);
  // "How do I contact IT?": "contact" says what is asked (a way to reach someone), IT what about;
  // a row headed "Contact" for the privacy officer shares the first, not the second.
  const reach = intent.who || intent.kinds.includes('email') || intent.kinds.includes('phone');
  if (reach) {
    const base = weight;
    weight = (t) => (REACH_WORDS.has(t) ? 0.3 : 1) * base(t);
  }
  const zh = hasCjk(question);
  const units: AnswerUnit[] = [];
  const texts = passages.map((p) => answerUnits(p.text));
  const cosines = similarity ? similarity(question, texts.flat()) : undefined;
  let at = 0;
  passages.forEach((p, passage) => {
    const heading = termSet(p.title);
    for (const [order, text] of texts[passage]!.entries()) {
      const words = weightedMatch(query, termSet(text), heading, weight, expanded);
      const lexical = zh ? 0.6 * words + 0.4 * hanMatch(question, `${p.title} ${text}`) : words;
      const cos = cosines?.[at++];
      const match = cos === undefined ? lexical : 0.6 * lexical + 0.4 * Math.max(0, cos);
      const fit = Math.max(0, ...typedValues(text).map((v) => fits(v, intent)));
      const typed = fit > 0;
      // The passage's rank says what retrieval thought of its whole context; a little of it breaks ties.
      // Earlier units win ties: a table's first row and a section's first rule are the general case.
      // "难产的，增加产假15天", "If you are a veteran, …": a special case the question did not raise ranks below the rule.
      const special = leadingCondition(text);
      // (A tier — "已满10年不满20年的，…" — is a case too, but tierFit weighs it against the asker's.)
      const unasked = (special !== undefined && statedRanges(special).length === 0 && !searchTerms(special, TERMS).some((t) => query.includes(t))) || EXAMPLE.test(text);
      const score = match + 0.125 * fit - 0.04 * passage - 0.003 * Math.min(order, 10) - (unasked ? 0.06 : 0);
      units.push({ passage, text, match, lexical, cosine: Math.max(0, cos ?? 0), order, typed, score });
    }
  });
  return units.sort((a, b) => b.score - a.score);
}

interface LabelledCell {
  text: string;
  start: number;
  end: number;
  label: string | undefined;
  /** The question names the label ("Shanghai" in "the address of the Shanghai office"). */
  named: boolean;
}

/** A unit's "label: value" cells (a table row read with its header, "A: x; B: y"), with where each sits. */
function labelledCells(text: string, query: string[]): LabelledCell[] {
  const out: LabelledCell[] = [];
  let start = 0;
  for (const m of `${text};`.matchAll(/;\s+|；|;$/gu)) {
    const cell = text.slice(start, m.index);
    const label = cell.match(/^([^:：]{1,40})(?::\s|：)/u)?.[1];
    out.push({ text: cell, start, end: m.index!, label, named: label !== undefined && searchTerms(label, TERMS).some((t) => query.includes(t)) });
    start = m.index! + m[0].length;
  }
  return out;
}

/** Words (as search terms) that ask for a way to reach someone rather than name whom. */
const REACH_WORDS = new Set(['contact', 'reach', 'call', 'phone', 'email', 'mail', 'ask', 'talk', 'number', 'address', '联系', '电话', '邮箱', '找谁']);

/** A text that says nothing the question did not: every term of it is one of the question's. */
function echoesQuestion(text: string, query: string[]): boolean {
  const terms = searchTerms(text, TERMS);
  return terms.length > 0 && terms.every((t) => query.includes(t));
}

/** "For example, if you resign on 12 March, …": an illustration of a rule, not the rule. */
const EXAMPLE = /^(?:for example|for instance|e\.g\.|example:|例如|比如|举例)/iu;

/** The condition a unit opens with ("难产的，…", "If you are a veteran, …"), undefined when it states a rule outright. */
function leadingCondition(text: string): string | undefined {
  return text.match(/^([^，,。；;]{1,24})的[，,]/u)?.[1] ?? text.match(/^(?:if|when|in case|for those who|unless)\b([^,;.]{1,80}),/i)?.[1];
}

/** Chinese writes one unit several ways: laws count 日 where people ask 天, 星期 for 周, 钟头 for 小时. */
const UNIT_SYNONYMS: Record<string, string> = { 日: '天', 工作日: '天', 个工作日: '天', 星期: '周', 钟头: '小时', 个钟头: '小时', 个月: '月' };
const sameUnit = (unit: string) => UNIT_SYNONYMS[unit] ?? unit;

/** How well a value answers the intent: 2 when its kind and unit are asked for, 1 for the kind alone, 0 not at all. */
function fits(v: TypedValue, intent: QuestionIntent): number {
  if (!intent.kinds.includes(v.kind)) return 0;
  if (v.kind !== 'count' || intent.units.length === 0) return intent.kinds[0] === v.kind ? 2 : 1;
  const unit = sameUnit((v.unit ?? '').replace(/^(?:working|business|calendar) /, '').replace(/s$/, ''));
  return intent.units.map(sameUnit).some((u) => unit === u || unit.endsWith(u) || u.endsWith(unit)) ? 2 : 0.5;
}

/**
 * How close a value sits to the question's words in its unit (1 when adjacent, towards 0 far
 * away): "employees pay 4%, the company adds 8%" — "what do I pay" wants the value next to "pay".
 */
function nearness(text: string, v: TypedValue, query: string[]): number {
  const lower = text.normalize('NFKC').toLowerCase();
  let best = 0;
  for (const t of query) {
    for (let at = lower.indexOf(t); at >= 0; at = lower.indexOf(t, at + 1)) {
      const gap = at >= v.end ? at - v.end : v.start >= at + t.length ? v.start - (at + t.length) : 0;
      best = Math.max(best, 1 / (1 + gap / 12));
    }
  }
  return best;
}

/**
 * A value the question itself states ("I work 10-hour Thursdays", "我工作12年了") is the asker's
 * case, not the answer: the same number with the same unit, however hyphenated or pluralised.
 */
function echoes(asked: string, v: TypedValue): boolean {
  if (asked.includes(v.text.toLowerCase())) return true;
  const number = v.text.match(/^[\d.,]+/)?.[0];
  if (!number || !v.unit) return false;
  const unit = v.unit.replace(/s$/, '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(?<![\\d.,])${number.replace(/[.]/g, '\\.')}[\\s-]*${unit}`, 'u').test(asked);
}

type Period = 'day' | 'week' | 'month' | 'year';
const PERIODS: [Period, RegExp][] = [
  ['day', /\b(?:per|a|each|every|one|in a|in one) (?:working |business |calendar )?day\b|\bdaily\b|每天|每日|每个工作日|一天|当日/u],
  ['week', /\b(?:per|a|each|every|one|in a|in one) week\b|\bweekly\b|每周|每星期|一周|一个星期/u],
  ['month', /\b(?:per|a|each|every|one|in a|in one) (?:calendar )?month\b|\bmonthly\b|每月|每个月|一个月|月度/u],
  ['year', /\b(?:per|a|each|every|one|in a|in one|in any|in a single) (?:calendar |fiscal |leave )?year\b|\b(?:yearly|annually|per annum)\b|每年|一年内|年度/u],
];

/** The period a text speaks of ("a month", "每年"): the first named, undefined when none. */
function periodOf(text: string): Period | undefined {
  let best: { period: Period; at: number } | undefined;
  for (const [period, re] of PERIODS) {
    const at = text.search(re);
    if (at >= 0 && (!best || at < best.at)) best = { period, at };
  }
  return best?.period;
}

/** 1 when the value's clause speaks of the period the question asks about, −1 when of another, 0 when of none. */
function periodFit(asking: Period, clause: string): number {
  const own = periodOf(clause.toLowerCase());
  return own === undefined ? 0 : own === asking ? 1 : -1;
}

/** The clause a value sits in: from the last comma, semicolon or full stop before it to the next after it. */
function clauseAround(text: string, v: TypedValue): string {
  let start = 0;
  for (const m of text.slice(0, v.start).matchAll(/[,;，；。!?！？]/gu)) start = m.index! + 1;
  const rest = text.slice(v.end).search(/[,;，；。!?！？]/u);
  return text.slice(start, rest >= 0 ? v.end + rest : text.length);
}

const TOTAL_LABEL = /(?:合计|总计|共计|总共|\btotal)\s*[:：]\s*$/iu;

/** Column labels that name what a value of each kind measures ("Duration: 9 weeks", "开放时间: 11:30"). */
const DIMENSION_LABELS: Partial<Record<TypedValue['kind'], RegExp>> = {
  count: /\b(?:duration|length|period|term|days?|weeks?|months?|hours?|number|how long)\b|时长|期限|天数|假期|时数|人数|次数/iu,
  // Not a cap ("maximum", "年度限额"): "how much do I pay" asks the price, not the most it may be.
  money: /\b(?:amount|cost|price|rate|budget|fee|allowance|pay|salary|reimbursed?|per diem)\b|金额|标准|费用|补贴|报销/iu,
  percent: /\b(?:percentage|share|rate|pay|contribution)\b|比例|百分比|费率/iu,
  time: /\b(?:time|hours|opening|open|closing)\b|时间|时段/iu,
};

/** The value sits in a label ("Annual leave (full-time, 40 hours/week): 25 days"): it names the column, it answers nothing. */
function inLabel(text: string, v: TypedValue): boolean {
  const from = Math.max(text.lastIndexOf(';', v.start), text.lastIndexOf('；', v.start)) + 1;
  return !/[:：]\s/u.test(`${text.slice(from, v.start)} `) && /^[^;；]*?(?::\s|：)/u.test(text.slice(v.end));
}

/** The label a value follows in a labelled unit ("Type: Paid parental leave; Duration: 9 weeks" → "Duration"), if any. */
function labelBefore(text: string, at: number): string | undefined {
  return text.slice(0, at).match(/(?:^|[;；]\s*)([^:：;；]{1,30})[:：]\s*$/u)?.[1];
}

/** Candidate direct answers, best prior first. */
export function proposeCandidates(question: string, passages: Pick<Source, 'title' | 'text'>[], options: ProposeOptions = {}): AnswerCandidate[] {
  const intent = questionIntent(question);
  const units = scoreUnits(question, passages, options.weight, intent, options.similarity).slice(0, options.units ?? 4);
  const asked = question.normalize('NFKC').toLowerCase();
  const zh = hasCjk(question);
  const out: AnswerCandidate[] = [];
  const seen = new Set<string>();
  const push = (c: AnswerCandidate) => {
    const key = c.text.toLowerCase();
    if (seen.has(key)) return;
    seen.add(key);
    out.push(c);
  };
  const query = [...new Set(searchTerms(question, TERMS))];
  const stated = statedQuantities(question);
  const asking = periodOf(asked);
  for (const unit of units) {
    const cells = labelledCells(unit.text, query);
    // A row whose first cell has no header ("Address; Rotterdam (HQ): …; Shanghai: …") has a case
    // per column; a row of a usual table has an attribute per column (法定年假, 福利年假, 合计).
    const casesByColumn = cells.length > 2 && cells[0]!.label === undefined && cells.some((c) => c.named);
    for (const v of typedValues(unit.text)) {
      const fit = fits(v, intent);
      // A value the question itself states ("I have worked here 5 years") is not its answer.
      if (fit === 0 || echoes(asked, v) || inLabel(unit.text, v)) continue;
      const near = nearness(unit.text, v, query);
      // A total answers "how many" better than its parts (法定 5 天 + 福利 7 天; 合计 12 天).
      const total = TOTAL_LABEL.test(unit.text.slice(0, v.start)) ? 0.05 : 0;
      // A value in the column that measures what is asked ("how long" → "Duration: 9 weeks", not
      // "apply 2 months before") is the table's answer to it.
      const label = labelBefore(unit.text, v.start);
      const labelled = label !== undefined && v.kind === intent.kinds[0] && DIMENSION_LABELS[v.kind]?.test(label) ? 0.1 : 0;
      // The tier that governs the value holds the asker's case ("已满10年不满20年的，年休假10天" for 12 years).
      const tier = tierFit(unit.text, v.start, stated);
      // "每日不得超过三小时，但是每月不得超过三十六小时": a month asked for wants the monthly cap.
      const period = asking ? periodFit(asking, clauseAround(unit.text, v)) : 0;
      // "the facilities contact in Shanghai": the Rotterdam cell's e-mail is another case's value.
      const cell = cells.find((c) => v.start >= c.start && v.start < c.end);
      const otherCase = casesByColumn && cell !== undefined && cell.label !== undefined && !cell.named ? 0.15 : 0;
      const prior = unit.score + 0.1 * fit + 0.1 * near + total + labelled + 0.2 * tier + 0.1 * period - otherCase;
      push({ text: v.text, unit, kind: 'value', fit, prior, features: featuresOf(unit, 'value', prior, { fit, near }) });
    }
    // "Vacations," in a list answers "How much vacation do I get?" with the asker's own word.
    if (echoesQuestion(unit.text, query)) continue;
    const words = zh ? [...unit.text].length / 2 : unit.text.split(/\s+/).length;
    const parts = clauses(unit.text);
    if (parts.length > 1) {
      for (const c of parts) {
        if (echoesQuestion(c, query)) continue;
        const m = weightedMatch(query, termSet(c), new Set(), options.weight ?? (() => 1));
        // A clause alone is a good direct answer when it carries the unit's match; the unit stays the fallback.
        const prior = unit.score - 0.15 + 0.15 * m;
        push({ text: c, unit, kind: 'clause', prior, features: featuresOf(unit, 'clause', prior) });
      }
    }
    // "Address; Rotterdam (HQ): …; Shanghai: Floors 5–7, …": in a row read with its header, the
    // cell whose header the question names ("the address of the Shanghai office") answers alone.
    if (cells.length > 1) {
      for (const cell of cells.filter((c) => c.named)) {
        const prior = unit.score + 0.02;
        push({ text: cell.text, unit, kind: 'clause', prior, features: featuresOf(unit, 'clause', prior) });
      }
    }
    // A row or rule whose own tier holds the asker's case ("almost 12 hours" → "More than 9 hours; Class: Business").
    const prior = unit.score - (words > 30 ? 0.1 : 0) + 0.2 * unitTierFit(unit.text, stated);
    push({ text: unit.text, unit, kind: 'unit', prior, features: featuresOf(unit, 'unit', prior, { long: words > 30 }) });
  }
  // A value in the unit the question names ("how many days" → "25 days") makes values in other
  // units ("0–4 years") wrong answers, not weaker ones.
  const unitFit = out.some((c) => c.kind === 'value' && c.fit === 2);
  return out.filter((c) => !unitFit || c.kind !== 'value' || c.fit === 2).sort((a, b) => b.prior - a.prior);
}
