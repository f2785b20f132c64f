/**
 * "Is the answer in one of these?": after a "don't know", the web chat names the sections it found
 * closest; the asker points at the one that answers, gets the answer from it, and a 👍 on that answer
 * becomes a (question in the asker's words, passage) pair the retrieval encoder learns from.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CandidateAnswerer } from '../../src/rag/candidate-answerer.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { likedPassages, votedAnswers } from '../../src/training/feedback-datasets.ts';
import { tempFolder } from '../rag/fixtures.ts';
import { startWebChat, type WebChatServer } from './web-chat-server.ts';

const TRAVEL = `# Travel and expenses

## Taxis

Taxis may be expensed between 23:00 and 06:00, or when public transport is not running.

## Trains

Trips within Europe under 700 km are made by train, in second class.

## Hotels

Hotels are booked through TravelDesk at least 14 days before departure.

## Meals

The meal allowance abroad is €40 per day, paid with the next salary.
`;

let web: WebChatServer;
const kb = new LocalKnowledgeBase(':memory:');

beforeAll(async () => {
  await kb.addPaths([tempFolder({ 'travel.md': TRAVEL })]);
  web = await startWebChat(new CandidateAnswerer({ kb }), 'from-section');
});

afterAll(async () => {
  await web.close();
  kb.close();
});

const chat = (body: Record<string, unknown>) => web.chat(body);
const QUESTION = 'Can the company pay my uber home when transport has stopped after the party?';

describe('"Answer from this section"', () => {
  it('names the closest sections after a "don\'t know", answers from the one pointed at, and its 👍 teaches the asker\'s words', async () => {
    const first = await chat({ text: QUESTION, user: 'ann', conversation: 'c1' });
    expect(first.status).toBe(200);
    expect(first.body.direct).toBe('');
    expect(first.body.sources).toEqual([]);
    const near = first.body.near as { source: string; title: string; text: string }[];
    expect(near.length).toBeGreaterThan(0);
    const taxis = near.find((s) => s.title.endsWith('Taxis'));
    expect(taxis, JSON.stringify(near.map((s) => s.title))).toBeDefined();

    const pointed = await chat({ fromSection: { answer: first.body.answerId, source: taxis!.source, title: taxis!.title }, user: 'ann', conversation: 'c1' });
    expect(pointed.status).toBe(200);
    expect(pointed.body.outcome).toBe('answered');
    expect(pointed.body.direct).not.toBe('');
    expect(pointed.body.answer).toContain('23:00');
    expect((pointed.body.sources as { title: string }[]).map((s) => s.title)).toEqual([taxis!.title]);
    // The same question, in the same conversation: its turn is not doubled.
    const stored = await web.runtime.store.getAnswer(pointed.body.answerId!);
    expect(stored).toMatchObject({ question: QUESTION, channel: 'guest:ann' });
    expect((await web.runtime.store.recentTurns('web::guest:ann:c1', 10)).map((t) => t.role)).toEqual(['user', 'assistant', 'assistant']);

    // 👍 on it: the asker's words and the section, for /train embeddings (training/stages/embeddings-stage.ts).
    await web.post('/api/feedback', { answerId: pointed.body.answerId, value: 1, user: 'ann' });
    const liked = likedPassages(await votedAnswers(web.runtime.store));
    expect(liked).toEqual([{ question: QUESTION, source: taxis!.source, text: expect.stringContaining('23:00') }]);
  });

  it("refuses a stranger's pointing, a section that is not there, and a body that asks two things", async () => {
    const first = await chat({ text: QUESTION, user: 'bob', conversation: 'c2' });
    const taxis = (first.body.near as { source: string; title: string }[]).find((s) => s.title.endsWith('Taxis'))!;
    const stranger = await chat({ fromSection: { answer: first.body.answerId, source: taxis.source, title: taxis.title }, user: 'eve', conversation: 'c2' });
    expect(stranger.body.outcome).toBe('denied');
    expect(stranger.body.answerId).toBeNull();
    const gone = await chat({ fromSection: { answer: first.body.answerId, source: taxis.source, title: 'Travel and expenses > Parking' }, user: 'bob', conversation: 'c2' });
    expect(gone.status).toBe(200);
    expect(gone.body.direct).toBe('');
    expect(gone.body.sources).toEqual([]);
    expect((await chat({ text: 'Hi?', fromSection: { answer: 'x', source: 'a', title: 'b' }, user: 'bob' })).status).toBe(400);
    expect((await chat({ fromSection: { answer: 'x', source: 'a' }, user: 'bob' })).status).toBe(400);
  });
});
