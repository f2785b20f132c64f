import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateRetrieval, formatEvaluation, readQuestions } from '../../src/rag/index.ts';
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
    expect(text).toContain('lang  retriever   questions  recall@1  recall@5  MRR');
    expect(text).toMatch(/en +hybrid +3 +/);
    expect(text).toContain('recommended:');
    expect(progress[0]).toMatch(/indexed 5 documents, 10 passages/);
  });

  it('reports a malformed question line by file and line number', () => {
    const file = join(tempFolder(), 'q.jsonl');
    writeFileSync(file, `${JSON.stringify(QUESTIONS[0])}\n{"id": "x"}\n`);
    expect(() => readQuestions(file)).toThrow(/q\.jsonl:2: not a question record/);
  });
});
