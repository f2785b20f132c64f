import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fromMessageEvent } from '../../src/adapters/slack/inbound.ts';
import { SAMPLE_SOURCE, waitFor } from '../helpers.ts';
import type { ApiCall } from './fake-slack.ts';
import {
  appMention,
  channelMessage,
  directMessage,
  eventCallback,
  nowSec,
  slackSignature,
  slashCommand,
  startHarness,
  voteClick,
  type Harness,
} from './harness.ts';

type Block = { type: string; block_id?: string; text?: { text: string }; elements?: { action_id?: string; value?: string; text?: { text: string } }[] };

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h.close();
});

beforeEach(() => {
  h.answerer.tokens = ['You get ', '25 days ', 'of leave.'];
  h.answerer.sources = [SAMPLE_SOURCE];
  h.answerer.tokenDelayMs = 0;
});

const blocksOf = (call: ApiCall | undefined) => (call?.args.blocks ?? []) as Block[];
const hasVotes = (call: ApiCall) => blocksOf(call).some((b) => b.block_id === 'teamllm_votes');
/** A call Slack accepted (HTTP 200 and ok:true). */
const accepted = (call: ApiCall) => call.status === 200 && call.reply?.ok === true;
const sectionText = (call: ApiCall | undefined) =>
  blocksOf(call)
    .filter((b) => b.type === 'section')
    .map((b) => b.text!.text);

/** Waits for the answer whose placeholder is the n-th chat.postMessage, and returns its calls. */
async function answerAt(n: number) {
  await waitFor(() => h.slack.callsTo('chat.postMessage').length > n);
  const placeholder = h.slack.callsTo('chat.postMessage')[n]!;
  const ts = placeholder.reply!.ts as string;
  await waitFor(() => h.slack.callsTo('chat.update').some((c) => c.args.ts === ts && hasVotes(c) && accepted(c)));
  const updates = h.slack.callsTo('chat.update').filter((c) => c.args.ts === ts);
  return { placeholder, ts, updates, final: updates.find((c) => hasVotes(c) && accepted(c))! };
}

/** Sends a DM and waits for its answer: a barrier proving earlier (ignored) events caused nothing. */
async function barrier(): Promise<void> {
  const before = h.slack.callsTo('chat.postMessage').length;
  await h.postEvent(eventCallback(directMessage('barrier question', { user: 'UBARRIER' })));
  await answerAt(before);
}

describe('Slack HTTP mode: verification', () => {
  it('answers url_verification with the challenge', async () => {
    const res = await h.postEvent({ token: 'legacy', challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P', type: 'url_verification' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P' });
  });

  it('refuses bad, stale and missing signatures before reading the event', async () => {
    const body = JSON.stringify(eventCallback(directMessage('sneaky')));
    const send = (headers: Record<string, string>) =>
      fetch(`${h.url}/slack/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    const wrongSecret = await send(slackSignature(body, nowSec(), 'not-the-secret'));
    expect(wrongSecret.status).toBe(401);
    const stale = await send(slackSignature(body, nowSec() - 6 * 60));
    expect(stale.status).toBe(401);
    const tampered = await send(slackSignature(body.replace('sneaky', 'other'), nowSec()));
    expect(tampered.status).toBe(401);
    expect((await send({})).status).toBe(401);
    const challenge = JSON.stringify({ type: 'url_verification', challenge: 'x' });
    const unsignedChallenge = await fetch(`${h.url}/slack/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: challenge });
    expect(unsignedChallenge.status).toBe(401);
    expect(h.logger.entries.some((e) => e.level === 'warn' && /bad or stale signature/.test(e.msg ?? ''))).toBe(true);
    await barrier();
    expect(h.slack.calls.some((c) => JSON.stringify(c.args).includes('sneaky'))).toBe(false);
  });

  it('refuses a correctly signed request dated more than 5 minutes in the future', async () => {
    const body = JSON.stringify(eventCallback(directMessage('from the future')));
    const send = (ts: number) => fetch(`${h.url}/slack/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...slackSignature(body, ts) }, body });
    expect((await send(nowSec() + 10 * 60)).status).toBe(401);
    expect((await send(nowSec() + 6 * 60)).status).toBe(401);
    await barrier();
    expect(h.slack.calls.some((c) => JSON.stringify(c.args).includes('from the future'))).toBe(false);
    // A little clock skew is fine.
    expect((await send(nowSec() + 30)).status).toBe(200);
  });

  it('answers malformed signed bodies with 400 and ssl_check with 200', async () => {
    expect((await h.postEvent('{"type": ')).status).toBe(400);
    expect((await h.postEvent('[1,2]')).status).toBe(400);
    expect((await h.postForm({ payload: '{nope' })).status).toBe(400);
    const ssl = await fetch(`${h.url}/slack/events`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'ssl_check=1&token=legacy' });
    expect(ssl.status).toBe(200);
  });
});

describe('Slack HTTP mode: conversations', () => {
  it('acknowledges an app_mention at once, then streams the answer in the thread with sources and vote buttons', async () => {
    h.answerer.tokenDelayMs = 150;
    const posts = h.slack.callsTo('chat.postMessage').length;
    const mention = appMention('<@UBOT> How many days of leave do I get?');
    const finals = h.slack.callsTo('chat.update').filter(hasVotes).length;
    // The answer is held until the 200 is in: acknowledged before the answer, not after it (had the
    // handler waited for the answer, the POST would never return).
    const release = h.answerer.hold();
    const res = await h.postEvent(eventCallback(mention));
    expect(res.status).toBe(200);
    expect(h.slack.callsTo('chat.update').filter(hasVotes)).toHaveLength(finals);
    release();
    const { placeholder, ts, updates, final } = await answerAt(posts);

    expect(placeholder.authorization).toBe('Bearer xoxb-test-token');
    expect(placeholder.args).toMatchObject({ channel: 'C1', thread_ts: mention.ts, text: 'Thinking…' });
    expect(h.answerer.requests.at(-1)!.question).toBe('How many days of leave do I get?');
    expect(updates.some((u) => JSON.stringify(u.args.blocks).includes('writing…'))).toBe(true);
    expect(sectionText(final)[0]).toBe('You get 25 days of leave.');
    expect(JSON.stringify(final.args.blocks)).toContain('en/leave.md');
    const record = await h.store.findAnswerByReply('slack', ts);
    expect(record).toBeDefined();
    const buttons = blocksOf(final).find((b) => b.block_id === 'teamllm_votes')!.elements!;
    expect(buttons.map((b) => [b.action_id, b.value])).toEqual([
      ['teamllm_vote_up', record!.id],
      ['teamllm_vote_down', record!.id],
      ['teamllm_another_answer', record!.id],
    ]);
  });

  it('answers the question again in its thread when "Another answer" is clicked, avoiding what it already said', async () => {
    const mention = appMention('<@UBOT> How many days of leave do I get?', { user: 'UAGAIN' });
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(mention));
    const first = await answerAt(posts);
    const record = (await h.store.findAnswerByReply('slack', first.ts))!;
    h.answerer.tokens = ['Part-timers get ', 'a pro-rata share.'];
    const click = voteClick(h.slack, {
      actionId: 'teamllm_another_answer',
      answerId: record.id,
      userId: 'UOTHER',
      channel: 'C1',
      message: { ts: first.ts, thread_ts: mention.ts as string, text: 'You get 25 days of leave.', blocks: first.final.args.blocks as unknown[] },
    });
    expect((await h.postForm({ payload: JSON.stringify(click) })).status).toBe(200);
    const second = await answerAt(posts + 1);
    expect(second.placeholder.args).toMatchObject({ channel: 'C1', thread_ts: mention.ts });
    expect(sectionText(second.final)[0]).toBe('Part-timers get a pro-rata share.');
    const request = h.answerer.requests.at(-1)!;
    expect(request.question).toBe('How many days of leave do I get?');
    expect(request.avoid).toEqual(['You get 25 days of leave.']);
    // The question's earlier answer is what to avoid, not history the answer builds on.
    expect(request.history).toEqual([]);
    const again = (await h.store.findAnswerByReply('slack', second.ts))!;
    expect(again).toMatchObject({ question: 'How many days of leave do I get?', channel: 'C1', userId: 'UOTHER' });
    expect(again.id).not.toBe(record.id);
  });

  it('names the closest sections as buttons after a "don\'t know", and answers in the thread from the one clicked', async () => {
    const bereavement = { source: 'en/leave.md', title: 'Leave > Bereavement', text: 'Bereavement leave is 5 working days.', score: 1.1 };
    const sick = { source: 'en/leave.md', title: 'Leave > Sick leave', text: 'Report sick before 09:30.', score: 0.9 };
    h.answerer.near = [bereavement, sick];
    h.answerer.tokens = ["Sorry, I couldn't find that in the knowledge base."];
    const mention = appMention('<@UBOT> my nan died, can I take time off?', { user: 'UNAN' });
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(mention));
    const first = await answerAt(posts);
    const record = (await h.store.findAnswerByReply('slack', first.ts))!;
    const sections = blocksOf(first.final).find((b) => b.block_id === 'teamllm_sections')!;
    expect(sections.elements!.map((b) => [b.action_id, (b as { text: { text: string } }).text.text])).toEqual([
      ['teamllm_from_section_0', 'Bereavement'],
      ['teamllm_from_section_1', 'Sick leave'],
    ]);
    expect(JSON.parse(sections.elements![0]!.value!)).toEqual({ answer: record.id, source: 'en/leave.md', title: 'Leave > Bereavement' });

    h.answerer.near = undefined;
    h.answerer.tokens = ['Bereavement leave is 5 working days.'];
    const click = voteClick(h.slack, {
      actionId: 'teamllm_from_section_0',
      blockId: 'teamllm_sections',
      value: sections.elements![0]!.value!,
      answerId: record.id,
      userId: 'UNAN',
      channel: 'C1',
      message: { ts: first.ts, thread_ts: mention.ts as string, text: 'Sorry', blocks: first.final.args.blocks as unknown[] },
    });
    expect((await h.postForm({ payload: JSON.stringify(click) })).status).toBe(200);
    const second = await answerAt(posts + 1);
    expect(second.placeholder.args).toMatchObject({ channel: 'C1', thread_ts: mention.ts });
    const request = h.answerer.requests.at(-1)!;
    expect(request.question).toBe('my nan died, can I take time off?');
    expect(request.section).toEqual({ source: 'en/leave.md', title: 'Leave > Bereavement' });
    expect(request.avoid).toEqual([]);
    const answered = (await h.store.findAnswerByReply('slack', second.ts))!;
    expect(answered).toMatchObject({ question: 'my nan died, can I take time off?', userId: 'UNAN' });

    // A damaged value is ignored: no answer is posted for it.
    const before = h.slack.callsTo('chat.postMessage').length;
    const forged = voteClick(h.slack, { actionId: 'teamllm_from_section_0', blockId: 'teamllm_sections', value: '{"answer":1}', answerId: record.id, userId: 'UNAN', channel: 'C1', message: { ts: first.ts, text: 'x', blocks: [] } });
    expect((await h.postForm({ payload: JSON.stringify(forged) })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect(h.slack.callsTo('chat.postMessage').length).toBe(before);
  });

  it('throttles streaming updates to the configured interval', async () => {
    h.answerer.tokens = Array.from({ length: 12 }, (_, i) => `word${i} `);
    h.answerer.tokenDelayMs = 15;
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(appMention('<@UBOT> stream please')));
    const { updates } = await answerAt(posts);
    const streaming = updates.filter((u) => !hasVotes(u)).map((u) => u.at);
    expect(streaming.length).toBeGreaterThanOrEqual(2);
    // Sent at least 50 ms apart; arrival times may jitter by a few ms either way.
    for (let i = 1; i < streaming.length; i++) expect(streaming[i]! - streaming[i - 1]!).toBeGreaterThanOrEqual(35);
  });

  it('answers every message in a DM, at the top of the conversation', async () => {
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(directMessage('How many days of leave do I get?', { user: 'UDM' })));
    const { placeholder, final } = await answerAt(posts);
    expect(placeholder.args.channel).toBe('D1');
    expect(placeholder.args.thread_ts).toBeUndefined();
    expect(sectionText(final)[0]).toBe('You get 25 days of leave.');
  });

  it('continues a thread the bot answered in, with the thread as memory, and stays out of others', async () => {
    const mention = appMention('<@UBOT> How many days of leave do I get?', { user: 'UTHREAD' });
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(mention));
    await answerAt(posts);

    h.answerer.tokens = ['Part-timers get ', 'a pro-rata share.'];
    await h.postEvent(eventCallback(channelMessage('And for part-timers?', { user: 'UTHREAD', thread_ts: mention.ts })));
    const followUp = await answerAt(posts + 1);
    expect(followUp.placeholder.args.thread_ts).toBe(mention.ts);
    expect(sectionText(followUp.final)[0]).toBe('Part-timers get a pro-rata share.');
    const history = h.answerer.requests.at(-1)!.history;
    expect(history.map((t) => [t.role, t.text])).toEqual([
      ['user', 'How many days of leave do I get?'],
      ['assistant', 'You get 25 days of leave.'],
    ]);

    // A thread without the bot and a top-level message without a mention are not for the bot.
    await h.postEvent(eventCallback(channelMessage('unrelated chat', { thread_ts: '1600000000.000001' })));
    await h.postEvent(eventCallback(channelMessage('lunch anyone?')));
    await barrier();
    expect(h.answerer.requests.some((r) => r.question === 'unrelated chat' || r.question === 'lunch anyone?')).toBe(false);
  });

  it('answers a mention once although Slack sends it as both app_mention and message', async () => {
    const mention = appMention('<@UBOT> one answer please', { user: 'UONCE' });
    const asMessage = channelMessage(mention.text as string, { user: 'UONCE', ts: mention.ts });
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(asMessage));
    await h.postEvent(eventCallback(mention));
    await answerAt(posts);
    await barrier();
    expect(h.answerer.requests.filter((r) => r.question === 'one answer please')).toHaveLength(1);
  });

  it("never answers Slack's retry of an event twice", async () => {
    h.answerer.tokenDelayMs = 100;
    const envelope = eventCallback(appMention('<@UBOT> retried question', { user: 'URETRY' }));
    const posts = h.slack.callsTo('chat.postMessage').length;
    expect((await h.postEvent(envelope)).status).toBe(200);
    const retry = await h.postEvent(envelope, { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' });
    expect(retry.status).toBe(200);
    await answerAt(posts);
    // A late retry, after the answer, is dropped too.
    expect((await h.postEvent(envelope, { 'x-slack-retry-num': '2', 'x-slack-retry-reason': 'http_timeout' })).status).toBe(200);
    await barrier();
    expect(h.answerer.requests.filter((r) => r.question === 'retried question')).toHaveLength(1);
  });

  it('ignores bots, its own messages, edits and deletions', async () => {
    await h.postEvent(eventCallback(directMessage('from another bot', { bot_id: 'B999', subtype: 'bot_message', user: undefined })));
    await h.postEvent(eventCallback(directMessage('bot with a user id', { bot_id: 'B999' })));
    await h.postEvent(eventCallback(directMessage('my own words', { user: 'UBOT' })));
    await h.postEvent(
      eventCallback({
        type: 'message',
        subtype: 'message_changed',
        channel: 'D1',
        channel_type: 'im',
        ts: '1710000999.000001',
        hidden: true,
        message: { type: 'message', user: 'U1', text: 'edited text', ts: '1710000998.000001', edited: { user: 'U1', ts: '1710000999.000001' } },
        previous_message: { type: 'message', user: 'U1', text: 'old text', ts: '1710000998.000001' },
      }),
    );
    await h.postEvent(eventCallback({ type: 'message', subtype: 'message_deleted', channel: 'D1', channel_type: 'im', ts: '1710000999.000002', hidden: true, deleted_ts: '1710000998.000001' }));
    await barrier();
    const asked = h.answerer.requests.map((r) => r.question);
    for (const text of ['from another bot', 'bot with a user id', 'my own words', 'edited text']) expect(asked).not.toContain(text);
  });

  it('splits a long answer into sections of at most 3,000 characters and continues it in the thread', async () => {
    const paragraph = 'Leave policy details & <rules> apply to everyone in the company. '.repeat(30);
    const long = Array.from({ length: 12 }, (_, i) => `Part ${i + 1}. ${paragraph}`).join('\n\n');
    h.answerer.tokens = [long];
    const mention = appMention('<@UBOT> tell me everything', { user: 'ULONG' });
    const postsBefore = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(mention));
    await waitFor(() => h.slack.callsTo('chat.postMessage').slice(postsBefore + 1).some(hasVotes));
    const ts = h.slack.callsTo('chat.postMessage')[postsBefore]!.reply!.ts;
    const final = h.slack.callsTo('chat.update').filter((c) => c.args.ts === ts).at(-1)!;
    const continuation = h.slack.callsTo('chat.postMessage').slice(postsBefore + 1);
    expect(continuation.length).toBeGreaterThanOrEqual(1);
    const messages = [final, ...continuation];
    for (const m of messages) {
      expect(blocksOf(m).length).toBeLessThanOrEqual(50);
      for (const text of sectionText(m)) expect(text.length).toBeLessThanOrEqual(3000);
      expect(sectionText(m).join('').length).toBeLessThanOrEqual(12_000);
    }
    for (const m of continuation) expect(m.args.thread_ts).toBe(mention.ts);
    // Votes and sources sit under the last part; the text is escaped so Slack shows it verbatim.
    expect(hasVotes(final)).toBe(false);
    expect(hasVotes(continuation.at(-1)!)).toBe(true);
    const shown = messages.flatMap((m) => sectionText(m).filter((t) => !t.startsWith('*Sources*')));
    expect(shown.join('').replace(/\s+/g, '')).toBe(long.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\s+/g, ''));
  });
});

describe('Slack HTTP mode: feedback', () => {
  it('records a 👍/👎 button click and shows the tally on the message', async () => {
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(appMention('<@UBOT> vote on me', { user: 'UVOTE' })));
    const { ts, final } = await answerAt(posts);
    const record = (await h.store.findAnswerByReply('slack', ts))!;
    const click = voteClick(h.slack, {
      actionId: 'teamllm_vote_down',
      answerId: record.id,
      userId: 'U2',
      channel: 'C1',
      message: { ts, text: final.args.text as string, blocks: blocksOf(final) },
    });
    const updatesBefore = h.slack.callsTo('chat.update').length;
    const res = await h.postForm({ payload: JSON.stringify(click) });
    expect(res.status).toBe(200);
    await waitFor(() => h.slack.callsTo('chat.update').length > updatesBefore);
    expect(await h.store.feedbackFor(record.id)).toMatchObject([{ platform: 'slack', userId: 'U2', value: -1 }]);
    const shown = h.slack.callsTo('chat.update').at(-1)!;
    expect(shown.args.ts).toBe(ts);
    const buttons = blocksOf(shown).find((b) => b.block_id === 'teamllm_votes')!.elements!;
    expect(buttons.map((b) => b.text!.text)).toEqual(['👍', '👎 1', '↻ Another answer']);
    expect(JSON.stringify(shown.args.blocks)).toContain('Thanks <@U2>, your 👎 is recorded');
    // The answer text and sources are kept.
    expect(sectionText(shown)[0]).toBe('You get 25 days of leave.');

    const unknown = voteClick(h.slack, { actionId: 'teamllm_vote_up', answerId: 'no-such-answer', userId: 'U2', channel: 'C1', message: { ts, text: 'x', blocks: [] } });
    expect((await h.postForm({ payload: JSON.stringify(unknown) })).status).toBe(200);
    await waitFor(() => h.slack.responses.some((r) => r.id === unknown.trigger_id));
    expect(h.slack.responses.find((r) => r.id === unknown.trigger_id)!.body).toMatchObject({ response_type: 'ephemeral', text: expect.stringMatching(/no longer have that answer/) });
  });

  it('counts 👍/👎 reactions on a bot answer, and withdraws them when removed', async () => {
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(appMention('<@UBOT> react to me', { user: 'UREACT' })));
    const { ts } = await answerAt(posts);
    const record = (await h.store.findAnswerByReply('slack', ts))!;
    const reaction = (type: string, reaction: string, user: string, itemUser = 'UBOT', itemTs = ts) => ({
      type,
      user,
      reaction,
      item_user: itemUser,
      item: { type: 'message', channel: 'C1', ts: itemTs },
      event_ts: `${nowSec()}.000200`,
    });
    await h.postEvent(eventCallback(reaction('reaction_added', '+1::skin-tone-3', 'U3')));
    await h.postEvent(eventCallback(reaction('reaction_added', 'thumbsdown', 'U4')));
    await h.postEvent(eventCallback(reaction('reaction_added', 'tada', 'U5')));
    await waitFor(async () => (await h.store.feedbackFor(record.id)).length === 2);
    expect((await h.store.feedbackFor(record.id)).map((f) => [f.userId, f.value]).sort()).toEqual([
      ['U3', 1],
      ['U4', -1],
    ]);
    await h.postEvent(eventCallback(reaction('reaction_removed', '+1', 'U3')));
    await waitFor(async () => (await h.store.feedbackFor(record.id)).length === 1);
    // A 👍 on someone else's message is no vote on an answer.
    await h.postEvent(eventCallback(reaction('reaction_added', '+1', 'U6', 'U1', '1600000000.000009')));
    expect(await h.store.feedbackFor(record.id)).toMatchObject([{ userId: 'U4', value: -1 }]);
  });
});

describe('Slack HTTP mode: commands', () => {
  const responseTo = async (fields: Record<string, string>) => {
    const res = await h.postForm(fields);
    expect(res.status).toBe(200);
    await waitFor(() => h.slack.responses.some((r) => r.id === fields.trigger_id));
    return h.slack.responses.find((r) => r.id === fields.trigger_id)!.body;
  };

  it('runs /train sft for an admin and refuses it for anyone else, answering by response_url', async () => {
    const admin = await responseTo(slashCommand(h.slack, '/train', 'sft lr=3e-4', 'UADMIN'));
    expect(admin).toMatchObject({ response_type: 'ephemeral', text: expect.stringMatching(/not available in this version/) });
    const other = await responseTo(slashCommand(h.slack, '/train', 'sft', 'U1'));
    expect(other.text).toMatch(/^Sorry, only admins can run \/train sft/);
  });

  it('maps /kb and /model to the text commands', async () => {
    expect((await responseTo(slashCommand(h.slack, '/model', '', 'U1'))).text).toBe('Answering with scripted version t1.');
    expect((await responseTo(slashCommand(h.slack, '/kb', 'list', 'U1'))).text).toMatch(/knowledge base is not available/i);
  });

  it('hands files shared in a DM to /kb add as attachments downloadable with the bot token', async () => {
    const msg = fromMessageEvent({
      eventId: 'Ev-files',
      team: 'T1',
      botUserId: 'UBOT',
      botToken: 'xoxb-test-token',
      event: {
        ...directMessage(' /kb add'),
        subtype: 'file_share',
        files: [{ id: 'F1', name: 'leave.md', mimetype: 'text/markdown', size: 12, url_private_download: `http://127.0.0.1:${h.slack.port}/api/files.download` }],
      } as never,
    });
    if ('skip' in msg) throw new Error(msg.skip);
    expect(msg.text).toBe('/kb add');
    expect(msg.attachments).toMatchObject([{ name: 'leave.md', mimeType: 'text/markdown', size: 12 }]);
    const bytes = await msg.attachments[0]!.fetch!();
    expect(new TextDecoder().decode(bytes)).toContain('unknown_method');
    expect(h.slack.callsTo('files.download').at(-1)!.authorization).toBe('Bearer xoxb-test-token');
  });

  it('takes the same commands typed in a DM', async () => {
    const posts = h.slack.callsTo('chat.postMessage').length;
    // Slack's composer runs anything starting with "/" as a slash command, so people type a space first.
    await h.postEvent(eventCallback(directMessage(' /train sft', { user: 'U7' })));
    await waitFor(() => h.slack.callsTo('chat.postMessage').length > posts);
    const reply = h.slack.callsTo('chat.postMessage')[posts]!;
    expect(reply.args.channel).toBe('D1');
    expect(reply.args.text).toMatch(/^Sorry, only admins can run \/train sft/);
  });
});

describe('Slack HTTP mode: Web API errors', () => {
  it('logs channel_not_found and keeps serving', async () => {
    h.slack.failNext('chat.postMessage', { body: { ok: false, error: 'channel_not_found' } });
    await h.postEvent(eventCallback(directMessage('where am I?', { user: 'ULOST', channel: 'D404' })));
    // The Bot logs the failed placeholder post (and answers 'error'); the Slack error must be in that entry.
    await waitFor(() =>
      h.logger.entries.some((e) => e.level === 'error' && /channel_not_found/.test(`${JSON.stringify(e.obj)} ${String((e.obj.err as Error | undefined)?.message)}`)),
    );
    await barrier();
  });

  it('waits out a rate limit (429 with Retry-After) and still delivers the final answer', async () => {
    h.slack.failNext('chat.update', { status: 429, headers: { 'retry-after': '1' }, body: { ok: false, error: 'ratelimited' } });
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(directMessage('rate limit me', { user: 'URATE' })));
    const { final, updates } = await answerAt(posts);
    expect(sectionText(final)[0]).toBe('You get 25 days of leave.');
    const limited = updates.find((c) => c.status === 429)!;
    expect(limited).toBeDefined();
    // The retry came after the second Slack asked for, and it was the same update, accepted.
    const retry = updates[updates.indexOf(limited) + 1]!;
    expect(retry.at - limited.at).toBeGreaterThanOrEqual(950);
    expect(retry.args).toEqual(limited.args);
    expect(accepted(retry)).toBe(true);
    expect(h.logger.entries.some((e) => e.level === 'warn' && e.obj.retryAfterSec === 1)).toBe(true);
  });

  it('falls back to a shortened message when Slack says msg_too_long', async () => {
    h.slack.failNext('chat.update', { when: (args) => JSON.stringify(args.blocks ?? []).includes('teamllm_votes'), body: { ok: false, error: 'msg_too_long' } });
    const posts = h.slack.callsTo('chat.postMessage').length;
    await h.postEvent(eventCallback(directMessage('too long for slack', { user: 'UTOOLONG' })));
    const { final, updates } = await answerAt(posts);
    const [refused, shortened] = updates.filter(hasVotes);
    expect(refused!.reply).toEqual({ ok: false, error: 'msg_too_long' });
    expect(shortened).toBe(final);
    expect(sectionText(shortened)[0]).toMatch(/^You get 25 days of leave\.\n\n_\(cut short/);
    expect(h.logger.entries.some((e) => e.level === 'warn' && /too long/.test(e.msg ?? ''))).toBe(true);
  });

  it('never logs the bot token or the signing secret', () => {
    const all = JSON.stringify(h.logger.entries, (_k, v: unknown) => (v instanceof Error ? { message: v.message, stack: v.stack } : v));
    expect(all).not.toContain('xoxb-test-token');
    expect(all).not.toContain('test-signing-secret');
  });
});
