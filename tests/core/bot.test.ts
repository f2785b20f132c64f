import { TRAINING_STAGES } from '../../src/training/stages/index.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdminList, Bot } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { makeBot, message, RecordingTarget, ScriptedAnswerer, waitFor } from '../helpers.ts';

describe('Bot answering', () => {
  it('posts a placeholder, streams, and finishes with sources and an answer id that is stored', async () => {
    const { bot, store } = makeBot();
    const target = new RecordingTarget();
    const result = await bot.handle(message(), target);
    expect(result.outcome).toBe('answered');
    expect(target.events[0]).toMatchObject({ kind: 'post', content: { phase: 'thinking' } });
    const final = target.last!;
    expect(final).toMatchObject({ phase: 'final', text: 'You get 25 days of leave.', answerId: result.answerId });
    expect(final.sources?.[0]?.source).toBe('en/leave.md');
    const record = await store.getAnswer(result.answerId!);
    expect(record).toMatchObject({ question: 'How many days of leave do I get?', output: 'You get 25 days of leave.', prompt: 'Q: How many days of leave do I get?', modelName: 'scripted', modelVersion: 't1', replyId: 'reply-1', userId: 'U1' });
    expect(record!.passages).toHaveLength(1);
    expect(record!.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it('says whether "another answer" may be asked from a place: the answer\'s own platform, workspace and channel only', async () => {
    const { bot } = makeBot();
    const { answerId } = await bot.handle(message(), new RecordingTarget());
    const here = { platform: 'slack' as const, workspace: 'T1', channel: 'D1' };
    expect(await bot.canRegenerate(answerId!, here)).toMatchObject({ ok: true, answer: { id: answerId, question: 'How many days of leave do I get?' } });
    expect(await bot.canRegenerate(answerId!, { ...here, channel: 'C9' })).toEqual({ ok: false, reason: 'other_conversation' });
    expect(await bot.canRegenerate(answerId!, { ...here, workspace: 'T2' })).toEqual({ ok: false, reason: 'other_conversation' });
    expect(await bot.canRegenerate(answerId!, { ...here, platform: 'feishu' })).toEqual({ ok: false, reason: 'other_conversation' });
    expect(await bot.canRegenerate('no-such-answer', here)).toEqual({ ok: false, reason: 'unknown_answer' });
  });

  it('throttles streaming updates to the target interval but always sends the final text', async () => {
    const answerer = new ScriptedAnswerer(Array.from({ length: 30 }, (_, i) => `t${i} `), undefined, 5);
    const { bot } = makeBot({ answerer });
    const target = new RecordingTarget(60);
    await bot.handle(message(), target);
    const streaming = target.events.filter((e) => e.content.phase === 'streaming');
    expect(streaming.length).toBeGreaterThan(0);
    expect(streaming.length).toBeLessThan(15);
    expect(target.last?.text).toBe(answerer.tokens.join(''));
    // Every streamed state is a prefix of the final text: nothing arrives out of order.
    for (const e of streaming) expect(target.last!.text.startsWith(e.content.text)).toBe(true);
  });

  it('answers a redelivered event once, also after a restart on the same database', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'teamllm-bot-')), 'db.sqlite');
    const first = makeBot({ store: new SqliteStore(file) });
    const msg = message({ eventId: 'Ev-redelivered' });
    const target = new RecordingTarget();
    expect((await first.bot.handle(msg, target)).outcome).toBe('answered');
    expect((await first.bot.handle({ ...msg }, target)).outcome).toBe('duplicate');
    await first.store.close();
    const second = makeBot({ store: new SqliteStore(file) });
    expect((await second.bot.handle({ ...msg }, target)).outcome).toBe('duplicate');
    expect(target.posts).toHaveLength(1);
    expect(second.answerer.requests).toHaveLength(0);
  });

  it('stays quiet in a group unless mentioned, then follows the thread it joined', async () => {
    const { bot, answerer } = makeBot();
    const target = new RecordingTarget();
    const group = { isDirect: false, channel: 'C1' };
    expect((await bot.handle(message({ ...group, mentionsBot: false }), target)).outcome).toBe('ignored');
    const mention = message({ ...group, mentionsBot: true, messageId: '100.1' });
    expect((await bot.handle(mention, target)).outcome).toBe('answered');
    const followUp = message({ ...group, mentionsBot: false, thread: '100.1', text: 'And in my second year?' });
    expect((await bot.handle(followUp, target)).outcome).toBe('answered');
    expect(answerer.requests[1]!.history.map((t) => t.role)).toEqual(['user', 'assistant']);
    expect(answerer.requests[1]!.history[0]!.text).toBe('How many days of leave do I get?');
    const otherThread = message({ ...group, mentionsBot: false, thread: '999.9' });
    expect((await bot.handle(otherThread, target)).outcome).toBe('ignored');
  });

  it('keeps memory per thread within the turn and character budget', async () => {
    const { bot, answerer } = makeBot({ memory: { maxTurns: 3, maxChars: 10_000 } });
    const target = new RecordingTarget();
    for (let i = 0; i < 3; i++) await bot.handle(message({ thread: 'T-a', text: `question ${i}` }), target);
    await bot.handle(message({ thread: 'T-b', text: 'elsewhere' }), target);
    expect(answerer.requests[2]!.history).toHaveLength(3);
    expect(answerer.requests[2]!.history.at(-1)!.role).toBe('assistant');
    expect(answerer.requests[3]!.history).toHaveLength(0);

    const tight = makeBot({ memory: { maxTurns: 10, maxChars: 40 } });
    await tight.bot.handle(message({ thread: 'x', text: 'a'.repeat(30) }), target);
    await tight.bot.handle(message({ thread: 'x', text: 'next' }), target);
    // The 30-char question plus the 25-char answer exceed 40 chars: only the answer fits.
    expect(tight.answerer.requests[1]!.history.map((t) => t.role)).toEqual(['assistant']);
  });

  it('rate-limits a fast user politely and leaves other users alone', async () => {
    const { bot } = makeBot({ rateLimit: { perMinute: 1, burst: 2 } });
    const target = new RecordingTarget();
    await bot.handle(message(), target);
    await bot.handle(message(), target);
    const limited = await bot.handle(message(), target);
    expect(limited.outcome).toBe('rate_limited');
    expect(target.last).toMatchObject({ phase: 'notice' });
    expect(target.last!.text).toMatch(/try again in \d+ s/);
    expect((await bot.handle(message({ user: { id: 'U2' } }), target)).outcome).toBe('answered');
  });

  it('reports a failing answerer to the user and stores nothing', async () => {
    const answerer = new ScriptedAnswerer(['partial'], undefined, 0, new Error('model exploded'));
    const { bot, store } = makeBot({ answerer });
    const target = new RecordingTarget();
    const result = await bot.handle(message(), target);
    expect(result.outcome).toBe('error');
    expect(target.last).toMatchObject({ phase: 'error' });
    expect(target.last!.text).not.toContain('model exploded');
    expect(await store.findAnswerByReply('slack', 'reply-1')).toBeUndefined();
  });

  it('answers new questions with a swapped answerer while the old one finishes its answer', async () => {
    const slow = new ScriptedAnswerer(['old ', 'answer'], undefined, 30);
    const { bot } = makeBot({ answerer: slow });
    const t1 = new RecordingTarget();
    const inFlight = bot.handle(message(), t1);
    await waitFor(() => slow.requests.length === 1);
    const fresh = new ScriptedAnswerer(['new answer']);
    bot.setAnswerer(fresh);
    const t2 = new RecordingTarget();
    await bot.handle(message(), t2);
    await inFlight;
    expect(t1.last!.text).toBe('old answer');
    expect(t2.last!.text).toBe('new answer');
  });

  it('drains answers in flight on close and refuses new work', async () => {
    const { bot, answerer } = makeBot({ answerer: new ScriptedAnswerer(['a', 'b', 'c'], undefined, 20) });
    const target = new RecordingTarget();
    const inFlight = bot.handle(message(), target);
    await waitFor(() => answerer.requests.length === 1);
    await bot.close(5000);
    expect((await inFlight).outcome).toBe('answered');
    expect((await bot.handle(message(), new RecordingTarget())).outcome).toBe('shutting_down');
  });

  it('greets an empty mention instead of answering nothing', async () => {
    const { bot, answerer } = makeBot();
    const target = new RecordingTarget();
    expect((await bot.handle(message({ text: '  ' }), target)).outcome).toBe('greeting');
    expect(answerer.requests).toHaveLength(0);
  });
});

describe('Bot commands and rights', () => {
  it('refuses /train to non-admins, logs it in the audit log, and says plainly it is not available to admins', async () => {
    const { bot, store } = makeBot();
    const user = new RecordingTarget();
    expect((await bot.handle(message({ text: '/train sft lr=1e-4' }), user)).outcome).toBe('denied');
    expect(user.last!.text).toMatch(/only admins can run \/train sft/);
    // Refusals are counted per actor, command and hour, apart from the admin actions in auditLog.
    expect(await store.auditDenials(5)).toEqual([expect.objectContaining({ actor: 'slack:U1', command: '/train sft', count: 1 })]);
    expect(await store.auditLog(5)).toEqual([]);

    const admin = new RecordingTarget();
    expect((await bot.handle(message({ text: '/train sft lr=1e-4', user: { id: 'UADMIN' } }), admin)).outcome).toBe('command');
    expect(admin.last!.text).toMatch(/not available in this version/);
  });

  it('shows admins their extra commands in /help', async () => {
    const { bot } = makeBot();
    const user = new RecordingTarget();
    const admin = new RecordingTarget();
    await bot.handle(message({ text: '/help' }), user);
    await bot.handle(message({ text: '/help', user: { id: 'UADMIN' } }), admin);
    expect(user.last!.text).toContain('/kb search');
    expect(user.last!.text).not.toContain('/train status');
    expect(admin.last!.text).toContain('/train status');
    expect(admin.last!.text).toContain('/model promote');
    // Every stage /help offers is one a chat job can run.
    const offered = /\/train ([a-z|]+) \[key=value/.exec(admin.last!.text)![1]!.split('|');
    expect(offered.sort()).toEqual(Object.keys(TRAINING_STAGES).sort());
  });

  it('routes /kb to the knowledge base: search for everyone, remove for admins only', async () => {
    const removed: string[] = [];
    const kb = {
      addPaths: async () => ({ added: [], updated: [], unchanged: [], failed: [] }),
      addAttachments: async () => ({ added: [], updated: [], unchanged: [], failed: [] }),
      list: async () => [{ source: 'a.md', title: 'A', chunks: 3, indexedAt: 0 }],
      remove: async (s: string) => (removed.push(s), 3),
      search: async (q: string) => [{ source: 'a.md', title: 'A', text: `about ${q}`, score: 1 }],
    };
    const { bot } = makeBot({ kb });
    const t = new RecordingTarget();
    await bot.handle(message({ text: '/kb search parking rules' }), t);
    expect(t.last!.text).toContain('about parking rules');
    await bot.handle(message({ text: '/kb remove a.md' }), t);
    expect(t.last!.text).toMatch(/only admins/);
    expect(removed).toEqual([]);
    await bot.handle(message({ text: '/kb remove a.md', user: { id: 'UADMIN' } }), t);
    expect(removed).toEqual(['a.md']);
    await bot.handle(message({ text: '/kb list' }), t);
    expect(t.last!.text).toContain('a.md — 3 passages');
  });

  it('explains an unknown command and /model for everyone', async () => {
    const { bot } = makeBot();
    const t = new RecordingTarget();
    await bot.handle(message({ text: '/frobnicate now' }), t);
    expect(t.last!.text).toMatch(/don't know the command \/frobnicate/);
    await bot.handle(message({ text: '/model' }), t);
    expect(t.last!.text).toContain('scripted version t1');
    await bot.handle(message({ text: '/model list' }), t);
    expect(t.last!.text).toMatch(/only admins/);
  });

  it('forgets the conversation on /reset', async () => {
    const { bot, answerer } = makeBot();
    const t = new RecordingTarget();
    await bot.handle(message({ thread: 'r' }), t);
    await bot.handle(message({ thread: 'r', text: '/reset' }), t);
    await bot.handle(message({ thread: 'r' }), t);
    expect(answerer.requests[1]!.history).toHaveLength(0);
  });
});

describe('Bot votes', () => {
  it('records a vote, lets the user change and withdraw it, and refuses unknown answers', async () => {
    const { bot, store } = makeBot();
    const { answerId } = await bot.handle(message(), new RecordingTarget());
    expect(await bot.vote({ answerId: 'nope', platform: 'slack', userId: 'U1', value: 1 })).toEqual({ ok: false, reason: 'unknown_answer' });
    expect(await bot.vote({ answerId: answerId!, platform: 'slack', userId: 'U1', value: 1 })).toMatchObject({ ok: true, up: 1, down: 0 });
    expect(await bot.vote({ answerId: answerId!, platform: 'slack', userId: 'U2', value: -1, comment: 'outdated' })).toMatchObject({ up: 1, down: 1 });
    expect(await bot.vote({ answerId: answerId!, platform: 'slack', userId: 'U1', value: -1 })).toMatchObject({ up: 0, down: 2 });
    expect(await bot.vote({ answerId: answerId!, platform: 'slack', userId: 'U2', value: 0 })).toMatchObject({ up: 0, down: 1 });
    const fb = await store.feedbackFor(answerId!);
    expect(fb).toHaveLength(1);
    expect(fb[0]).toMatchObject({ userId: 'U1', value: -1 });
  });

  it('finds the answer behind a reaction on the posted reply', async () => {
    const { bot } = makeBot();
    await bot.handle(message(), new RecordingTarget());
    const vote = await bot.voteOnReply('slack', 'reply-1', 'U9', 1);
    expect(vote).toMatchObject({ ok: true, up: 1 });
    expect(await bot.voteOnReply('slack', 'not-a-bot-message', 'U9', 1)).toBeUndefined();
    expect(await bot.voteOnReply('feishu', 'reply-1', 'U9', 1)).toBeUndefined();
  });
});

describe('AdminList', () => {
  it('needs the platform and the id to match', () => {
    const admins = AdminList.parse('slack:U1, feishu:ou_2');
    expect(admins.isAdmin('slack', 'U1')).toBe(true);
    expect(admins.isAdmin('feishu', 'U1')).toBe(false);
    expect(admins.isAdmin('feishu', 'ou_2')).toBe(true);
    expect(new Bot({ store: new SqliteStore(':memory:'), answerer: new ScriptedAnswerer(), admins }).isAdmin('web', 'U1')).toBe(false);
  });
});

describe('targets that cannot edit messages', () => {
  it('get no streaming updates, only the placeholder and the final reply', async () => {
    const { bot } = makeBot({ answerer: new ScriptedAnswerer(['a', 'b', 'c', 'd']) });
    const target = new (class extends RecordingTarget {
      readonly updatable = false;
    })();
    await bot.handle(message(), target);
    expect(target.events.map((e) => e.content.phase)).toEqual(['thinking', 'final']);
    expect(target.last!.text).toBe('abcd');
  });
});

describe('platform failures', () => {
  it('reports an error outcome, not a rejection, when the placeholder cannot be posted', async () => {
    const { bot } = makeBot();
    const broken = { post: async () => Promise.reject(new Error('channel_not_found')) };
    await expect(bot.handle(message(), broken)).resolves.toEqual({ outcome: 'error' });
  });

  it('returns the answer and the previous vote with a vote', async () => {
    const { bot } = makeBot();
    const { answerId } = await bot.handle(message(), new RecordingTarget());
    const first = await bot.vote({ answerId: answerId!, platform: 'slack', userId: 'U1', value: 1 });
    expect(first).toMatchObject({ ok: true, answer: { id: answerId, output: 'You get 25 days of leave.' } });
    expect(first.ok && first.previous).toBeUndefined();
    const second = await bot.vote({ answerId: answerId!, platform: 'slack', userId: 'U1', value: -1 });
    expect(second).toMatchObject({ ok: true, previous: 1, up: 0, down: 1 });
  });
});

describe('conditional withdrawal', () => {
  it('withdraws a vote only when it still matches', async () => {
    const { bot } = makeBot();
    const { answerId } = await bot.handle(message(), new RecordingTarget());
    await bot.vote({ answerId: answerId!, platform: 'slack', userId: 'U1', value: -1 });
    expect(await bot.voteOnReply('slack', 'reply-1', 'U1', 0, undefined, 1)).toMatchObject({ up: 0, down: 1 });
    expect(await bot.voteOnReply('slack', 'reply-1', 'U1', 0, undefined, -1)).toMatchObject({ up: 0, down: 0 });
  });
});

describe('/kb add from chat', () => {
  it('takes links and attachments from admins, never server paths', async () => {
    const added: string[][] = [];
    const empty = { added: [], updated: [], unchanged: [], failed: [] };
    const kb = {
      addPaths: async (p: string[]) => (added.push(p), { ...empty, added: p }),
      addAttachments: async () => ({ ...empty, added: ['faq.md'] }),
      list: async () => [],
      remove: async () => 0,
      search: async () => [],
    };
    const { bot } = makeBot({ kb });
    const t = new RecordingTarget();
    await bot.handle(message({ text: '/kb add <https://intranet.example/policy.html|policy> https://intranet.example/faq', user: { id: 'UADMIN' } }), t);
    expect(added).toEqual([['https://intranet.example/policy.html', 'https://intranet.example/faq']]);
    expect(t.last!.text).toMatch(/^Added 2, updated 0/);
    await bot.handle(message({ text: '/kb add /etc/passwd', user: { id: 'UADMIN' } }), t);
    expect(t.last!.text).toMatch(/takes attached files or http\(s\) links/);
    expect(added).toHaveLength(1);
    await bot.handle(message({ text: '/kb add', user: { id: 'UADMIN' }, attachments: [{ name: 'faq.md' }] }), t);
    expect(t.last!.text).toMatch(/^Added 1/);
  });
});
