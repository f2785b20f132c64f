import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CandidateAnswerer } from '../../src/rag/candidate-answerer.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { preferencePairs, votedAnswers } from '../../src/training/feedback-datasets.ts';
import { tempFolder } from '../rag/fixtures.ts';
import { startWebChat, type WebChatServer } from './web-chat-server.ts';
const LEAVE = `# Leave

## Annual leave

| Years of service | Annual leave |
|---|---|
| 0–4 years | 25 days |
| 5–9 years | 26 days |

You may carry over at most 5 days into the next year.
`;

let web: WebChatServer;
const kb = new LocalKnowledgeBase(':memory:');

beforeAll(async () => {
  await kb.addPaths([tempFolder({ 'leave.md': LEAVE })]);
  web = await startWebChat(new CandidateAnswerer({ kb }), 'another');
});

afterAll(async () => {
  await web.close();
  kb.close();
});

const chat = (body: Record<string, unknown>) => web.chat(body);

describe('"Another answer"', () => {
  it('answers the same question again without repeating itself, and the two votes make a preference pair', async () => {
    const first = await chat({ text: 'How many days of annual leave do I get?', user: 'ann', conversation: 'c1' });
    // No years of service stated: the tiers (answer-cases.ts).
    expect(first.body.direct).toBe('0–4 years: 25 days; 5–9 years: 26 days');
    const second = await chat({ regenerate: first.body.answerId, user: 'ann', conversation: 'c1' });
    expect(second.status).toBe(200);
    expect(second.body.outcome).toBe('answered');
    expect(second.body.direct).not.toBe('');
    expect(second.body.direct).not.toBe(first.body.direct);
    const third = await chat({ regenerate: second.body.answerId, user: 'ann', conversation: 'c1' });
    expect([first.body.direct, second.body.direct]).not.toContain(third.body.direct);

    // Stored as answers to the same question, in the same conversation; its turns are not doubled.
    const stored = await web.runtime.store.getAnswer(second.body.answerId!);
    expect(stored).toMatchObject({ question: 'How many days of annual leave do I get?', channel: 'guest:ann' });
    const turns = await web.runtime.store.recentTurns('web::guest:ann:c1', 10);
    expect(turns.map((t) => t.role)).toEqual(['user', 'assistant', 'assistant', 'assistant']);

    // 👎 on the first, 👍 on the second: a (liked, disliked) pair for the reward model.
    await web.post('/api/feedback', { answerId: first.body.answerId, value: -1, user: 'ann' });
    await web.post('/api/feedback', { answerId: second.body.answerId, value: 1, user: 'ann' });
    const pairs = preferencePairs(await votedAnswers(web.runtime.store));
    expect(pairs.map((p) => [p.chosen.answer.id, p.rejected.answer.id])).toEqual([[second.body.answerId, first.body.answerId]]);
  });

  it('says when the passages hold no other answer, and never answers for someone else\'s conversation', async () => {
    const first = await chat({ text: 'How many days can I carry over into the next year?', user: 'bob', conversation: 'c2' });
    expect(first.body.direct).toBe('5 days');
    let last = first;
    for (let i = 0; i < 12 && last.body.direct !== ''; i++) last = await chat({ regenerate: last.body.answerId, user: 'bob', conversation: 'c2' });
    expect(last.body.direct).toBe('');
    expect(last.body.answer).toMatch(/^I found no other answer to that in the knowledge base\./);

    // Another user (another web channel) cannot see Bob's answer, so cannot have it answered again.
    const before = (await web.runtime.store.recentTurns('web::guest:eve:c2', 10)).length;
    const stranger = await chat({ regenerate: first.body.answerId, user: 'eve', conversation: 'c2' });
    expect(stranger.body.outcome).toBe('denied');
    expect(stranger.body.answer).toMatch(/not one I gave in this conversation/);
    expect(stranger.body.answerId).toBeNull();
    expect((await web.runtime.store.recentTurns('web::guest:eve:c2', 10)).length).toBe(before);
    const unknown = await chat({ regenerate: 'no-such-answer', user: 'bob', conversation: 'c2' });
    expect(unknown.body.outcome).toBe('denied');
  });

  it('refuses a body with both or neither of a question and an answer id', async () => {
    expect((await chat({ text: 'Hi?', regenerate: 'x', user: 'ann' })).status).toBe(400);
    const neither = await chat({ user: 'ann' });
    expect(neither.status).toBe(400);
    expect(neither.body.error).toMatch(/one of text \(a question\), regenerate \(an answer id\) or fromSection/);
  });
});
