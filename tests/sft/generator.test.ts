import { describe, expect, it } from 'vitest';
import { documentsFromPassages, generateQa, holdOutBySection, readDocuments, withRetrievedContext } from '../../src/training/sft/qa-generator.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HANDBOOK_EN, HANDBOOK_ZH } from './helpers.ts';

const docs = [
  { source: 'en/leave.md', text: HANDBOOK_EN },
  { source: 'zh/leave.md', text: HANDBOOK_ZH },
];

describe('QA generator', () => {
  const qa = generateQa(docs);
  const find = (q: string) => qa.find((x) => x.question === q);

  it('turns facts into questions with the value as the answer (English and Chinese)', () => {
    expect(find('Carried-over days expire on what date of that year?')).toMatchObject({ answer: '1 July', kind: 'fact', lang: 'en' });
    expect(find('You may carry over at most how many days into the next year?')).toMatchObject({ answer: '5 days' });
    expect(find('Report sick to your manager before what time on the first day?')).toMatchObject({ answer: '09:30' });
    expect(find('The company pays what percentage of your salary?')).toMatchObject({ answer: '90%' });
    expect(find('当年年假可以延长使用至次年哪一天？')).toMatchObject({ answer: '3 月 31 日', lang: 'zh' });
    expect(qa.find((x) => x.lang === 'zh' && x.answer === '6 天')?.question).toBe('应届毕业生入职当年享有几天福利年假？');
  });

  it('reads a hard-wrapped paragraph as one text (handbooks wrapped at 80 columns), code blocks untouched', () => {
    const wrapped = generateQa([
      {
        source: 'transit.md',
        text: '# Transit\n\n## Subsidy\n\nAll employees who take public transit to work are eligible for a transit\nsubsidy of up to $325 per month. Enroll through the\n[benefits portal](https://x.example).\n\n```\nkeep\nthese lines\n```\n',
      },
    ]);
    const fact = wrapped.find((q) => q.answer === '$325 per month');
    expect(fact?.sentence).toBe('All employees who take public transit to work are eligible for a transit subsidy of up to $325 per month.');
    expect(wrapped.every((q) => !q.sentence.includes('keep these lines'))).toBe(true);
    // Decimals and leftover emphasis: 'reimbursed at €0.' and '** of total' were generated before.
    const car = generateQa([{ source: 'car.md', text: '## Car\n\n- Private car use for business is reimbursed at **€0.23 per km**.\n- **5%** of total base salary.' }]);
    // The rate keeps its unit, as '$325 per month' does: '€0.23' alone would be a wrong answer.
    expect(car.find((q) => q.answer === '€0.23 per km')?.question).toBe('Private car use for business is reimbursed at how much?');
    expect(car.every((q) => !q.question.includes('**') && !q.sentence.includes('**'))).toBe(true);
  });

  it('asks for table cells, definitions and headings', () => {
    expect(find('What is the annual leave for 5–9 years?')).toMatchObject({ answer: '26 days', kind: 'table' });
    expect(find('满 1 年不满 10 年的合计是多少？')).toMatchObject({ answer: '12 天', kind: 'table' });
    expect(find('What is PeopleDock?')).toMatchObject({ answer: 'the HR system where leave is requested and approved.', kind: 'definition' });
    expect(find('What does the handbook say about sick leave?')).toMatchObject({ answer: 'Report sick to your manager before 09:30 on the first day.', kind: 'heading' });
  });

  it('keeps the section each answer comes from, and never repeats a question', () => {
    for (const q of qa) {
      expect(q.evidence.text.replace(/\*\*/g, '')).toContain(q.kind === 'table' ? q.answer : q.answer.replace(/…$/, '').slice(0, 10));
      expect(q.evidence.source).toMatch(/^(en|zh)\/leave\.md$/);
    }
    expect(new Set(qa.map((q) => q.question)).size).toBe(qa.length);
    expect(find('Carried-over days expire on what date of that year?')!.evidence.title).toBe('Leave and holidays > Annual leave');
    expect(generateQa(docs, { max: 5, seed: 3 })).toHaveLength(5);
    expect(generateQa(docs, { kinds: ['table'] }).every((q) => q.kind === 'table')).toBe(true);
  });

  it('builds SFT examples whose retrieved context always holds the evidence', async () => {
    const items = qa.slice(0, 12);
    // A retriever that never finds the right passage: the evidence replaces its last result.
    const wrong = { search: async (_q: string, k: number) => Array.from({ length: k }, (_, i) => ({ source: `x${i}.md`, title: 'Other', text: `Unrelated passage ${i}.` })) };
    const ex = await withRetrievedContext(items, wrong, { k: 3 });
    expect(ex).toHaveLength(12);
    ex.forEach((e, i) => {
      expect(e.context).toHaveLength(3);
      expect(e.context!.some((p) => p.text === items[i]!.evidence.text)).toBe(true);
      expect(e.messages).toEqual([
        { role: 'user', content: items[i]!.question },
        { role: 'assistant', content: items[i]!.answer },
      ]);
    });
    // A retriever that finds the section (as a chunk of it) keeps its own results.
    const right = { search: async (q: string) => [{ source: 'x.md', title: 'Other', text: 'Unrelated.' }, { ...items.find((i) => i.question === q)!.evidence, text: `intro\n${items.find((i) => i.question === q)!.evidence.text}` }] };
    const kept = await withRetrievedContext(items, right, { k: 2 });
    kept.forEach((e) => expect(e.context!.map((p) => p.text.slice(0, 5))).toEqual(['Unrel', 'intro']));
    const offline = await withRetrievedContext(items, undefined, { k: 2 });
    expect(offline.every((e) => e.context!.length === 2 && e.context!.some((p) => p.text.length > 0))).toBe(true);
  });

  it('holds out whole passages: no training question shares a passage with a held-out one, the same ones every time', () => {
    const { train, heldOut } = holdOutBySection(qa, { fraction: 0.3, seed: 4 });
    expect(train.length + heldOut.length).toBe(qa.length);
    expect(heldOut.length).toBeGreaterThan(0);
    const passage = (q: (typeof qa)[number]) => `${q.evidence.source}#${q.evidence.title}`;
    const held = new Set(heldOut.map(passage));
    expect(train.some((q) => held.has(passage(q)))).toBe(false);
    // Deterministic, and independent of the questions' order.
    expect(holdOutBySection([...qa].reverse(), { fraction: 0.3, seed: 4 }).heldOut.map((q) => q.question).sort()).toEqual(heldOut.map((q) => q.question).sort());
    expect(holdOutBySection(qa, { fraction: 0.3, seed: 4, maxQuestions: 2 }).heldOut).toHaveLength(Math.min(2, heldOut.length));
    expect(holdOutBySection(qa, { fraction: 0 }).heldOut).toEqual([]);
  });

  it('rebuilds the documents of a knowledge base from its passages, with the same sections and questions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'teamllm-kbdocs-'));
    mkdirSync(join(dir, 'en'));
    mkdirSync(join(dir, 'zh'));
    writeFileSync(join(dir, 'en', 'leave.md'), HANDBOOK_EN);
    writeFileSync(join(dir, 'zh', 'leave.md'), HANDBOOK_ZH);
    writeFileSync(join(dir, 'parking.html'), '<html><head><title>Parking</title></head><body><h1>Parking</h1><p>A parking permit costs €40 per month.</p></body></html>');
    // Small passages, so sections are cut in several (with the splitter's overlap) and rebuilt.
    const kb = new LocalKnowledgeBase(':memory:', { chunkSize: 120 });
    await kb.addPaths([dir]);
    const rebuilt = documentsFromPassages(kb.passages());
    expect(rebuilt.map((d) => d.source)).toEqual(['en/leave.md', 'parking.html', 'zh/leave.md']);
    const fromKb = generateQa(rebuilt);
    const fromFiles = generateQa(await readDocuments(dir));
    const byQuestion = new Map(fromKb.map((q) => [q.question, q]));
    // Every question the files give, the knowledge base gives too, from the same section.
    for (const q of fromFiles.filter((x) => x.kind !== 'heading')) {
      expect(byQuestion.get(q.question), q.question).toMatchObject({ answer: q.answer, evidence: { source: q.evidence.source, title: q.evidence.title } });
    }
    expect(byQuestion.get('A parking permit costs how much?')).toMatchObject({ answer: '€40 per month', evidence: { source: 'parking.html' } });
    kb.close();
  });
});
