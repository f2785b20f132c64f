import { Embeddings } from '@langchain/core/embeddings';
import { describe, expect, it } from 'vitest';
import { cosine } from '../../src/rag/bag-encoder.ts';
import { lossAndGradient, trainEncoder } from '../../src/rag/encoder-training.ts';
import { PairSampler, sentencesOf } from '../../src/rag/contrastive-pairs.ts';
import { featureIds, featureStrings } from '../../src/rag/text-features.ts';
import { LocalEmbeddings } from '../../src/rag/index.ts';
import { Random } from '../../src/model/random.ts';
import { tempFolder } from './fixtures.ts';

/** Tiny settings: the tests check behaviour, not quality (the handbook test checks quality). */
const TINY = { config: { buckets: 4096, dim: 24, members: 2 }, steps: 60, batchSize: 8 };

const TOPICS: [string, string[]][] = [
  ['Leave > Sick leave', ['Call your manager before 10:00 on the first day you are ill.', 'After a week of illness the company doctor contacts you.', 'Sick days do not reduce your holiday allowance.']],
  ['Leave > Annual leave', ['Full-time staff receive 25 vacation days per year.', 'Unused vacation days expire on 1 July of the next year.', 'Book holidays in the HR portal two weeks ahead.']],
  ['IT > Laptops', ['Laptops are replaced every three years by the helpdesk.', 'A broken screen is repaired within two working days.', 'Return your laptop to IT on your last day.']],
  ['IT > VPN', ['The VPN client is called Tunnelbee and needs a YubiKey.', 'Connect to the VPN before opening the intranet from home.', 'The VPN disconnects after twelve idle hours.']],
  ['Travel > Hotels', ['Hotels are capped at EUR 180 per night in Europe.', 'Book hotels through the Skyroute travel portal.', 'Breakfast is included in the hotel allowance.']],
  ['Travel > Flights', ['Book flights at least 14 days before departure.', 'Economy class is standard for flights under six hours.', 'Frequent flyer miles stay with the traveller.']],
  ['报销 > 发票', ['发票须在开票后三十天内提交到报销系统。', '增值税专用发票需要填写公司税号。', '丢失发票需要部门负责人书面说明。']],
  ['食堂 > 开放时间', ['港湾食堂午餐时间为十一点半到一点半。', '晚餐只在加班日提供，需要提前登记。', '食堂每周五提供水果和酸奶。']],
];

const passages = TOPICS.map(([title, sentences], i) => ({ source: `doc${i}.md`, title, text: sentences.join(' '), position: 0 }));

describe('text features', () => {
  it('gives Latin words their character trigrams and Chinese its characters and bigrams', () => {
    expect(featureStrings('Refer')).toEqual(['w:refer', 'g:<re', 'g:ref', 'g:efe', 'g:fer', 'g:er>']);
    expect(featureStrings('公积金')).toEqual(['c:公', 'b:公积', 'c:积', 'b:积金', 'c:金']);
    const ids = featureIds('Laptops 笔记本', { buckets: 1024, subwordN: 3 });
    expect(ids.every((id) => id >= 1 && id < 1024)).toBe(true);
    expect(featureIds('Laptops 笔记本', { buckets: 1024, subwordN: 3 })).toEqual(ids);
  });
});

describe('contrastive pairs', () => {
  it('mines sentence, heading and neighbour pairs without repeating a passage or heading in a batch', () => {
    const sampler = new PairSampler(
      [...passages, { source: 'doc0.md', title: 'Leave > Sick leave', text: 'Sick notes are only needed after three days of illness.', position: 1 }],
      new Random(3),
    );
    const kinds = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const batch = sampler.batch(6);
      expect(new Set(batch.map((p) => p.passage)).size).toBe(batch.length);
      const headings = batch.filter((p) => p.kind === 'heading').map((p) => p.query);
      expect(new Set(headings).size).toBe(headings.length);
      for (const p of batch) kinds.add(p.kind);
    }
    expect([...kinds].sort()).toEqual(['heading', 'neighbour', 'sentence']);
    expect(sentencesOf('- Yes.\n发票须在三十天内提交。Book flights early, please.')).toEqual(['发票须在三十天内提交。', 'Book flights early, please.']);
  });
});

describe('trainEncoder', () => {
  it('learns: the loss falls and a held-out paraphrase finds its topic better than before training', async () => {
    const { encoder, report } = await trainEncoder(passages, { ...TINY, steps: 120 });
    expect(report.lastLoss).toBeLessThan(report.firstLoss * 0.7);
    expect(encoder.members).toHaveLength(2);
    const { encoder: untrained } = await trainEncoder(passages, { ...TINY, steps: 0 });
    // Questions that share few literal words with their passage.
    const questions: [string, number][] = [
      ['what happens when I am ill for a week', 0],
      ['how many holidays do I get', 1],
      ['when is my laptop replaced', 2],
      ['how do I connect from home', 3],
      ['hotel price limit', 4],
      ['how early should I book a plane ticket', 5],
      ['发票多久内要交', 6],
      ['食堂几点吃午饭', 7],
    ];
    const accuracy = (embed: (t: string) => number[]) => {
      const vectors = passages.map((p) => embed(`${p.title}\n${p.text}`));
      return questions.filter(([q, want]) => {
        const v = embed(q);
        const scores = vectors.map((p) => cosine(v, p));
        return scores.indexOf(Math.max(...scores)) === want;
      }).length;
    };
    expect(accuracy((t) => encoder.embed(t))).toBeGreaterThan(accuracy((t) => untrained.embed(t)));
    expect(accuracy((t) => encoder.embed(t))).toBeGreaterThanOrEqual(6);
  });

  it('keeps the gradient finite for a text whose features sum to zero', () => {
    // Such a text (every feature unknown to the corpus, so idf 0) once turned a whole ensemble
    // member into NaN: the gradient of |x| is 0/0 at x = 0.
    const dim = 4;
    const sums = new Float32Array([0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]);
    const { loss, grad } = lossAndGradient(sums, 4, 0.05);
    expect(Number.isFinite(loss)).toBe(true);
    expect(grad.every(Number.isFinite)).toBe(true);
    expect(grad.slice(0, dim).every((g) => g === 0)).toBe(false);
  });

  it('can be cancelled', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(trainEncoder(passages, { ...TINY, signal: controller.signal })).rejects.toThrow(/cancelled/);
  });
});

describe('LocalEmbeddings', () => {
  it('is a LangChain Embeddings that saves and loads to the same vectors', async () => {
    const { encoder, report } = await trainEncoder(passages, { ...TINY, steps: 10 });
    const embeddings = LocalEmbeddings.fromTraining(encoder, report, { sources: 8, passages: 8 });
    expect(embeddings).toBeInstanceOf(Embeddings);
    const [doc] = await embeddings.embedDocuments(['Laptops are replaced every three years.']);
    expect(doc).toHaveLength(48);
    expect(Math.hypot(...doc!)).toBeCloseTo(1, 5);

    const dir = tempFolder();
    expect(LocalEmbeddings.load(dir)).toBeUndefined();
    embeddings.save(dir);
    const loaded = LocalEmbeddings.load(dir)!;
    expect(loaded.info.id).toBe(embeddings.info.id);
    expect(await loaded.embedQuery('VPN 客户端')).toEqual(await embeddings.embedQuery('VPN 客户端'));
    // Trained again, differently: a different id (stored vectors are then re-embedded).
    const other = await trainEncoder(passages, { ...TINY, steps: 10, seed: 9 });
    expect(LocalEmbeddings.fromTraining(other.encoder, other.report, { sources: 8, passages: 8 }).info.id).not.toBe(embeddings.info.id);
  });
});
