import { describe, expect, it } from 'vitest';
import { useBackend } from '../model/helpers.ts';
import { LoadedModel } from '../../src/model/loaded-model.ts';
import { answerTokens, compareQa, containsGold, evaluateQa, exactMatch, formatQaScores, normalizeAnswer, tokenF1, type QaScores } from '../../src/training/eval/qa-eval.ts';
import { charTokenizer, tinyChatModel } from './helpers.ts';

describe('QA metrics', () => {
  it('normalises like SQuAD, Unicode-aware, and tokenises Chinese by character', () => {
    expect(normalizeAnswer('The €48 Million!')).toBe('48 million');
    expect(answerTokens('3 个月')).toEqual(['3', '个', '月']);
    expect(answerTokens('¥1,800')).toEqual(['1', '800']);
    expect(exactMatch('  the 25 Days. ', '25 days')).toBe(1);
    expect(exactMatch('25 days a year', '25 days')).toBe(0);
    expect(tokenF1('25 days a year', '25 days')).toBeCloseTo(0.8, 6); // 'a' is an article: [25, days, year]
    expect(tokenF1('26 days', '25 days')).toBeCloseTo(0.5, 6);
    expect(tokenF1('两个工作日', '2 个工作日')).toBeCloseTo(0.8, 6); // 4 of 5 characters shared
    expect(tokenF1('', '25 days')).toBe(0);
    expect(containsGold('You get 25 days of leave.', '25 days')).toBe(1);
    expect(containsGold('它的上限是¥1,800 一年', '¥1,800')).toBe(1);
    expect(containsGold('25', '25 days')).toBe(0);
  });

  it('compares before and after: an adapter that does not beat its base is reported, not promoted', () => {
    const s = (f1: number, em: number, contains: number): QaScores => ({ n: 10, f1, exactMatch: em, containsGold: contains, retrievalHit: 1, goldInContext: 1, model: 'm', items: [] });
    const better = compareQa(s(0.1, 0, 0.1), s(0.3, 0.1, 0.2));
    expect(better.improved).toBe(true);
    expect(better.verdict).toMatch(/beats its base.*f1 10\.0% → 30\.0%/);
    const same = compareQa(s(0.1, 0, 0.1), s(0.1, 0, 0.1));
    expect(same.improved).toBe(false);
    expect(same.verdict).toMatch(/does NOT beat its base.*not promoted/);
    const mixed = compareQa(s(0.1, 0.1, 0.1), s(0.2, 0, 0.1));
    expect(mixed.improved).toBe(false);
    expect(mixed.verdict).toMatch(/exactMatch fell/);
    expect(formatQaScores([{ label: 'base', scores: s(0.1, 0, 0.1) }])).toMatch(/base\s+10\s+0\.0%\s+10\.0%/);
  });
});

describe('evaluateQa', () => {
  it('retrieves passages into the prompt for each held-out question and scores the answers', async () => {
    await useBackend('wasm');
    const tok = charTokenizer();
    const gpt = tinyChatModel(tok.vocabSize);
    const model = new LoadedModel(gpt, tok, { version: 'v1', dir: '.', numParameters: gpt.numParameters, meta: {} });
    const asked: string[] = [];
    const kb = {
      search: async (q: string, k: number) => {
        asked.push(q);
        return [
          { source: 'en/leave.md', title: 'Leave', text: 'Carried-over days expire on 1 July.', score: 1 },
          { source: 'en/other.md', title: 'Other', text: 'Nothing here.', score: 0.5 },
        ].slice(0, k);
      },
    };
    const questions = [
      { id: 'a', question: 'When do carried-over days expire?', answer: '1 July', source: 'en/leave.md', split: 'test' },
      { id: 'b', question: 'How many days?', answer: '25 days', source: 'en/annual.md', split: 'test' },
      { id: 'c', question: 'Train question', answer: 'x', split: 'train' },
    ];
    const r = await evaluateQa({ model, kb, questions, split: 'test', k: 2, maxTokens: 6 });
    expect(asked).toEqual(['When do carried-over days expire?', 'How many days?']);
    expect(r.n).toBe(2);
    expect(r.items.map((i) => [i.id, i.retrievalHit, i.goldInContext])).toEqual([
      ['a', true, true],
      ['b', false, false],
    ]);
    expect(r.retrievalHit).toBe(0.5);
    expect(r.goldInContext).toBe(0.5);
    for (const i of r.items) {
      expect(typeof i.prediction).toBe('string');
      expect(i.f1).toBeGreaterThanOrEqual(0);
      expect(i.f1).toBeLessThanOrEqual(1);
    }
    await expect(evaluateQa({ model, kb, questions, split: 'dev' })).rejects.toThrow(/No questions in split "dev"/);
    expect(r.decoding).toBe('free');
    // Extractive decoding: every answer is a verbatim span of the retrieved passages' text.
    const x = await evaluateQa({ model, kb, questions, split: 'test', k: 2, maxTokens: 12, decoding: 'extractive' });
    expect(x.decoding).toBe('extractive');
    for (const i of x.items) {
      expect(i.prediction.length).toBeGreaterThan(0);
      expect(['Carried-over days expire on 1 July.', 'Nothing here.'].some((t) => t.includes(i.prediction))).toBe(true);
    }
    expect(x.items.map((i) => i.prediction)).not.toEqual(r.items.map((i) => i.prediction));
    gpt.dispose();
  });
});
