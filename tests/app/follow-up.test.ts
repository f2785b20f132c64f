import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CandidateAnswerer } from '../../src/rag/candidate-answerer.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { isFollowUp, standaloneQuestion } from '../../src/rag/follow-up.ts';
import { tempFolder } from '../rag/fixtures.ts';
import { startWebChat, type WebChatServer } from './web-chat-server.ts';
const DOCS = {
  'leave.md': `# Leave

## Annual leave

| Years of service | Annual leave |
|---|---|
| 0–4 years | 25 days |
| 5–9 years | 26 days |
| 10 years or more | 27 days |

## Parking

The garage has 40 spaces for employees, allocated by lottery every quarter.
`,
  'zh/contract.md': `# 劳动合同

## 试用期

| 合同类型 | 试用期 |
|---|---|
| 首次签订的劳动合同 | 3 个月 |
| 管理岗位（M2 及以上） | 6 个月 |
| 实习协议 | 无试用期 |
`,
};

describe('follow-up questions', () => {
  it('knows a follow-up by its opening or its 呢, and joins it with the last question that stood alone', () => {
    for (const q of ['What about after 10 years?', 'And for part-time staff?', 'how about managers', '那管理岗呢？', '实习生呢？', '如果是实习生']) expect(isFollowUp(q), q).toBe(true);
    for (const q of ['How many days of annual leave do I get?', 'What is the parking policy?', 'Parking?', '年假有几天？', '公司的年假和病假分别有多少天，怎么申请呢？']) expect(isFollowUp(q), q).toBe(false);
    const history = [
      { role: 'user' as const, text: '试用期多长？', at: 1 },
      { role: 'assistant' as const, text: '3 个月', at: 2 },
      { role: 'user' as const, text: '那管理岗呢？', at: 3 },
      { role: 'assistant' as const, text: '6 个月', at: 4 },
    ];
    expect(standaloneQuestion('实习生呢？', history)).toBe('试用期多长？ 实习生呢？ 实习生呢？');
    expect(standaloneQuestion('年假有几天？', history)).toBe('年假有几天？');
    expect(standaloneQuestion('那管理岗呢？', [])).toBe('那管理岗呢？');
  });
});

describe('follow-up questions in a web chat conversation', () => {
  let web: WebChatServer;
  const kb = new LocalKnowledgeBase(':memory:');

  beforeAll(async () => {
    await kb.addPaths([tempFolder(DOCS)]);
    web = await startWebChat(new CandidateAnswerer({ kb }), 'follow-up');
  });

  afterAll(async () => {
    await web.close();
    kb.close();
  });

  const chat = async (body: Record<string, unknown>) => {
    const { status, body: answer } = await web.chat(body);
    expect(status).toBe(200);
    return answer;
  };

  it('answers a follow-up from the question it follows, in the same conversation only', async () => {
    expect((await chat({ text: 'How many days of annual leave do I get?', user: 'ann', conversation: 'a1' })).direct).toBe('0–4 years: 25 days; 5–9 years: 26 days; 10 years or more: 27 days');
    expect((await chat({ text: 'What about after 6 years?', user: 'ann', conversation: 'a1' })).direct).toBe('26 days');
    // The same words in a new conversation have nothing to follow: no guess.
    expect((await chat({ text: 'What about after 6 years?', user: 'ann', conversation: 'a2' })).direct).toBe('');
    expect((await chat({ text: '试用期多长？', user: 'bo', conversation: 'z1' })).direct).toBe('首次签订的劳动合同：3 个月；管理岗位（M2 及以上）：6 个月；实习协议：无试用期');
    expect((await chat({ text: '那管理岗呢？', user: 'bo', conversation: 'z1' })).direct).toBe('6 个月');
    expect((await chat({ text: '实习生呢？', user: 'bo', conversation: 'z1' })).direct).toBe('无试用期');
    // A question that stands alone is answered alone, even in the middle of a thread.
    expect((await chat({ text: 'How are parking spaces allocated?', user: 'ann', conversation: 'a1' })).answer).toMatch(/lottery/);
  });
});
