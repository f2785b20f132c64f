import { describe, expect, it } from 'vitest';
import { Bm25Index, LocalKnowledgeBase, searchTerms } from '../../src/rag/index.ts';
import { stem } from '../../src/rag/search-terms.ts';
import { weightedQuery } from '../../src/rag/bm25.ts';
import { tempFolder } from './fixtures.ts';

describe('search terms', () => {
  it('stems English words with Porter when asked, and leaves short words, numbers and Chinese alone', () => {
    expect(['donors', 'donating', 'reimbursed', 'reimbursement', 'vacations', "employee's", 'vpn', '2024'].map(stem)).toEqual([
      'donor',
      'donat',
      'reimburs',
      'reimburs',
      'vacat',
      'employe',
      'vpn',
      '2024',
    ]);
    expect(searchTerms('Organ donors are reimbursed', { stem: true })).toEqual(['organ', 'donor', 'reimburs']);
    // The plain call (what the answerers' word overlap reads) is unchanged.
    expect(searchTerms('Organ donors are reimbursed')).toEqual(['organ', 'donors', 'reimbursed']);
  });

  it('reads a hyphenated word joined too, and question words as stop words', () => {
    expect(searchTerms('Wi-Fi for guests, by e-mail')).toEqual(['wi', 'fi', 'guests', 'e', 'mail', 'wifi', 'email']);
    expect(searchTerms('the wifi')).toEqual(['wifi']);
    expect(searchTerms('How many vacation days do I get? How much?')).toEqual(['vacation', 'days']);
  });

  it('spells a weekday one way: 礼拜五 and 星期五 meet the 周五 of a timetable', () => {
    const friday = searchTerms('周五返程班车');
    expect(searchTerms('礼拜五坐班车').filter((t) => friday.includes(t))).toEqual(expect.arrayContaining(['周五', '班车']));
    expect(searchTerms('星期天')).toEqual(searchTerms('周日'));
  });

  it('joins a separable verb that the asker split around a count (加多少个钟头的班 → 加班), and reads 钟头 as 小时', () => {
    expect(searchTerms('一个月最多能加多少个钟头的班？')).toEqual(expect.arrayContaining(['加班', '小时']));
    expect(searchTerms('我想请三天假')).toContain('请假');
    expect(searchTerms('住了两天院')).toContain('住院');
    // The gap holds only counts and particles: a place name between 上 and 班 is not 上班.
    expect(searchTerms('上海办公室的班车几点发车')).not.toContain('上班');
    expect(searchTerms('加班费')).not.toContain('加费');
    expect(searchTerms('我结婚能休几天假？')).not.toContain('休假');
  });

  it('reads HR in Chinese text as the 人力资源 the handbook writes, and only there', () => {
    expect(searchTerms('HR的电话是多少？')).toEqual(expect.arrayContaining(['人力资源']));
    expect(searchTerms('Who is my HR contact?')).not.toContain('人力资源');
    expect(searchTerms('我的 HRBP 是谁')).not.toContain('人力资源');
  });

  it('adds single Chinese characters, marked #, after the words and bigrams', () => {
    expect(searchTerms('生孩子休假', { cjkUnigrams: true })).toEqual(['孩子', '休假', '生孩', '孩子', '子休', '休假', '#生', '#孩', '#子', '#休', '#假']);
  });
});

describe('BM25 fields and weighted queries', () => {
  it('counts a term of a weighted field as that many occurrences', () => {
    const index = new Bm25Index<string>();
    index.add('title', [
      { text: 'parking', weight: 2 },
      { text: 'rules for visitors', weight: 1 },
    ]);
    index.add('body', [
      { text: 'visitors', weight: 2 },
      { text: 'parking rules', weight: 1 },
    ]);
    const scores = index.scoreAll('parking');
    expect(scores.get('title')!).toBeGreaterThan(scores.get('body')!);
    expect(index.documentFrequency('parking')).toBe(2);
  });

  it('multiplies each query term by its weight', () => {
    const index = new Bm25Index<string>();
    index.add('a', 'laptop stolen');
    index.add('b', 'holiday calendar');
    index.add('c', 'office plants');
    const full = index.scoreAll(new Map([['laptop', 1]])).get('a')!;
    const half = index.scoreAll(new Map([['laptop', 0.5]])).get('a')!;
    expect(half).toBeCloseTo(full / 2, 10);
  });
});

describe('weighted queries', () => {
  it('weights each query term once, single Chinese characters at the unigram weight (0 drops them)', () => {
    const terms = searchTerms('生孩子', { cjkUnigrams: true });
    expect(weightedQuery(terms, 0.5)).toEqual(new Map([['孩子', 1], ['生孩', 1], ['#生', 0.5], ['#孩', 0.5], ['#子', 0.5]]));
    expect(weightedQuery(terms, 0)).toEqual(new Map([['孩子', 1], ['生孩', 1]]));
  });
});

describe('paraphrased questions in a tiny knowledge base', () => {
  const docs = {
    'donation.md': '# Organ donation\n\nDonors are reimbursed for travel to the hospital and get 30 days of paid leave.',
    'travel.md': '# Travel\n\nTrain tickets are reimbursed.',
    '生育.md': '# 生育\n\n女职工生育享受九十八天产假。',
    '年假.md': '# 年假\n\n每年可以请五天年假。',
  };
  const PLAIN = { terms: {}, k1: 1.2, b: 0.75, titleWeight: 1, unigramWeight: 0, expansionWeight: 0 };

  // Plain BM25 ranks the travel page first (it shares only "reimbursed", in a shorter text), and
  // finds nothing at all for the Chinese question (no word or bigram in common with any passage).
  it.each([
    ['Is a donor reimbursed?', 'donation.md', 'travel.md'],
    ['生孩子一共能休多少天？', '生育.md', 'nothing'],
  ])('ranks the passage that answers "%s" first where plain BM25 does not', async (question, right, wrong) => {
    const dir = tempFolder(docs);
    const plain = new LocalKnowledgeBase(':memory:', { lexical: PLAIN });
    const tuned = new LocalKnowledgeBase(':memory:');
    await plain.addPaths([dir]);
    await tuned.addPaths([dir]);
    expect((await plain.retrieve(question, 1, { mode: 'bm25' }))[0]?.source ?? 'nothing').toBe(wrong);
    expect((await tuned.retrieve(question, 1, { mode: 'bm25' }))[0]?.source).toBe(right);
    plain.close();
    tuned.close();
  });
});
