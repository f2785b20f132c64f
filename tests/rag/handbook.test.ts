import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InMemoryVectorStore, LocalEmbeddings, LocalKnowledgeBase, measureAnswerability, RetrievalOnlyAnswerer, type RetrievalMode } from '../../src/rag/index.ts';
import { trainEncoder } from '../../src/rag/encoder-training.ts';

const HANDBOOK = join(import.meta.dirname, '../../examples/handbook');

interface Question {
  id: string;
  lang: 'en' | 'zh';
  question: string;
  answer: string;
  source: string;
  split: 'train' | 'test';
}

const questions: Question[] = readFileSync(join(HANDBOOK, 'questions.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((line) => JSON.parse(line) as Question);

describe('the sample handbook and its question set', () => {
  it('has 60+ well-formed questions in both languages whose answers appear verbatim in their source', () => {
    expect(questions.length).toBeGreaterThanOrEqual(60);
    expect(new Set(questions.map((q) => q.id)).size).toBe(questions.length);
    for (const lang of ['en', 'zh'] as const) {
      const mine = questions.filter((q) => q.lang === lang);
      expect(mine.length).toBeGreaterThanOrEqual(25);
      const held = mine.filter((q) => q.split === 'test').length / mine.length;
      expect(held).toBeGreaterThan(0.2);
      expect(held).toBeLessThan(0.4);
    }
    for (const q of questions) {
      expect(Object.keys(q).sort()).toEqual(['answer', 'id', 'lang', 'question', 'source', 'split']);
      const file = join(HANDBOOK, q.source);
      expect(existsSync(file), q.source).toBe(true);
      expect(readFileSync(file, 'utf8').includes(q.answer), `${q.id}: "${q.answer}" in ${q.source}`).toBe(true);
    }
  });
});

async function metrics(kb: LocalKnowledgeBase, lang: 'en' | 'zh', mode: RetrievalMode) {
  let hitsAt5 = 0;
  let reciprocal = 0;
  const mine = questions.filter((q) => q.lang === lang);
  for (const q of mine) {
    const rank = (await kb.retrieve(q.question, 10, { mode })).findIndex((h) => h.source === q.source);
    if (rank >= 0 && rank < 5) hitsAt5++;
    if (rank >= 0) reciprocal += 1 / (rank + 1);
  }
  return { recallAt5: hitsAt5 / mine.length, mrr: reciprocal / mine.length };
}

async function answerAll(answerer: RetrievalOnlyAnswerer) {
  let contains = 0;
  let gaveUp = 0;
  for (const q of questions) {
    let text = '';
    for await (const e of answerer.answer({ question: q.question, history: [], user: { platform: 'web', id: 'eval' }, channel: 'eval' })) {
      if (e.type === 'token') text += e.text;
    }
    if (text.includes(q.answer)) contains++;
    if (/couldn't find|没有找到/.test(text)) gaveUp++;
  }
  return { contains: contains / questions.length, gaveUp: gaveUp / questions.length };
}

describe('BM25 retrieval on the handbook (the fallback answerer)', () => {
  const kb = new LocalKnowledgeBase(':memory:');
  beforeAll(async () => {
    const report = await kb.addPaths([join(HANDBOOK, 'en'), join(HANDBOOK, 'zh')], { baseDir: HANDBOOK });
    expect(report.failed).toEqual([]);
  });

  // Measured when written: en recall@5 0.98, MRR 0.88; zh recall@5 1.0, MRR 0.92. With Porter
  // stems, the heading path counted twice and Chinese characters at half weight: en 1.0 / 0.93,
  // zh 1.0 / 0.94. These floors guard those gains.
  it.each(['en', 'zh'] as const)('finds the source document for %s questions', async (lang) => {
    const { recallAt5, mrr } = await metrics(kb, lang, 'bm25');
    expect(recallAt5).toBeGreaterThanOrEqual(0.97);
    expect(mrr).toBeGreaterThanOrEqual(0.9);
  });

  it('quotes the gold fact for most questions and rarely gives up', async () => {
    // Measured when written: with the guessed gate (coverage 0.3) 53 of 84 contained the gold fact and
    // 4 gave up; with the measured one (0.32) 52 and 5.
    const { contains, gaveUp } = await answerAll(new RetrievalOnlyAnswerer(kb));
    expect(contains).toBeGreaterThanOrEqual(0.55);
    expect(gaveUp).toBeLessThanOrEqual(0.1);
  });
});

describe('hybrid retrieval on the handbook, with an encoder trained on it', () => {
  const kb = new LocalKnowledgeBase(':memory:');
  beforeAll(async () => {
    await kb.addPaths([join(HANDBOOK, 'en'), join(HANDBOOK, 'zh')], { baseDir: HANDBOOK });
    // Half the default training (2 members × 200 steps instead of 4 × 300) to keep the test fast;
    // `teamllm eval retrieval` reports the default's figures (docs/knowledge-base.md).
    const { encoder, report } = await trainEncoder(kb.passages(), { config: { members: 2 }, steps: 200 });
    expect(report.lastLoss).toBeLessThan(report.firstLoss / 2);
    const embeddings = LocalEmbeddings.fromTraining(encoder, report, { sources: 24, passages: kb.chunkCount });
    await kb.useDense({ embeddings, store: new InMemoryVectorStore(embeddings) });
  }, 120_000);

  // Measured when written: en BM25 0.979/0.884 -> hybrid 0.979/0.903; zh BM25 1.0/0.924 -> hybrid 1.0/0.938.
  // Since the lexical side was improved (stems, heading weight, Chinese characters) BM25 alone finds
  // every source of these questions, which reuse the documents' words, in its top 5: en 1.0/0.928 ->
  // hybrid 0.979/0.920, zh 1.0/0.940 -> 1.0/0.940 with this half-trained encoder. So this test no
  // longer asks hybrid to beat BM25 here, only to stay within one question of it; where the words
  // differ (the paraphrase and dev sets) hybrid's gain is measured by `eval retrieval`
  // (docs/knowledge-base.md).
  it.each(['en', 'zh'] as const)('meets the targets and stays within one question of BM25 on %s questions', async (lang) => {
    const n = questions.filter((q) => q.lang === lang).length;
    const bm25 = await metrics(kb, lang, 'bm25');
    const hybrid = await metrics(kb, lang, 'hybrid');
    expect(hybrid.recallAt5).toBeGreaterThanOrEqual(0.95);
    expect(hybrid.mrr).toBeGreaterThanOrEqual(0.9);
    expect(hybrid.recallAt5).toBeGreaterThanOrEqual(bm25.recallAt5 - 1 / n - 1e-9);
    expect(hybrid.mrr).toBeGreaterThanOrEqual(bm25.mrr - 1 / n);
  });

  it('measures a "don\'t know" gate on the train split that declines most unanswerable test questions', async () => {
    const { measurements, recommended } = await measureAnswerability(kb, questions);
    // The cosine of the trained encoder separates "source indexed" from "source hidden" far
    // better than word coverage: the encoder earns its place here too.
    const cosine = measurements.find((m) => m.signal === 'cosine')!;
    const coverage = measurements.find((m) => m.signal === 'coverage')!;
    expect(cosine.auc).toBeGreaterThan(coverage.auc + 0.05);
    expect(recommended.signal).toBe('cosine');
    expect(cosine.test!.answered).toBeGreaterThanOrEqual(0.75);
    expect(cosine.test!.declined).toBeGreaterThanOrEqual(0.65);
    const { contains, gaveUp } = await answerAll(new RetrievalOnlyAnswerer(kb, { answerability: recommended }));
    // Measured when written: cosine AUC 0.87 vs coverage 0.77; cut 0.437 answers 82% and declines
    // 76% on the test split; 45 of 84 answers contain the gold fact, 15 give up.
    expect(contains).toBeGreaterThanOrEqual(0.48);
    expect(gaveUp).toBeLessThanOrEqual(0.22);
  });
});
