/**
 * 👍/👎 move the answer's choice: a rated answer is proposed again from the passages it was
 * answered from, the candidate it gave is found, and the selector learns from it (a liked one
 * is right, a disliked one ranks lower).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { runStage } from '../../src/training/stages/selector-stage.ts';
import type { AnswerEvent, RatedAnswer, Source } from '../../src/core/index.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { CandidateAnswerer, composeAnswer, directAnswerOf } from '../../src/rag/candidate-answerer.ts';
import { DEFAULT_SELECTOR, selectorAccuracy, trainSelector } from '../../src/rag/answer-selector.ts';
import { voteGroups } from '../../src/training/sft/selector-data.ts';
import { tempFolder } from '../rag/fixtures.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';

const DOCS = {
  'leave.md': `# Leave

## Carry-over

You may carry over at most 5 days into the next year, and only with your manager's approval in PeopleDock.

## Parental leave

Parents get 16 weeks of paid parental leave, to be taken within the first year after the birth.

## Sick leave

The company pays 70% of your salary from the second year of illness, after a medical assessment.
`,
  'travel.md': `# Travel

## Meals

The meal allowance is €40 per day abroad, paid with your salary in the following month.

## Hotels

Hotels are booked through TravelDesk at least 14 days before departure, except for emergencies.
`,
};

async function answer(kb: LocalKnowledgeBase, selector = DEFAULT_SELECTOR, question: string) {
  let text = '';
  let direct = '';
  let sources: Source[] = [];
  for await (const e of new CandidateAnswerer({ kb, selector }).answer({ question, history: [], user: { platform: 'web', id: 'u' }, channel: 'c' }) as AsyncIterable<AnswerEvent>) {
    if (e.type === 'token') text += e.text;
    if (e.type === 'sources') sources = e.sources;
    if (e.type === 'done') direct = e.direct ?? '';
  }
  return { text, direct, sources };
}

function rated(question: string, a: { text: string; sources: Source[] }, up: number, down: number): RatedAnswer {
  return {
    answer: { id: question, createdAt: 0, platform: 'web', workspace: 'w', channel: 'c', messageId: question, userId: 'u', question, passages: a.sources, prompt: '', output: a.text, modelName: 'm', modelVersion: 'v1', latencyMs: 1 },
    up,
    down,
    comments: [],
  };
}

describe('selector examples from votes', () => {
  it('reads the direct answer back out of both shapes of a composed answer', () => {
    expect(directAnswerOf(composeAnswer({ direct: '5 days', support: 'You may carry over at most 5 days.', citation: 1 }))).toBe('5 days');
    expect(directAnswerOf(composeAnswer({ direct: 'Report it in Beacon within 1 hour', support: 'Report it in Beacon within 1 hour:', citation: 2 }))).toBe('Report it in Beacon within 1 hour');
  });

  it('finds the candidate each rated answer gave: 👍 right, 👎 rejected; refusals and ties teach nothing', async () => {
    const kb = new LocalKnowledgeBase(':memory:');
    await kb.addPaths([tempFolder(DOCS)]);
    const liked = await answer(kb, DEFAULT_SELECTOR, 'How many days can I carry over?');
    const disliked = await answer(kb, DEFAULT_SELECTOR, 'How much is the meal allowance?');
    const refused = await answer(kb, DEFAULT_SELECTOR, 'What is the dress code?');
    expect(liked.direct).toBe('5 days');
    expect(refused.direct).toBe('');
    const { groups, skipped } = await voteGroups(
      [rated('How many days can I carry over?', liked, 2, 0), rated('How much is the meal allowance?', disliked, 0, 3), rated('What is the dress code?', refused, 0, 1), rated('tie', liked, 1, 1)],
      { kb },
    );
    expect(skipped).toEqual({ refused: 1, tied: 1, notCandidates: 0 });
    expect(groups).toHaveLength(2);
    const pool = await new CandidateAnswerer({ kb }).rank({ question: 'How many days can I carry over?', history: [] }, liked.sources);
    expect(pool[groups[0]!.right.indexOf(true)]!.text).toBe('5 days');
    expect(groups[0]!.rejected).toBeUndefined();
    expect(groups[1]!.right.every((r) => !r)).toBe(true);
    const pool2 = await new CandidateAnswerer({ kb }).rank({ question: 'How much is the meal allowance?', history: [] }, disliked.sources);
    expect(pool2[groups[1]!.rejected!]!.text.toLowerCase()).toBe(disliked.direct.toLowerCase());
  });

  it('learns from people who want the condition with the number: their 👎 on bare values changes held-out answers', async () => {
    const kb = new LocalKnowledgeBase(':memory:');
    await kb.addPaths([tempFolder(DOCS)]);
    // This company's people reject a bare number ("5 days") and like the sentence that says when it applies.
    const wantsSentence = (direct: string) => direct.split(/\s+/).length > 4;
    const trainQs = ['How many days can I carry over?', 'How many weeks of parental leave do parents get?', 'How much of my salary is paid when I am ill?'];
    const heldQ = 'How much is the meal allowance per day?';
    const before = await answer(kb, DEFAULT_SELECTOR, heldQ);
    expect(wantsSentence(before.direct)).toBe(false); // the rules give the bare amount
    const votes: RatedAnswer[] = [];
    for (const q of trainQs) {
      const a = await answer(kb, DEFAULT_SELECTOR, q);
      votes.push(rated(q, a, wantsSentence(a.direct) ? 3 : 0, wantsSentence(a.direct) ? 0 : 3));
    }
    const { groups } = await voteGroups(votes, { kb });
    expect(groups.every((g) => g.rejected !== undefined)).toBe(true);
    const learnt = trainSelector(groups.map((g) => ({ ...g, weight: 5 })));
    expect(selectorAccuracy(DEFAULT_SELECTOR, groups)).toBe(0);
    expect(selectorAccuracy(learnt, groups)).toBe(1);
    const after = await answer(kb, learnt, heldQ);
    expect(after.direct).not.toBe(before.direct);
    expect(after.direct).toMatch(/€40 per day/);
    expect(wantsSentence(after.direct)).toBe(true);
  });
});

describe('/train selector', () => {
  it('refuses with what it has and what it needs when too few answers were rated, and registers nothing', async () => {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-selector-'));
    try {
      const registry = new ModelRegistry(home);
      await registry.register(path.join(import.meta.dirname, '..', 'rlhf', 'fixtures', 'toy-sft'), { source: 'sft', promote: true });
      const store = new SqliteStore(path.join(home, 'teamllm.db'));
      const saved = await store.saveAnswer({ platform: 'web', workspace: 'w', channel: 'c', messageId: 'm1', userId: 'u', question: 'q?', passages: [], prompt: '', output: 'a', modelName: 'm', modelVersion: 'v1', latencyMs: 1 });
      await store.recordFeedback({ answerId: saved.id, platform: 'web', userId: 'u2', value: 1 });
      store.close();
      const ctx = { params: {}, home, ...stageServices(home), runDir: path.join(home, 'runs', '1-selector'), resume: false, signal: new AbortController().signal, progress: () => {}, log: () => {} };
      await expect(runStage(ctx)).rejects.toThrow(/too little feedback: 1 answers with a net vote; it needs 20/);
      await expect(runStage({ ...ctx, params: { algo: 'x' } })).rejects.toThrow(/unknown parameter algo/);
      expect((await registry.list()).map((v) => v.version)).toEqual(['v1']);
    } finally {
      await fs.rm(home, { recursive: true, force: true });
    }
  });
});
