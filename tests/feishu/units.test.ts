import { Domain } from '@larksuiteoapi/node-sdk';
import { describe, expect, it } from 'vitest';
import { answerCard, cardBytes, MAX_CARD_BYTES } from '../../src/adapters/feishu/answer-card.ts';
import { reactionVote } from '../../src/adapters/feishu/feedback.ts';
import { messageText } from '../../src/adapters/feishu/message-text.ts';
import { FeishuConfigError, readFeishuSettings } from '../../src/adapters/feishu/settings.ts';
import { describe as describeForLog } from '../../src/adapters/feishu/sdk-logger.ts';
import type { ReplyContent } from '../../src/core/index.ts';

const BOT = 'ou_bot';
const mentions = [
  { key: '@_user_1', id: { open_id: BOT }, name: 'teamllm' },
  { key: '@_user_10', id: { open_id: 'ou_x' }, name: 'Han Meimei' },
];

describe('messageText', () => {
  it('strips the bot mention from text, names other people, and tells whether the bot was addressed', () => {
    expect(messageText('text', JSON.stringify({ text: '@_user_1  ask @_user_10 about leave' }), mentions, BOT)).toEqual({
      text: 'ask @Han Meimei about leave',
      mentionsBot: true,
    });
    expect(messageText('text', JSON.stringify({ text: '@_all meeting at 3' }), [], BOT)).toEqual({ text: '@all meeting at 3', mentionsBot: false });
    // Without the bot's identity nothing counts as its mention.
    expect(messageText('text', JSON.stringify({ text: '@_user_1 hi' }), mentions, undefined)?.mentionsBot).toBe(false);
  });

  it('reads received posts and locale-wrapped posts', () => {
    const body = {
      title: 'Leave',
      content: [
        [
          { tag: 'at', user_id: '@_user_1', user_name: 'teamllm' },
          { tag: 'text', text: ' how many days?' },
        ],
        [{ tag: 'code_block', language: 'TEXT', text: 'days = 25' }],
      ],
    };
    expect(messageText('post', JSON.stringify(body), mentions, BOT)).toEqual({ text: 'Leave\nhow many days?\n\ndays = 25', mentionsBot: true });
    expect(messageText('post', JSON.stringify({ en_us: body }), mentions, BOT)?.text).toBe('Leave\nhow many days?\n\ndays = 25');
  });

  it('declines other message types and broken content', () => {
    expect(messageText('image', JSON.stringify({ image_key: 'img' }))).toBeUndefined();
    expect(messageText('text', '{oops')).toBeUndefined();
    expect(messageText('post', JSON.stringify({ nothing: true }))).toBeUndefined();
  });
});

describe('answerCard', () => {
  const model = { name: 'tiny-gpt', version: 'v3', kind: 'language-model' as const };

  it('shows sources, the model and vote buttons only on final answers', () => {
    const streaming = answerCard({ phase: 'streaming', text: 'You get', model });
    expect(JSON.stringify(streaming)).toContain('You get ▍');
    expect(JSON.stringify(streaming)).not.toContain('button');
    const final: ReplyContent = {
      phase: 'final',
      text: 'You get 25 days.',
      answerId: 'a1',
      model,
      sources: [{ source: 'en/leave.md', title: 'Leave', text: 'Everyone gets 25 days of leave.', score: 1 }],
    };
    const card = JSON.stringify(answerCard(final, { up: 2, down: 0 }));
    expect(card).toContain('Everyone gets 25 days of leave.');
    expect(card).toContain('Answered by tiny-gpt v3');
    expect(card).toContain('👍 Helpful · 2');
    expect(card).toContain('"update_multi":true');
    const quoted = JSON.stringify(answerCard({ ...final, model: { ...model, kind: 'retrieval-only' } }));
    expect(quoted).toContain('Quoted from the knowledge base');
  });

  it('drops source excerpts, then sources, then shortens the answer to stay under 30 KB', () => {
    const sources = Array.from({ length: 40 }, (_, i) => ({ source: `doc-${i}.md`, title: `Doc ${i}`, text: 'x'.repeat(2000), score: 1 }));
    const manySources = answerCard({ phase: 'final', text: 'short answer', answerId: 'a', sources });
    expect(cardBytes(manySources)).toBeLessThanOrEqual(MAX_CARD_BYTES);
    expect(JSON.stringify(manySources)).toContain('short answer');

    const emoji = '🙂'.repeat(20_000); // 80 KB of 4-byte characters
    const card = answerCard({ phase: 'streaming', text: emoji });
    expect(cardBytes(card)).toBeLessThanOrEqual(MAX_CARD_BYTES);
    const text = (card as { elements: { content: string }[] }).elements[0]!.content;
    expect(text).not.toContain('\uFFFD');
    expect(text.startsWith('🙂🙂')).toBe(true);
    expect(text).toContain('shortened');
  });
});

describe('reactionVote', () => {
  it('maps thumbs and friends to votes, case-insensitively', () => {
    expect(reactionVote('THUMBSUP')).toBe(1);
    expect(reactionVote('OK')).toBe(1);
    expect(reactionVote('ThumbsDown')).toBe(-1);
    expect(reactionVote('SMILE')).toBeUndefined();
  });
});

describe('readFeishuSettings', () => {
  const base = { FEISHU_APP_ID: 'cli_0123456789abcdef', FEISHU_APP_SECRET: 's' };

  it('resolves the domain and defaults to webhook mode', () => {
    expect(readFeishuSettings({ ...base, FEISHU_VERIFICATION_TOKEN: 't' })).toMatchObject({ mode: 'webhook', domain: Domain.Feishu });
    expect(readFeishuSettings({ ...base, FEISHU_ENCRYPT_KEY: 'k', FEISHU_DOMAIN: 'lark' }).domain).toBe(Domain.Lark);
    expect(readFeishuSettings({ ...base, FEISHU_MODE: 'ws', FEISHU_DOMAIN: 'http://127.0.0.1:9/' }).domain).toBe('http://127.0.0.1:9');
  });

  it('refuses a webhook without any way to check callbacks, and a malformed app id for ws', () => {
    expect(() => readFeishuSettings(base)).toThrow(FeishuConfigError);
    expect(() => readFeishuSettings({ ...base, FEISHU_APP_ID: 'cli_short', FEISHU_MODE: 'ws' })).toThrow(/cli_/);
    expect(() => readFeishuSettings({ FEISHU_APP_ID: 'x' })).toThrow(/FEISHU_APP_SECRET/);
  });
});

describe('SDK log lines', () => {
  it('keep the message and the Feishu code, never the request headers or socket tickets', () => {
    const axiosLike = Object.assign(new Error('Request failed with status code 400'), {
      config: { headers: { Authorization: 'Bearer t-secret' } },
      response: { status: 400, data: { code: 99991663, msg: 'token invalid' } },
    });
    const line = describeForLog(axiosLike);
    expect(line).toBe('Request failed with status code 400 HTTP 400 code=99991663 msg=token invalid');
    expect(describeForLog('ws url: wss://msg-frontier.feishu.cn/ws/v2?ticket=abc&device_id=1')).toBe(
      'ws url: wss://msg-frontier.feishu.cn/ws/v2?[redacted]',
    );
  });
});
