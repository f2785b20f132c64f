/**
 * The retrieval encoder learns employees' words from their votes: a question whose answer people
 * liked is paired with the passage that answer cited, so words only askers use ("nan", "cab") come
 * to mean the sections they were answered from — and `/train embeddings` keeps the new encoder only
 * when held-out liked questions and the documents' own headings find their passages no worse.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import type { RatedAnswer, Source } from '../../src/core/index.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { knowledgeBaseFile } from '../../src/rag/open-knowledge-base.ts';
import { askedPairs } from '../../src/rag/index.ts';
import { LocalEmbeddings } from '../../src/rag/local-embeddings.ts';
import { trainEncoder } from '../../src/rag/encoder-training.ts';
import { PairSampler } from '../../src/rag/contrastive-pairs.ts';
import { cosine } from '../../src/rag/bag-encoder.ts';
import { Random } from '../../src/model/random.ts';
import { likedPassages } from '../../src/training/feedback-datasets.ts';
import { runStage } from '../../src/training/stages/embeddings-stage.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';
import { tempFolder } from './fixtures.ts';

const HANDBOOK = {
  'leave.md': `# Leave

## Bereavement

Bereavement leave is 5 working days for the death of a partner, child or parent, and 2 working days for a grandparent or sibling.

## Sick leave

Report sick to your manager before 09:30 on the first day of illness. From the third day a doctor's note is required.

## Annual leave

Full-time employees get 25 days of annual leave per calendar year. Up to 5 days may be carried over.
`,
  'travel.md': `# Travel

## Taxis

Taxis may be expensed between 23:00 and 06:00, or when public transport is unavailable.

## Trains

Trips within Europe under 700 km are made by train, in second class.

## Hotels

Hotels are booked through TravelDesk at least 14 days before departure.
`,
  'office.md': `# Office

## Parking

The garage has 40 parking spaces, assigned by lottery every quarter.

## Meals

Lunch in the canteen is free for employees from 12:00 to 13:30.

## Equipment

Every employee receives a laptop and a headset on the first day.
`,
};

/** Questions in the askers' words, each with the section whose answer they liked. */
const LIKED: [string, string][] = [
  ['My nan died on Sunday, how much time can I take?', 'Bereavement'],
  ["Granny's funeral is on Friday. Do I get days off for it?", 'Bereavement'],
  ['My grandad passed away last night, what am I entitled to?', 'Bereavement'],
  ['Can I claim a cab home after the team party?', 'Taxis'],
  ['Late cab back from the airport at 1am, can I get it back?', 'Taxis'],
  ['Is an uber after midnight something I can put on expenses?', 'Taxis'],
  ['I feel rotten and will stay in bed, who do I tell?', 'Sick leave'],
  ['Feeling rotten since yesterday, when do I need a note?', 'Sick leave'],
  ['My nan is very ill and may not make it, what leave is there if she goes?', 'Bereavement'],
  ['Cab home after the office party at 2am, is it covered?', 'Taxis'],
  ['Still feeling rotten, do I call my manager?', 'Sick leave'],
  ['Cab fare after the late release, can I claim?', 'Taxis'],
];
/** Asked later, by others, in the same words: none of them was voted on. */
const LATER: [string, string][] = [
  ['nan funeral next week, days off?', 'Bereavement'],
  ['grabbing a cab home tonight, is that covered?', 'Taxis'],
  ['feeling rotten today, what do I do?', 'Sick leave'],
];

const homes: string[] = [];
afterEach(async () => {
  for (const h of homes.splice(0)) await fs.rm(h, { recursive: true, force: true });
});

function rated(question: string, passages: Source[], cited: number, up: number, down = 0): RatedAnswer {
  return {
    answer: { id: question, createdAt: 0, platform: 'web', workspace: 'w', channel: 'c', messageId: question, userId: 'u', question, passages, prompt: '', output: `The answer.\n\n> quoted [${cited}]`, modelName: 'm', modelVersion: 'v1', latencyMs: 1 },
    up,
    down,
    comments: [],
  };
}

/** The rank (0 = first) of the section titled `title` among all passages, by the encoder's cosine alone. */
function rankOf(embeddings: LocalEmbeddings, passages: { title: string; text: string }[], question: string, title: string): number {
  const q = embeddings.encoder.embed(question);
  const scores = passages.map((p) => cosine(q, embeddings.encoder.embed(`${p.title}\n${p.text}`)));
  const own = passages.findIndex((p) => p.title.endsWith(title));
  return scores.filter((s, i) => i !== own && s > scores[own]!).length;
}

/**
 * A data folder with the handbook in its knowledge base, the encoder trained on the documents alone
 * (what it has before any vote), and answers citing `votes` passages, each liked by `voter`.
 */
async function homeWithVotes(prefix: string, votes: [question: string, sectionTitle: string][], voter: string) {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  homes.push(home);
  const kb = new LocalKnowledgeBase(knowledgeBaseFile(home), { name: 'default' });
  await kb.addPaths([tempFolder(HANDBOOK)]);
  const passages = kb.passages();
  kb.close();
  const { encoder, report } = await trainEncoder(passages, { steps: 120, seed: 3 });
  const before = LocalEmbeddings.fromTraining(encoder, report, { sources: 3, passages: passages.length });
  before.save(path.join(home, 'embeddings'));
  const store = new SqliteStore(path.join(home, 'teamllm.db'));
  for (const [question, title] of votes) {
    const cited = passages.find((p) => p.title.endsWith(title))!;
    const saved = await store.saveAnswer({ platform: 'web', workspace: 'w', channel: 'c', messageId: question, userId: 'u', question, passages: [{ source: cited.source, title: cited.title, text: cited.text, score: 1 }], prompt: '', output: `x\n\n> ${cited.text} [1]`, modelName: 'm', modelVersion: 'v1', latencyMs: 1 });
    await store.recordFeedback({ answerId: saved.id, platform: 'web', userId: voter, value: 1 });
  }
  store.close();
  const logs: string[] = [];
  const ctx = { params: {} as Record<string, string>, home, ...stageServices(home), runDir: path.join(home, 'runs', '1-embeddings'), resume: false, signal: new AbortController().signal, progress: () => {}, log: (m: string) => logs.push(m) };
  return { home, passages, before, ctx, logs };
}

describe('the encoder learns from liked answers', () => {
  it('reads the passage each liked answer cited, and finds it among the passages by source and text', () => {
    const passages: Source[] = [
      { source: 'leave.md', title: 'Leave > Bereavement', text: 'Bereavement leave is 5 working days.', score: 1 },
      { source: 'travel.md', title: 'Travel > Taxis', text: 'Taxis may be expensed between 23:00 and 06:00.', score: 1 },
    ];
    const liked = likedPassages([rated('nan died?', passages, 1, 2), rated('cab home?', passages, 2, 1), rated('refused?', [], 1, 3), rated('wrong?', passages, 1, 0, 2), rated('no citation', passages, 9, 1)]);
    expect(liked).toEqual([
      { question: 'nan died?', source: 'leave.md', text: 'Bereavement leave is 5 working days.' },
      { question: 'cab home?', source: 'travel.md', text: 'Taxis may be expensed between 23:00 and 06:00.' },
    ]);
    const corpus = [
      { source: 'leave.md', text: 'Sick leave: report before 09:30.' },
      { source: 'leave.md', text: 'Bereavement leave is 5 working days. Ask your manager.' },
      { source: 'travel.md', text: 'Taxis may be expensed between 23:00 and 06:00.' },
    ];
    // Containment finds a passage re-split since; the same question and passage count once; a removed document is skipped.
    expect(askedPairs(corpus, [...liked, liked[1]!, { question: 'gone?', source: 'old.md', text: 'Removed.' }])).toEqual([
      { query: 'nan died?', passage: 1 },
      { query: 'cab home?', passage: 2 },
    ]);
  });

  it('fills a share of each batch with asked pairs, one per passage, and draws the same batches as before without any', () => {
    const passages = [0, 1, 2, 3, 4, 5].map((i) => ({ source: 'a.md', title: `A > S${i}`, text: `Sentence one of section ${i} is here. Sentence two of section ${i} is here.`, position: i }));
    const plain = new PairSampler(passages, new Random(7)).batch(4);
    expect(new PairSampler(passages, new Random(7), []).batch(4)).toEqual(plain);
    const batch = new PairSampler(passages, new Random(7), [{ query: 'q0', passage: 0 }, { query: 'q0 again', passage: 0 }, { query: 'q3', passage: 3 }], 0.5).batch(4);
    const asked = batch.filter((p) => p.kind === 'asked');
    expect(asked.length).toBeGreaterThanOrEqual(1);
    expect(new Set(batch.map((p) => p.passage)).size).toBe(batch.length);
  });

  it('/train embeddings: words only askers use find the sections they liked, for questions nobody voted on; the gate keeps it', async () => {
    const { home, passages, before, ctx, logs } = await homeWithVotes('teamllm-encoder-votes-', LIKED, 'asker');
    const result = await runStage(ctx);
    expect(logs.join('\n')).toMatch(/12 liked answers citing a passage, 12 found in the knowledge base: training on \d+, holding out [3-9]/);
    expect(result.gate?.passed).toBe(true);
    expect(result.metrics?.likedQuestions).toBe(12);
    const after = LocalEmbeddings.load(path.join(home, 'embeddings'))!;
    expect(after.info.id).not.toBe(before.info.id);
    const firsts = LATER.map(([question, title]) => {
      const was = rankOf(before, passages, question, title);
      const now = rankOf(after, passages, question, title);
      // Before the votes the askers' words found other sections first; after, this one is (near) the top.
      expect(was, question).toBeGreaterThan(1);
      expect(now, `${question}: rank ${was} → ${now}`).toBeLessThanOrEqual(1);
      return now === 0;
    });
    expect(firsts.filter(Boolean).length).toBeGreaterThanOrEqual(2);
    // The documents' own links hold: each heading still finds its section first.
    for (const p of passages.filter((x) => /Parking|Hotels|Equipment/.test(x.title))) expect(rankOf(after, passages, p.title, p.title.split(' > ').pop()!)).toBe(0);
    await expect(runStage({ ...ctx, params: { steps: '0' } })).rejects.toThrow(/steps: must be positive/);
  });

  it('keeps the encoder in use when the retrained one does not find held-out liked passages better, or when too few were liked to check', async () => {
    // Votes that send every question to one section (Parking): the held-out ones are not found better.
    const questions = ['Bereavement leave for a grandparent?', 'Taxis between 23:00 and 06:00?', 'Hotels through TravelDesk?', 'Canteen lunch hours?', 'Laptop on the first day?', 'Report sick before 09:30?', 'Annual leave days per year?', 'Trains under 700 km?'];
    const { home, before, ctx: base } = await homeWithVotes('teamllm-encoder-gate-', questions.map((q) => [q, 'Parking']), 'troll');
    const ctx = { ...base, params: { steps: '120', heldOut: '0.5', askedShare: '0.75' } };
    const result = await runStage(ctx);
    expect(result.gate?.passed).toBe(false);
    expect(result.summary).toMatch(/not better.*keeps the one it has/);
    expect(LocalEmbeddings.load(path.join(home, 'embeddings'))!.info.id).toBe(before.info.id);
    // Nothing held out: nothing shows what the votes taught, so the encoder in use stays.
    const unchecked = await runStage({ ...ctx, params: { heldOut: '0' } });
    expect(unchecked.gate?.passed).toBe(false);
    expect(unchecked.summary).toMatch(/too few to check what the votes taught/);
    // Anonymous web sessions' votes can be left out, as for the reward model.
    const anonymous = await homeWithVotes('teamllm-encoder-anon-', LIKED, 'anon:session-1');
    const vouched = await runStage({ ...anonymous.ctx, params: { anonymousVotes: 'false', steps: '20' } });
    expect(anonymous.logs.join('\n')).toMatch(/0 liked answers citing a passage/);
    expect(vouched.gate?.passed).toBe(false);
    expect(LocalEmbeddings.load(path.join(home, 'embeddings'))!.info.id).toBe(before.info.id);
  });
});
