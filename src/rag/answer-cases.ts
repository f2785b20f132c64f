/**
 * Rules that answer by case — a table with a row per contract type, a cell "北京、深圳：¥800；广州、
 * 杭州、苏州：¥600；其他城市：¥500" — and a question that names no case ("试用期多长？",
 * "出差住酒店一晚最多能报多少钱？"). Any single value is then a guess that is wrong for most
 * askers; a person would answer with the cases. When the question does name one ("管理岗试用期多长？",
 * "在北京住一晚…"), the value of that case is the answer, whichever row the selector liked.
 *
 * Two shapes are read: the rows of the table the chosen value's unit comes from (the column the
 * question names — or the value's own, or a total column — labelled by each row's first cell), and
 * labelled values inside one unit ("label：value" or "value in label" pairs of the same kind and unit).
 * Which passage and row the value comes from is still the selector's choice: when it picks another
 * passage's value ("出差住酒店…" answered from the relocation sentence's ¥8,000), no case list follows.
 */
import { answerUnits, isTableRule, rowText, tableCells, type AnswerCandidate } from './answer-candidates.ts';
import { unwrapMarkdown } from './markdown-lines.ts';
import { searchTerms } from './search-terms.ts';
import { workplaceExpansions } from './workplace-words.ts';
import { statedQuantities, statedRanges } from './stated-ranges.ts';
import { typedValues, type TypedValue } from './typed-values.ts';

interface Case {
  label: string;
  value: string;
  /** What else describes the case (a table row's other cells): naming any of it names the case. */
  context: string;
  /** This case holds the chosen candidate. */
  chosen: boolean;
}

/** A column of totals. */
const TOTAL_HEADER = /^(?:合计|总计|共计|总共|total)$/iu;

/** At most this many cases are listed: more would not be a direct answer. */
const MAX_CASES = 5;
/** A longer cell is an explanation, not a value to list. */
const MAX_VALUE_CHARS = 40;

/**
 * The direct answer the cases give, or undefined to keep the candidate's: the named case's value
 * when the question names one, all cases ("label: value; …") when it names none.
 */
export function answerByCase(question: string, candidate: AnswerCandidate, passageText: string, zh: boolean): string | undefined {
  if (candidate.kind !== 'value') return undefined;
  const terms = searchTerms(question, { stem: true });
  // "vacation days" names the "Annual leave" column (workplace-words.ts).
  const asked = new Set([...terms, ...workplaceExpansions(question, terms)]);
  const table = tableCases(candidate, passageText, asked);
  const inline = table ? undefined : inlineCases(candidate);
  const cases = table ?? (inline && inline.length >= 2 ? inline : tierCases(candidate, passageText));
  if (!cases || cases.length < 2 || cases.length > MAX_CASES) return undefined;
  if (new Set(cases.map((c) => c.value)).size === 1) return undefined;
  // The asker's own case in numbers ("I have been here 6 years") is the tier rules' to match.
  if (statedQuantities(question).length > 0 && cases.some((c) => statedRanges(c.label).length > 0)) return undefined;
  const named = namedCases(asked, cases);
  if (named.length === 1) return named[0]!.chosen && !table ? undefined : named[0]!.value;
  if (named.length > 1) return undefined;
  return cases.map((c) => (zh ? `${c.label}：${c.value}` : `${c.label}: ${c.value}`)).join(zh ? '；' : '; ');
}

/** The cases whose label shares a word with the question that not every label has. */
function namedCases(asked: Set<string>, cases: Case[]): Case[] {
  const labels = cases.map((c) => new Set(searchTerms(`${c.label} ${c.context}`, { stem: true })));
  const shared = [...labels[0]!].filter((t) => labels.every((l) => l.has(t)));
  return cases.filter((_, i) => [...labels[i]!].some((t) => asked.has(t) && !shared.includes(t)));
}

/**
 * The cells of the column the question names ("试用期多长" → the 试用期 column) in the table the
 * candidate's unit is a row of, labelled by each row's first cell. Undefined when the question
 * names no column but the label's: then the rows are different things (出差补贴, 住宿), not cases
 * of one rule, and the selector's row stands.
 */
function tableCases(candidate: AnswerCandidate, passageText: string, asked: Set<string>): Case[] | undefined {
  for (const table of tables(passageText)) {
    const at = table.rows.findIndex((r) => rowText(table.header, r) === candidate.unit.text);
    // The value must be one of the row's cells, not a header's words ("Annual leave (40 hours/week)").
    if (at < 0 || !table.rows[at]!.some((cell) => cell.includes(candidate.text))) return undefined;
    const overlap = table.header.map((h, j) => (j === 0 ? 0 : searchTerms(h, { stem: true }).filter((t) => asked.has(t)).length));
    // The candidate's own column when the question names it as much as any other, or when it is the
    // total (合计 12 天 = 法定 5 + 福利 7: "年假有几天" wants the totals).
    const own = table.rows[at]!.findIndex((cell) => cell.includes(candidate.text));
    const best = Math.max(...overlap);
    const column = own > 0 && (overlap[own] === best || TOTAL_HEADER.test(table.header[own] ?? '')) ? own : overlap.indexOf(best);
    if (column <= 0 || (overlap[column] === 0 && !TOTAL_HEADER.test(table.header[column] ?? ''))) return undefined;
    const rows = table.rows.filter((r) => r[column] && r[0]);
    if (rows.some((r) => r[column]!.length > MAX_VALUE_CHARS)) return undefined;
    return rows.map((r) => ({ label: r[0]!, value: r[column]!, context: r.filter((_, j) => j !== 0 && j !== column).join(' '), chosen: r === table.rows[at] }));
  }
  return undefined;
}

/** "label：value" (or "value in label") pairs in the candidate's unit, of the candidate's kind and unit. */
function inlineCases(candidate: AnswerCandidate): Case[] | undefined {
  const text = candidate.unit.text;
  const values = typedValues(text);
  const own = values.find((v) => v.text === candidate.text);
  if (!own) return undefined;
  const sameKind = (v: TypedValue) => v.kind === own.kind && (v.kind !== 'count' || countUnit(v) === countUnit(own));
  const cases: Case[] = [];
  for (const v of values.filter(sameKind)) {
    // "北京、深圳：¥800" (label first) or "€60 in Europe, US$80 in North America" (label after).
    const label =
      text.slice(0, v.start).match(/([^；;。:：,，]{1,30})[:：]\s*$/u)?.[1]?.trim() ??
      text.slice(v.end).match(/^\s+(?:in|for)\s+([^,;.:()]{2,30}?)(?=\s*(?:[,;.]|\band\b|$))/u)?.[1]?.trim();
    if (!label) continue;
    cases.push({ label, value: v.text, context: '', chosen: v === own });
  }
  return cases.some((c) => c.chosen) ? cases : undefined;
}

/**
 * Tiers written one to a sentence or list item — "已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天；…",
 * "- Fewer than 3 years: 4 hours per pay period" — read as cases: the run of units around the
 * candidate's, in its passage, each with one value of the candidate's kind and unit after a label or
 * a condition that states a range.
 */
function tierCases(candidate: AnswerCandidate, passageText: string): Case[] | undefined {
  const units = answerUnits(passageText);
  const at = units.indexOf(candidate.unit.text);
  const own = typedValues(candidate.unit.text).find((v) => v.text === candidate.text);
  if (at < 0 || !own) return undefined;
  const caseOf = (text: string): Omit<Case, 'chosen' | 'context'> | undefined => {
    const values = typedValues(text).filter((v) => v.kind === own.kind && (v.kind !== 'count' || countUnit(v) === countUnit(own)));
    if (values.length !== 1) return undefined;
    const v = values[0]!;
    const before = text.slice(0, v.start);
    const label = (before.match(/^([^:：]{1,40})[:：]\s*$/u)?.[1] ?? before.match(/^(.{1,30}?)的[，,]/u)?.[1])?.replace(ARTICLE, '').trim();
    return label && statedRanges(label).length > 0 ? { label, value: v.text } : undefined;
  };
  if (!caseOf(candidate.unit.text)) return undefined;
  let first = at;
  let last = at;
  while (first > 0 && caseOf(units[first - 1]!)) first--;
  while (last + 1 < units.length && caseOf(units[last + 1]!)) last++;
  return units.slice(first, last + 1).map((u, i) => ({ ...caseOf(u)!, context: '', chosen: first + i === at }));
}

/** "第三条 " before a law's sentence. */
const ARTICLE = /^第[一二三四五六七八九十百零]+条\s*/u;

function countUnit(v: TypedValue): string {
  return (v.unit ?? '').replace(/s$/, '');
}

interface Table {
  header: string[];
  rows: string[][];
}

/** The markdown tables of a passage, cells as answerUnits reads them. */
function tables(text: string): Table[] {
  const out: Table[] = [];
  const lines = unwrapMarkdown(text).split('\n');
  let table: Table | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const cells = tableCells(line);
    if (!cells) {
      table = undefined;
      continue;
    }
    if (isTableRule(line)) continue;
    if (isTableRule(lines[i + 1] ?? '')) out.push((table = { header: cells, rows: [] }));
    else table?.rows.push(cells);
  }
  return out;
}
