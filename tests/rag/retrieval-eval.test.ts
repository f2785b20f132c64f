import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateRetrieval, formatEvaluation, isAnswerableQuestion, passageAnswers, readQuestions } from '../../src/rag/index.ts';
import { tempFolder } from './fixtures.ts';

const DOCS = {
  'en/leave.md': '# Leave\n\n## Sick leave\n\nCall your manager before 10:00 when you are ill.\n\n## Annual leave\n\nFull-time staff receive 25 vacation days per year.',
  'en/it.md': '# IT\n\n## Laptops\n\nLaptops are replaced every three years.\n\n## VPN\n\nThe VPN client is called Tunnelbee.',
  'en/travel.md': '# Travel\n\n## Hotels\n\nHotels are capped at EUR 180 per night.\n\n## Flights\n\nBook flights 14 days ahead.',
  'zh/报销.md': '# 报销\n\n## 发票\n\n发票须在开票后三十天内提交。\n\n## 住宿\n\n上海出差住宿标准为每晚六百元。',
  'zh/食堂.md': '# 食堂\n\n## 开放时间\n\n港湾食堂午餐时间为十一点半到一点半。\n\n## 班车\n\n班车每天早上八点从地铁站出发。',
};

const QUESTIONS = [
  { id: 'en-1', lang: 'en', question: 'How many vacation days do I get?', answer: '25', source: 'en/leave.md', split: 'train' },
  { id: 'en-2', lang: 'en', question: 'What is the VPN client called?', answer: 'Tunnelbee', source: 'en/it.md', split: 'train' },
  { id: 'en-3', lang: 'en', question: 'How much can a hotel cost per night?', answer: 'EUR 180', source: 'en/travel.md', split: 'test' },
  { id: 'zh-1', lang: 'zh', question: '发票多久内要提交？', answer: '三十天', source: 'zh/报销.md', split: 'train' },
  { id: 'zh-2', lang: 'zh', question: '食堂几点吃午饭？', answer: '十一点半', source: 'zh/食堂.md', split: 'test' },
];

describe('evaluateRetrieval', () => {
  it('scores BM25, dense and hybrid side by side per language and measures the "don\'t know" threshold', async () => {
    const kbDir = tempFolder(DOCS);
    // Inside the folder, as in examples/handbook: neither a document nor a failure.
    const questionsFile = join(kbDir, 'questions.jsonl');
    writeFileSync(questionsFile, `${QUESTIONS.map((q) => JSON.stringify(q)).join('\n')}\n`);
    const progress: string[] = [];
    const ev = await evaluateRetrieval({
      questionsFile,
      kbDir,
      training: { config: { buckets: 4096, dim: 16, members: 2 }, steps: 30, batchSize: 8 },
      onProgress: (m) => progress.push(m),
    });
    expect(ev.corpus).toMatchObject({ sources: 5, passages: 10, failed: [] });
    expect(ev.questions).toBe(5);
    expect(ev.rows.map((r) => `${r.lang}/${r.mode}`)).toEqual(
      ['en', 'zh', 'all'].flatMap((lang) => ['bm25', 'dense', 'hybrid', 'hybrid-rrf'].map((mode) => `${lang}/${mode}`)),
    );
    for (const row of ev.rows) {
      for (const v of [row.recallAt1, row.recallAt5, row.mrr]) expect(v).toBeGreaterThanOrEqual(0);
      expect(row.recallAt1).toBeLessThanOrEqual(row.recallAt5);
    }
    // Easy questions: BM25 gets them all.
    expect(ev.rows.find((r) => r.lang === 'all' && r.mode === 'bm25')).toMatchObject({ recallAt1: 1, recallAt5: 1, mrr: 1 });
    expect(ev.verdicts.map((v) => v.lang)).toEqual(['en', 'zh']);
    // Nothing to improve on a perfect BM25: the output must say the encoder did not help.
    for (const v of ev.verdicts) {
      expect(v.helps).toBe(false);
      expect(v.message).toMatch(/does NOT help/);
    }
    expect(ev.answerability!.measurements.map((m) => m.signal)).toEqual(['coverage', 'cosine', 'mean']);
    expect(ev.answerability!.recommended.threshold).toBeGreaterThan(0);
    const text = formatEvaluation(ev);
    expect(text).toContain('lang  retriever   questions  recall@1  recall@5  MRR    recall@1  recall@5  MRR');
    // Every gold answer is in its passage here: passage hits equal document hits.
    expect(ev.rows.find((r) => r.lang === 'all' && r.mode === 'bm25')!.passage).toEqual({ recallAt1: 1, recallAt5: 1, mrr: 1 });
    expect(text).toMatch(/en +hybrid +3 +/);
    expect(text).toContain('recommended:');
    expect(progress[0]).toMatch(/indexed 5 documents, 10 passages/);

    const held = await evaluateRetrieval({ questionsFile, kbDir, split: 'test', training: { config: { buckets: 4096, dim: 16, members: 1 }, steps: 5, batchSize: 8 } });
    expect(held.questions).toBe(2);
    // The "don't know" cut is still chosen on the other split's rows and checked on test.
    expect(held.answerability!.measurements[0]!.test).toBeDefined();
    expect(held.rows.filter((r) => r.mode === 'bm25').map((r) => [r.lang, r.questions])).toEqual([['en', 1], ['zh', 1], ['all', 2]]);
    await expect(evaluateRetrieval({ questionsFile, kbDir, split: 'dev' })).rejects.toThrow(/no questions of split "dev"/);
  });

  it('reports a malformed question line by file and line number', () => {
    const file = join(tempFolder(), 'q.jsonl');
    writeFileSync(file, `${JSON.stringify(QUESTIONS[0])}\n{"id": "x"}\n`);
    expect(() => readQuestions(file)).toThrow(/q\.jsonl:2: not a question record/);
  });

  it('reads the dev sets\' rows too: language guessed, must_contain kept, unanswerable rows marked', () => {
    const file = join(tempFolder(), 'devset.jsonl');
    const rows = [
      { id: 'zh-001', question: '签了两年合同，试用期最多多久？', answer: '二个月', must_contain: ['二个月'], source: 'law.md', evidence: '试用期不得超过二个月', type: 'factual', split: 'dev' },
      { id: '18f-009', question: 'Can I bring my dog?', answer: 'UNANSWERABLE', must_contain: [], source: '', evidence: '', type: 'unanswerable', split: 'test' },
    ];
    writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n'));
    const [zh, none] = readQuestions(file);
    expect(zh).toEqual({ id: 'zh-001', lang: 'zh', question: rows[0]!.question, answer: '二个月', mustContain: ['二个月'], source: 'law.md', evidence: '试用期不得超过二个月', split: 'dev' });
    expect(none).toMatchObject({ lang: 'en', source: '' });
    expect([zh, none].map((q) => isAnswerableQuestion(q!))).toEqual([true, false]);
  });

  it('counts a passage as a hit only when it comes from the source and holds the evidence or every must_contain string', () => {
    const q = { id: 'x', lang: 'en', question: 'q', source: 'leave.md', evidence: 'You can carry over a maximum of 240 hours', mustContain: ['240'] };
    expect(passageAnswers(q, { source: 'leave.md', text: 'Rules.\nYou can carry over a\n maximum of 240 hours of leave.' })).toBe(true);
    // The evidence straddles two passages: the must_contain strings decide.
    expect(passageAnswers(q, { source: 'leave.md', text: 'maximum of 240 hours' })).toBe(true);
    expect(passageAnswers(q, { source: 'leave.md', text: 'Annual leave accrues every pay period.' })).toBe(false);
    expect(passageAnswers(q, { source: 'other.md', text: 'You can carry over a maximum of 240 hours' })).toBe(false);
    // The sample handbook's rows: the answer itself.
    const sample = { id: 'y', lang: 'en', question: 'q', source: 'en/leave.md', answer: '25 days' };
    expect(passageAnswers(sample, { source: 'en/leave.md', text: 'Staff get 25 days.' })).toBe(true);
    expect(passageAnswers(sample, { source: 'en/leave.md', text: 'Sick leave rules.' })).toBe(false);
  });
});
