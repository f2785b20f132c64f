import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// examples/handbook/paraphrase-questions.jsonl: questions about the sample handbook written the
// way employees ask in chat (not in the documents' words), plus near-topic questions the handbook
// does not answer. Same row format as the project's external QA dev sets (checked there by verify.py,
// whose overlap measure is ported below).

const HANDBOOK = join(import.meta.dirname, '../../examples/handbook');
const KEYS = ['answer', 'evidence', 'id', 'lang', 'must_contain', 'question', 'source', 'split', 'type'];

interface Row {
  id: string;
  lang: 'en' | 'zh';
  question: string;
  answer: string;
  must_contain: string[];
  source: string;
  evidence: string;
  type: 'factual' | 'multi';
  split: 'dev' | 'test';
}

type Group = 'pen' | 'pzh' | 'nen' | 'nzh';
const GROUPS: Record<Group, { lang: 'en' | 'zh'; answerable: boolean }> = {
  pen: { lang: 'en', answerable: true },
  pzh: { lang: 'zh', answerable: true },
  nen: { lang: 'en', answerable: false },
  nzh: { lang: 'zh', answerable: false },
};

// The words that make each unanswerable question unanswerable. Each must occur in the question
// and nowhere in the handbook (en/ or zh/, case-insensitive), so the handbook cannot answer it.
const UNANSWERABLE_TERMS: Record<string, string[]> = {
  'nen-001': ['daycare'],
  'nen-002': ['dog'],
  'nen-003': ['pump', 'breast milk'],
  'nen-004': ['buy extra'],
  'nen-005': ['jury'],
  'nen-006': ['hotel chain', 'corporate rate'],
  'nen-007': ['lounge'],
  'nen-008': ['christmas party'],
  'nen-009': ['head of marketing'],
  'nen-010': ['IPO'],
  'nen-011': ['30% ruling'],
  'nen-012': ['prayer'],
  'nen-013': ['vaccination'],
  'nen-014': ['visa'],
  'nen-015': ['chairs'],
  'nzh-001': ['健身房'],
  'nzh-002': ['宿舍'],
  'nzh-003': ['宠物'],
  'nzh-004': ['母婴室'],
  'nzh-005': ['高温费'],
  'nzh-006': ['落户'],
  'nzh-007': ['工会'],
  'nzh-008': ['献血'],
  'nzh-009': ['企业年金'],
  'nzh-010': ['中介'],
  'nzh-011': ['午睡'],
};

const rows: Row[] = readFileSync(join(HANDBOOK, 'paraphrase-questions.jsonl'), 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '')
  .map((line) => JSON.parse(line) as Row);

const collapse = (s: string): string => s.replace(/\s+/g, ' ').trim();

const documents = new Map<string, string>();
for (const lang of ['en', 'zh']) {
  for (const name of readdirSync(join(HANDBOOK, lang)).filter((f) => f.endsWith('.md'))) {
    documents.set(`${lang}/${name}`, collapse(readFileSync(join(HANDBOOK, lang, name), 'utf8')));
  }
}
const corpusLower = [...documents.values()].join('\n').toLowerCase();

const groupOf = (id: string): Group => id.slice(0, 3) as Group;
const inGroup = (g: Group): Row[] => rows.filter((r) => groupOf(r.id) === g);

// ---- verify.py's lexical overlap, ported ----
const STOP = new Set(
  `a an the and or but if then so of to in on at by for with from into onto about as is are was were be been
being am do does did doing have has had having i me my mine we us our you your yours he she it its they them their this that
these those there here what which who whom whose when where why how can could should would will shall may might must not no
yes any some all each every much many more most less least than too very just only also still yet up down out over under
again once before after while during between through per get got let lets im ive id dont doesnt isnt arent cant wont
whats theres one someone`.split(/\s+/),
);

function enWords(s: string): string[] {
  const out: string[] = [];
  for (const tok of s.toLowerCase().match(/[a-z0-9$%][a-z0-9$%'-]*/g) ?? []) {
    const t = tok.replaceAll("'", '').replace(/^-+|-+$/g, '');
    if (t && !STOP.has(t)) out.push(t);
  }
  return out;
}

// crude plural stripping so "receipts" matches "receipt"
const normEn = (t: string): string => (t.length > 3 && t.endsWith('s') && !t.endsWith('ss') ? t.slice(0, -1) : t);

function zhBigrams(s: string): string[] {
  const grams: string[] = [];
  for (const run of s.match(/[\u4e00-\u9fff]+/g) ?? []) {
    for (let i = 0; i + 1 < run.length; i++) grams.push(run.slice(i, i + 2));
  }
  return grams;
}

/** Share of the question's content words (en) or CJK bigrams (zh) that also occur in the passage. */
function lexicalOverlap(question: string, passage: string, lang: 'en' | 'zh'): number {
  const q = lang === 'en' ? enWords(question).map(normEn) : zhBigrams(question);
  const p = new Set(lang === 'en' ? enWords(passage).map(normEn) : zhBigrams(passage));
  if (q.length === 0) return 0;
  return q.filter((t) => p.has(t)).length / q.length;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('the paraphrase question set for the sample handbook', () => {
  it('has rows with exactly the dev-set fields and the right types', () => {
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      expect(Object.keys(r).sort(), r.id).toEqual(KEYS);
      expect(r.id).toMatch(/^(pen|pzh|nen|nzh)-\d{3}$/);
      expect(['en', 'zh']).toContain(r.lang);
      expect(r.lang, r.id).toBe(GROUPS[groupOf(r.id)].lang);
      expect(typeof r.question).toBe('string');
      expect(r.question.trim().length, r.id).toBeGreaterThan(5);
      expect(typeof r.answer).toBe('string');
      expect(Array.isArray(r.must_contain)).toBe(true);
      for (const m of r.must_contain) expect(typeof m).toBe('string');
      expect(typeof r.source).toBe('string');
      expect(typeof r.evidence).toBe('string');
      expect(['factual', 'multi']).toContain(r.type);
      expect(['dev', 'test']).toContain(r.split);
      if (r.lang === 'zh') expect(r.question, r.id).toMatch(/[\u4e00-\u9fff]/);
      else expect(r.question, r.id).not.toMatch(/[\u4e00-\u9fff]/);
    }
  });

  it('has unique ids, numbered from 001 without gaps in each group', () => {
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
    for (const g of Object.keys(GROUPS) as Group[]) {
      expect(inGroup(g).map((r) => r.id)).toEqual(inGroup(g).map((_, i) => `${g}-${String(i + 1).padStart(3, '0')}`));
    }
  });

  it('grounds every answerable row: source exists, evidence verbatim in it, must_contain in evidence and answer', () => {
    const answerable = rows.filter((r) => GROUPS[groupOf(r.id)].answerable);
    for (const r of answerable) {
      expect(r.answer, r.id).not.toBe('UNANSWERABLE');
      expect(r.source.startsWith(`${r.lang}/`), `${r.id}: ${r.source}`).toBe(true);
      expect(existsSync(join(HANDBOOK, r.source)), `${r.id}: ${r.source}`).toBe(true);
      expect(r.evidence.trim().length, r.id).toBeGreaterThan(0);
      expect(documents.get(r.source)?.includes(collapse(r.evidence)), `${r.id}: evidence not verbatim in ${r.source}`).toBe(true);
      expect(r.must_contain.length, r.id).toBeGreaterThanOrEqual(1);
      expect(r.must_contain.length, r.id).toBeLessThanOrEqual(2);
      for (const m of r.must_contain) {
        expect(m.trim().length, r.id).toBeGreaterThan(0);
        expect(m.length, `${r.id}: must_contain "${m}" should be a short fact`).toBeLessThanOrEqual(40);
        expect(r.evidence.includes(m), `${r.id}: "${m}" in evidence`).toBe(true);
        expect(r.answer.includes(m), `${r.id}: "${m}" in answer`).toBe(true);
        // the question must not give the fact away
        expect(r.question.includes(m), `${r.id}: "${m}" in question`).toBe(false);
      }
    }
    // spread over the handbook, not a single topic
    expect(new Set(inGroup('pen').map((r) => r.source)).size).toBeGreaterThanOrEqual(12);
    expect(new Set(inGroup('pzh').map((r) => r.source)).size).toBeGreaterThanOrEqual(8);
  });

  it('keeps unanswerable rows well-formed', () => {
    for (const r of rows.filter((x) => !GROUPS[groupOf(x.id)].answerable)) {
      expect(r.answer, r.id).toBe('UNANSWERABLE');
      expect(r.must_contain, r.id).toEqual([]);
      expect(r.evidence, r.id).toBe('');
      expect(r.source, r.id).toBe('');
      expect(r.type, r.id).toBe('factual');
    }
  });

  it('has enough questions in every group and both splits, alternating dev/test', () => {
    const answerable = [...inGroup('pen'), ...inGroup('pzh')];
    const unanswerable = [...inGroup('nen'), ...inGroup('nzh')];
    expect(answerable.length).toBeGreaterThanOrEqual(48);
    expect(inGroup('pen').length).toBeGreaterThanOrEqual(18);
    expect(inGroup('pzh').length).toBeGreaterThanOrEqual(18);
    expect(unanswerable.length).toBeGreaterThanOrEqual(24);
    expect(inGroup('nen').length).toBeGreaterThanOrEqual(8);
    expect(inGroup('nzh').length).toBeGreaterThanOrEqual(8);
    expect(answerable.length + unanswerable.length).toBe(rows.length);
    for (const g of Object.keys(GROUPS) as Group[]) {
      const mine = inGroup(g);
      mine.forEach((r, i) => expect(r.split, r.id).toBe(i % 2 === 0 ? 'dev' : 'test'));
      const test = mine.filter((r) => r.split === 'test').length;
      expect(test, g).toBeGreaterThan(0);
      expect(mine.length - test, g).toBeGreaterThan(0);
    }
  });

  it('does not reuse the questions or gold facts of questions.jsonl', () => {
    const original = readFileSync(join(HANDBOOK, 'questions.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { question: string; answer: string; source: string });
    const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9\u4e00-\u9fff]/g, '');
    const originalQuestions = new Set(original.map((q) => norm(q.question)));
    const originalFacts = new Set(original.map((q) => `${q.source}\u0000${q.answer}`));
    // Same string, different fact: zh-032's "3 个月" is the probation period, pzh-021's the
    // maximum age of the pre-employment medical report.
    const sameStringOtherFact = new Set(['pzh-021\u00003 个月']);
    for (const r of rows) {
      expect(originalQuestions.has(norm(r.question)), r.id).toBe(false);
      for (const m of r.must_contain) {
        if (sameStringOtherFact.has(`${r.id}\u0000${m}`)) continue;
        expect(originalFacts.has(`${r.source}\u0000${m}`), `${r.id}: ${m}`).toBe(false);
      }
    }
  });

  it('finds each unanswerable question\'s key terms nowhere in the handbook', () => {
    const unanswerable = rows.filter((r) => !GROUPS[groupOf(r.id)].answerable);
    expect(Object.keys(UNANSWERABLE_TERMS).sort()).toEqual(unanswerable.map((r) => r.id).sort());
    for (const r of unanswerable) {
      const terms = UNANSWERABLE_TERMS[r.id] ?? [];
      expect(terms.length, r.id).toBeGreaterThan(0);
      for (const t of terms) {
        expect(r.question.toLowerCase().includes(t.toLowerCase()), `${r.id}: "${t}" in question`).toBe(true);
        expect(corpusLower.includes(t.toLowerCase()), `${r.id}: "${t}" occurs in the handbook`).toBe(false);
      }
    }
  });

  it('keeps the question/evidence lexical overlap low (verify.py measure), well below questions.jsonl', () => {
    const original = readFileSync(join(HANDBOOK, 'questions.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { lang: 'en' | 'zh'; question: string; answer: string; source: string });
    const report: string[] = [];
    for (const lang of ['en', 'zh'] as const) {
      const mine = rows.filter((r) => r.lang === lang && GROUPS[groupOf(r.id)].answerable);
      const perRow = mine.map((r) => lexicalOverlap(r.question, r.evidence, lang));
      const ours = mean(perRow);
      // Like for like with questions.jsonl (which has no evidence field): the whole source line
      // that holds the gold fact, for both sets.
      const lineOf = (source: string, needle: string) =>
        readFileSync(join(HANDBOOK, source), 'utf8').split('\n').find((l) => l.includes(needle)) ?? '';
      const oursLine = mean(mine.map((r) => lexicalOverlap(r.question, lineOf(r.source, r.must_contain[0] ?? ''), lang)));
      const theirs = mean(original.filter((q) => q.lang === lang).map((q) => lexicalOverlap(q.question, lineOf(q.source, q.answer), lang)));
      report.push(`${lang}: evidence ${ours.toFixed(3)} (max ${Math.max(...perRow).toFixed(2)}), answer line ${oursLine.toFixed(3)} vs questions.jsonl ${theirs.toFixed(3)}`);
      expect(ours, lang).toBeLessThan(0.35);
      expect(Math.max(...perRow), lang).toBeLessThan(0.6);
      expect(oursLine, lang).toBeLessThan(theirs);
    }
    console.log(`paraphrase-questions lexical overlap — ${report.join('; ')}`);
  });

  it('computes the overlap measure as verify.py does', () => {
    expect(lexicalOverlap('How many receipts do I need?', 'A receipt is required.', 'en')).toBeCloseTo(0.5);
    expect(lexicalOverlap('the of and', 'anything', 'en')).toBe(0);
    expect(lexicalOverlap('年假有几天', '年假 12 天', 'zh')).toBeCloseTo(1 / 4);
  });
});
