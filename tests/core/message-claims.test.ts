import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeBot, message, RecordingTarget, ScriptedAnswerer } from '../helpers.ts';

// Issue 21, finding 4: a messageId must not be used up by an attempt that stored no answer.
afterEach(() => {
  vi.useRealTimers();
});

describe('message claims', () => {
  it('answers a rate-limited message when it is retried, and only then treats it as a duplicate', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { bot } = makeBot({ rateLimit: { perMinute: 1, burst: 1 } });
    const target = new RecordingTarget();
    expect((await bot.handle(message({ eventId: 'first' }), target)).outcome).toBe('answered');
    expect((await bot.handle(message({ eventId: 'second' }), target)).outcome).toBe('rate_limited');
    vi.setSystemTime(Date.now() + 61_000); // the bucket has a token again
    const retried = await bot.handle(message({ eventId: 'second' }), target);
    expect(retried.outcome).toBe('answered');
    expect(retried.answerId).toBeDefined();
    expect((await bot.handle(message({ eventId: 'second' }), target)).outcome).toBe('duplicate');
  });

  it('answers a retry after a failed answer', async () => {
    const answerer = new ScriptedAnswerer(['partial'], undefined, 0, new Error('model exploded'));
    const { bot, store } = makeBot({ answerer });
    expect((await bot.handle(message({ eventId: 'e1' }), new RecordingTarget())).outcome).toBe('error');
    const fixed = makeBot({ store });
    expect((await fixed.bot.handle(message({ eventId: 'e1' }), new RecordingTarget())).outcome).toBe('answered');
  });

  it('lets a retry take over a claim left by a process that died mid-answer, once its lease has run out', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { bot, store } = makeBot({ claimLeaseMs: 180_000 });
    // What kill -9 leaves behind: a claim that was never confirmed nor released.
    expect(await store.claimEvent('slack', 'crashed', { leaseMs: 180_000 })).toBe(true);
    const target = new RecordingTarget();
    // Still inside the lease the first attempt may be answering: a redelivery is a duplicate.
    expect((await bot.handle(message({ eventId: 'crashed' }), target)).outcome).toBe('duplicate');
    vi.setSystemTime(Date.now() + 181_000);
    expect((await bot.handle(message({ eventId: 'crashed' }), target)).outcome).toBe('answered');
    vi.setSystemTime(Date.now() + 10 * 181_000);
    // Answered claims never expire.
    expect((await bot.handle(message({ eventId: 'crashed' }), target)).outcome).toBe('duplicate');
  });

  it('keeps plain claims (card clicks, vote replies) permanent', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { bot } = makeBot();
    expect(await bot.claimEvent('slack', 'click-1')).toBe(true);
    vi.setSystemTime(Date.now() + 3_600_000);
    expect(await bot.claimEvent('slack', 'click-1')).toBe(false);
  });

  it('counts commands against the rate limit, but not admins', async () => {
    const { bot } = makeBot({ rateLimit: { perMinute: 1, burst: 2 } });
    const target = new RecordingTarget();
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push((await bot.handle(message({ text: '/kb search leave' }), target)).outcome);
    expect(outcomes).toEqual(['command', 'command', 'rate_limited', 'rate_limited']);
    for (let i = 0; i < 4; i++) expect((await bot.handle(message({ text: '/help', user: { id: 'UADMIN' } }), target)).outcome).toBe('command');
  });
});
