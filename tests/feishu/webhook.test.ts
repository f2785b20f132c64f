import { afterEach, describe, expect, it } from 'vitest';
import { waitFor, ScriptedAnswerer } from '../helpers.ts';
import {
  ADMIN,
  ENCRYPT_KEY,
  anotherAnswerButton,
  sectionButtons,
  USER,
  VERIFICATION_TOKEN,
  cardActionEvent,
  cardText,
  elements,
  encryptLikeFeishu,
  isFinal,
  messageEvent,
  reactionEvent,
  signLikeFeishu,
  startHarness,
  voteButtons,
  type Harness,
  type HarnessOptions,
} from './feishu-harness.ts';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

async function start(options: HarnessOptions = {}): Promise<Harness> {
  harness = await startHarness(options);
  return harness;
}

function messageIdOf(event: Record<string, unknown>): string {
  return ((event.event as Record<string, unknown>).message as { message_id: string }).message_id;
}

/** The adapter's log line saying it finished with this message: the positive signal before asserting that nothing was sent. */
const handled = (h: Harness, messageId: string) => h.logger.lines.filter((l) => l.includes('Feishu message handled') && l.includes(`"messageId":"${messageId}"`));
const refusals = (h: Harness) => h.logger.lines.filter((l) => l.includes('Feishu callback refused')).length;

/** Delivers a question and waits until its final card is on the fake Feishu. */
async function ask(h: Harness, event: Record<string, unknown>) {
  const res = await h.deliver(event);
  expect(res.status).toBe(200);
  const questionId = messageIdOf(event);
  await waitFor(() => isFinal(h.fake.cardFor(questionId)?.states.at(-1)));
  return h.fake.cardFor(questionId)!;
}

describe('Feishu webhook: URL verification', () => {
  it('answers the plain challenge when the token matches, and refuses a wrong token', async () => {
    const h = await start();
    const ok = await h.postRaw(JSON.stringify({ challenge: 'ajls384kdjx98XX', token: VERIFICATION_TOKEN, type: 'url_verification' }));
    expect(ok).toEqual({ status: 200, body: { challenge: 'ajls384kdjx98XX' } });
    const bad = await h.postRaw(JSON.stringify({ challenge: 'x', token: 'someone-else', type: 'url_verification' }));
    expect(bad.status).toBe(401);
  });

  it('answers the encrypted challenge', async () => {
    const h = await start();
    const plain = JSON.stringify({ challenge: 'enc-challenge-1', token: VERIFICATION_TOKEN, type: 'url_verification' });
    const res = await h.postRaw(JSON.stringify({ encrypt: encryptLikeFeishu(ENCRYPT_KEY, plain) }));
    expect(res).toEqual({ status: 200, body: { challenge: 'enc-challenge-1' } });
  });
});

describe('Feishu webhook: request checks', () => {
  it('refuses a bad signature, a missing signature and a wrong verification token with 401, and answers nothing', async () => {
    const h = await start();
    expect((await h.deliver(messageEvent(), { sign: 'bad' })).status).toBe(401);
    expect((await h.deliver(messageEvent(), { sign: false })).status).toBe(401);
    expect((await h.deliver(messageEvent({ token: 'forged' }))).status).toBe(401);
    // A correctly signed body that was altered afterwards.
    const body = JSON.stringify({ encrypt: encryptLikeFeishu(ENCRYPT_KEY, JSON.stringify(messageEvent())) });
    const signature = signLikeFeishu('1700000000', 'n1', ENCRYPT_KEY, body);
    const tampered = await h.postRaw(body.replace('"encrypt"', '"encrypt" '), {
      'X-Lark-Request-Timestamp': '1700000000',
      'X-Lark-Request-Nonce': 'n1',
      'X-Lark-Signature': signature,
    });
    expect(tampered.status).toBe(401);
    expect(refusals(h)).toBe(4);
    // Refused before anything was dispatched: a question delivered afterwards is the only one answered.
    const valid = messageEvent({ text: 'And now, signed?' });
    await ask(h, valid);
    expect(h.fake.cards).toHaveLength(1);
    expect(h.answerer.requests.map((r) => r.question)).toEqual(['And now, signed?']);
  });

  it('refuses correctly signed requests dated outside the window (default 5 minutes), either way', async () => {
    const h = await start();
    const signedAt = (timestamp: number) => {
      const body = JSON.stringify({ encrypt: encryptLikeFeishu(ENCRYPT_KEY, JSON.stringify(messageEvent())) });
      const headers = { 'X-Lark-Request-Timestamp': String(timestamp), 'X-Lark-Request-Nonce': 'n2', 'X-Lark-Signature': signLikeFeishu(String(timestamp), 'n2', ENCRYPT_KEY, body) };
      return h.postRaw(body, headers);
    };
    const now = Math.floor(Date.now() / 1000);
    const dayOld = await signedAt(now - 86_400);
    expect(dayOld.status).toBe(401);
    expect(dayOld.body.error).toMatch(/window/);
    expect((await signedAt(now + 10 * 60)).status).toBe(401);
    expect(refusals(h)).toBe(2);
    expect((await signedAt(now - 30)).status).toBe(200);
    // The one request inside the window is answered, and it is the only one.
    await waitFor(() => isFinal(h.fake.cards[0]?.states.at(-1)));
    expect(h.fake.cards).toHaveLength(1);
    expect(h.answerer.requests).toHaveLength(1);
  });

  it('answers malformed input with 400', async () => {
    const h = await start();
    expect((await h.postRaw('{not json')).status).toBe(400);
    expect((await h.postRaw('[1,2]')).status).toBe(400);
    const wrongKey = JSON.stringify({ encrypt: encryptLikeFeishu('another-key', JSON.stringify(messageEvent())) });
    const timestamp = '1700000000';
    const res = await h.postRaw(wrongKey, {
      'X-Lark-Request-Timestamp': timestamp,
      'X-Lark-Request-Nonce': 'n2',
      'X-Lark-Signature': signLikeFeishu(timestamp, 'n2', ENCRYPT_KEY, wrongKey),
    });
    expect(res.status).toBe(400);
    const broken = messageEvent();
    delete ((broken.event as Record<string, unknown>).message as Record<string, unknown>).chat_id;
    expect((await h.deliver(broken)).status).toBe(400);
  });

  it('works with a verification token only (no encrypt key): plain events, token checked', async () => {
    const h = await start({ env: { FEISHU_ENCRYPT_KEY: undefined } });
    expect((await h.deliver(messageEvent({ token: 'forged' }))).status).toBe(401);
    const card = await ask(h, messageEvent());
    expect(cardText(card.states.at(-1))).toContain('You get 25 days of leave.');
  });

  it('acknowledges event types it does not handle with 200 (so Feishu does not retry them)', async () => {
    const h = await start();
    const res = await h.deliver({
      schema: '2.0',
      header: { event_id: 'ev_other', token: VERIFICATION_TOKEN, event_type: 'im.chat.member.bot.added_v1', tenant_key: 't', app_id: 'a' },
      event: { chat_id: 'oc_1' },
    });
    expect(res).toEqual({ status: 200, body: {} });
  });
});

describe('Feishu webhook: conversations', () => {
  it('answers a p2p question fast, then streams a card and finishes with sources and 👍/👎', async () => {
    const answerer = new ScriptedAnswerer(['You get ', '25 days ', 'of leave', ' per year.'], undefined, 15);
    const h = await start({ answerer });
    const event = messageEvent({ text: 'How many days of leave do I get?' });
    // The answer is held until the 200 is in: acknowledged before the answer, not after it (had the
    // handler waited for the answer, the POST would never return).
    const release = answerer.hold();
    const res = await h.deliver(event);
    expect(res).toEqual({ status: 200, body: {} });
    expect(h.fake.cardFor(messageIdOf(event))?.states.some(isFinal) ?? false).toBe(false);
    release();

    const questionId = messageIdOf(event);
    await waitFor(() => isFinal(h.fake.cardFor(questionId)?.states.at(-1)));
    const posted = h.fake.cardFor(questionId)!;
    expect(posted.replyInThread).toBe(false);
    expect(posted.uuid).toMatch(/^tl-[0-9a-f]{40}$/);
    expect(cardText(posted.states[0])).toContain('Thinking…');
    expect(posted.states.length).toBeGreaterThanOrEqual(3); // thinking, streaming..., final
    const streaming = posted.states.slice(1, -1).map(cardText);
    expect(streaming.some((s) => s.includes('▍'))).toBe(true);

    const final = posted.states.at(-1)!;
    expect((final.config as Record<string, unknown>).update_multi).toBe(true);
    const text = elements(final)[0] as { content: string };
    expect(text.content).toBe('You get 25 days of leave per year.');
    expect(cardText(final)).toContain('Leave');
    expect(cardText(final)).toContain('en/leave.md');
    const [up, down] = voteButtons(final);
    const answers = await h.store.feedbackCounts();
    expect(answers).toEqual({ up: 0, down: 0 });
    const record = await h.store.findAnswerByReply('feishu', posted.messageId);
    expect(record).toMatchObject({ question: 'How many days of leave do I get?', userId: USER, workspace: 'tenant_0001', channel: 'oc_p2p_1' });
    expect(up!.value).toEqual({ action: 'teamllm_vote', answerId: record!.id, vote: 1 });
    expect(down!.value).toEqual({ action: 'teamllm_vote', answerId: record!.id, vote: -1 });
    expect(voteButtons(final)[2]).toMatchObject({ text: { content: '↻ Another answer' }, value: { action: 'teamllm_another_answer', answerId: record!.id } });

    // Every call to Feishu carried the tenant token the SDK fetched with the app credentials.
    const tokenCalls = h.fake.calls('POST', /tenant_access_token/);
    expect(tokenCalls).toHaveLength(1);
    expect(tokenCalls[0]!.body).toMatchObject({ app_id: h.appId });
    for (const call of h.fake.calls('PATCH', /messages/)) expect(call.headers.authorization).toBe('Bearer t-fake-1');
  });

  it('in a group answers only when the bot itself is @-mentioned, with the @ keys stripped', async () => {
    const h = await start();
    const silent = messageEvent({ chatType: 'group', text: 'How many days of leave do I get?' });
    expect((await h.deliver(silent)).status).toBe(200);
    const other = messageEvent({
      chatType: 'group',
      text: '@_user_1 how many days of leave do I get?',
      mentions: [{ key: '@_user_1', openId: 'ou_colleague', name: 'Li Lei' }],
    });
    expect((await h.deliver(other)).status).toBe(200);

    const mention = messageEvent({
      chatType: 'group',
      text: '@_user_1 how many days of leave does @_user_2 get?',
      mentions: [
        { key: '@_user_1', openId: h.fake.botOpenId, name: 'teamllm' },
        { key: '@_user_2', openId: 'ou_colleague', name: 'Li Lei' },
      ],
    });
    const card = await ask(h, mention);
    expect(card.replyInThread).toBe(false);
    expect(h.answerer.requests.map((r) => r.question)).toEqual(['how many days of leave does @Li Lei get?']);
    expect(h.fake.calls('GET', /\/bot\/v3\/info$/).length).toBeGreaterThanOrEqual(1);
    expect(h.fake.cardFor(messageIdOf(silent))).toBeUndefined();
    expect(h.fake.cardFor(messageIdOf(other))).toBeUndefined();
  });

  it('understands rich-text (post) messages, mentions included', async () => {
    const h = await start();
    const event = messageEvent({
      chatType: 'group',
      messageType: 'post',
      content: {
        title: '',
        content: [
          [
            { tag: 'at', user_id: '@_user_1', user_name: 'teamllm', style: [] },
            { tag: 'text', text: ' What is the ', style: [] },
            { tag: 'text', text: 'leave policy', style: ['bold'] },
            { tag: 'text', text: '?', style: [] },
          ],
          [{ tag: 'img', image_key: 'img_v3_xxx', width: 100, height: 100 }],
          [{ tag: 'text', text: 'See ' }, { tag: 'a', href: 'https://wiki.example.com/leave', text: 'the wiki' }],
        ],
      },
      mentions: [{ key: '@_user_1', openId: h.fake.botOpenId, name: 'teamllm' }],
    });
    await ask(h, event);
    expect(h.answerer.requests[0]!.question).toBe('What is the leave policy?\n\nSee the wiki (https://wiki.example.com/leave)');
  });

  it('replies inside the thread a question came from, and follows the thread without further @', async () => {
    const h = await start();
    const first = messageEvent({
      chatType: 'group',
      text: '@_user_1 how many days of leave do I get?',
      mentions: [{ key: '@_user_1', openId: h.fake.botOpenId, name: 'teamllm' }],
      threadId: 'omt_thread_1',
      rootId: 'om_thread_root',
    });
    const card = await ask(h, first);
    expect(card.replyInThread).toBe(true);

    const followUp = messageEvent({ chatType: 'group', text: 'And in my second year?', threadId: 'omt_thread_1', rootId: 'om_thread_root' });
    const second = await ask(h, followUp);
    expect(second.replyInThread).toBe(true);
    expect(h.answerer.requests[1]!.question).toBe('And in my second year?');
    expect(h.answerer.requests[1]!.history.map((t) => t.role)).toEqual(['user', 'assistant']);

    // Another thread in the same group, without @: not the bot's business.
    const elsewhere = messageEvent({ chatType: 'group', text: 'lunch?', threadId: 'omt_thread_2', rootId: 'om_other_root' });
    expect((await h.deliver(elsewhere)).status).toBe(200);
    await waitFor(() => handled(h, messageIdOf(elsewhere)).length === 1);
    expect(handled(h, messageIdOf(elsewhere))[0]).toContain('"outcome":"ignored"');
    expect(h.fake.cardFor(messageIdOf(elsewhere))).toBeUndefined();
  });

  it('answers once however often Feishu redelivers (same event_id, or the same message under a new event_id)', async () => {
    const h = await start();
    const event = messageEvent({ eventId: 'ev_redelivered_1' });
    const results = await Promise.all([h.deliver(event), h.deliver(event), h.deliver(event)]);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    await waitFor(() => isFinal(h.fake.cardFor(messageIdOf(event))?.states.at(-1)));
    const again = structuredClone(event);
    (again.header as Record<string, unknown>).event_id = 'ev_redelivered_2';
    expect((await h.deliver(again)).status).toBe(200);
    // Two of the three same-event deliveries stop at the event id; the new event id reaches the core's dedupe.
    expect(h.logger.lines.filter((l) => l.includes('Feishu redelivered an event; dropped') && l.includes('ev_redelivered_1'))).toHaveLength(2);
    await waitFor(() => handled(h, messageIdOf(event)).length === 2);
    expect(handled(h, messageIdOf(event))[1]).toContain('"outcome":"duplicate"');
    expect(h.fake.cards).toHaveLength(1);
    expect(h.fake.calls('POST', /\/reply$/)).toHaveLength(1);
    expect(h.answerer.requests).toHaveLength(1);
  });

  it('tells a p2p user once that it reads only text, for an image', async () => {
    const h = await start();
    const image = messageEvent({ messageType: 'image', content: { image_key: 'img_v2_041b28e3' } });
    await h.deliver(image);
    await h.deliver(image);
    await waitFor(() => h.fake.cards.length === 1);
    // The second delivery stopped at its event id before its 200 came back.
    const eventId = (image.header as { event_id: string }).event_id;
    expect(h.logger.lines.filter((l) => l.includes('Feishu redelivered an event; dropped') && l.includes(eventId))).toHaveLength(1);
    expect(h.fake.cards).toHaveLength(1);
    expect(cardText(h.fake.cards[0]!.states[0])).toContain('text and rich-text messages only');
  });
});

describe('Feishu webhook: commands', () => {
  it('lets an admin run /train sft (not available yet) and refuses a non-admin', async () => {
    const h = await start();
    const admin = messageEvent({ sender: ADMIN, text: '/train sft' });
    await h.deliver(admin);
    await waitFor(() => h.fake.cardFor(messageIdOf(admin)) !== undefined);
    expect(cardText(h.fake.cardFor(messageIdOf(admin))!.states[0])).toContain('not available in this version');

    const user = messageEvent({ sender: USER, text: '/train sft' });
    await h.deliver(user);
    await waitFor(() => h.fake.cardFor(messageIdOf(user)) !== undefined);
    expect(cardText(h.fake.cardFor(messageIdOf(user))!.states[0])).toContain('Sorry, only admins can run /train sft');
    expect(h.answerer.requests).toHaveLength(0);
  });

  it('reads a command after the bot mention in a group', async () => {
    const h = await start();
    const event = messageEvent({
      chatType: 'group',
      sender: ADMIN,
      text: '@_user_1 /train sft',
      mentions: [{ key: '@_user_1', openId: h.fake.botOpenId, name: 'teamllm' }],
    });
    await h.deliver(event);
    await waitFor(() => h.fake.cardFor(messageIdOf(event)) !== undefined);
    expect(cardText(h.fake.cardFor(messageIdOf(event))!.states[0])).toContain('not available in this version');
  });
});

describe('Feishu webhook: feedback', () => {
  it('records a 👍/👎 button click and answers with a toast and the updated card', async () => {
    const h = await start();
    const posted = await ask(h, messageEvent());
    const [up, down] = voteButtons(posted.states.at(-1));

    const first = await h.deliver(cardActionEvent(posted.messageId, up!.value, USER));
    expect(first.status).toBe(200);
    expect(first.body.toast).toMatchObject({ type: 'success' });
    const card = (first.body.card as { type: string; data: Record<string, unknown> });
    expect(card.type).toBe('raw');
    const [upAfter, downAfter] = voteButtons(card.data);
    expect(upAfter).toMatchObject({ type: 'primary', text: { content: '👍 Helpful · 1' } });
    expect(downAfter).toMatchObject({ type: 'default', text: { content: '👎 Not helpful' } });
    expect(cardText(card.data)).toContain('You get 25 days of leave.');

    const second = await h.deliver(cardActionEvent(posted.messageId, down!.value, 'ou_other_user'));
    const [, downLater] = voteButtons((second.body.card as { data: Record<string, unknown> }).data);
    expect(downLater).toMatchObject({ text: { content: '👎 Not helpful · 1' } });

    const record = await h.store.findAnswerByReply('feishu', posted.messageId);
    const votes = await h.store.feedbackFor(record!.id);
    expect(votes.map((v) => [v.userId, v.value]).sort()).toEqual([
      ['ou_other_user', -1],
      [USER, 1],
    ]);
  });

  it('answers a click on an unknown answer with a warning toast, and unknown buttons with an info toast', async () => {
    const h = await start();
    const res = await h.deliver(cardActionEvent('om_gone', { action: 'teamllm_vote', answerId: 'nope', vote: 1 }));
    expect(res.status).toBe(200);
    expect(res.body.toast).toMatchObject({ type: 'warning' });
    expect(res.body.card).toBeUndefined();
    const other = await h.deliver(cardActionEvent('om_gone', { something: 'else' }));
    expect(other.body.toast).toMatchObject({ type: 'info' });
  });

  it('handles the legacy card callback format through the SDK card handler', async () => {
    const h = await start();
    const posted = await ask(h, messageEvent());
    const [up] = voteButtons(posted.states.at(-1));
    const res = await h.deliver({
      open_id: USER,
      user_id: 'u_1',
      open_message_id: posted.messageId,
      open_chat_id: 'oc_p2p_1',
      tenant_key: 'tenant_0001',
      token: 'c-legacy-update-token',
      action: { value: up!.value, tag: 'button' },
    });
    expect(res.status).toBe(200);
    expect(voteButtons(res.body)[0]).toMatchObject({ text: { content: '👍 Helpful · 1' } });
    expect(await h.store.feedbackCounts()).toEqual({ up: 1, down: 0 });
  });

  it('counts 👍/👎 reactions on an answer, withdraws on removal, ignores other emoji and other messages', async () => {
    const h = await start();
    const posted = await ask(h, messageEvent());
    const record = await h.store.findAnswerByReply('feishu', posted.messageId);

    expect((await h.deliver(reactionEvent(posted.messageId, 'THUMBSUP'))).status).toBe(200);
    await waitFor(async () => (await h.store.feedbackFor(record!.id)).length === 1);
    expect((await h.store.feedbackFor(record!.id))[0]).toMatchObject({ userId: USER, value: 1 });
    // The card's counts follow.
    await waitFor(() => voteButtons(posted.states.at(-1))[0]?.text !== undefined && cardText(posted.states.at(-1)).includes('Helpful · 1'));

    await h.deliver(reactionEvent(posted.messageId, 'ThumbsDown', 'ou_other_user'));
    await waitFor(async () => (await h.store.feedbackCounts()).down === 1);

    await h.deliver(reactionEvent(posted.messageId, 'THUMBSUP', USER, false));
    await waitFor(async () => (await h.store.feedbackCounts()).up === 0);

    // Another emoji is dropped before the 200; a 👍 on another message once the store says it is no answer.
    await h.deliver(reactionEvent(posted.messageId, 'SMILE', 'ou_third'));
    await h.deliver(reactionEvent('om_not_a_bot_answer', 'THUMBSUP', 'ou_third'));
    await waitFor(() => h.logger.lines.some((l) => l.includes('not an answer; ignored') && l.includes('om_not_a_bot_answer')));
    expect(await h.store.feedbackCounts()).toEqual({ up: 0, down: 1 });
  });
});

describe('Feishu webhook: "↻ Another answer"', () => {
  /** A question @-mentioning the bot inside a group thread. */
  const inThread = (h: Harness, text = '@_user_1 how many days of leave do I get?') =>
    messageEvent({
      chatType: 'group',
      chatId: 'oc_group_1',
      text,
      mentions: [{ key: '@_user_1', openId: h.fake.botOpenId, name: 'teamllm' }],
      threadId: 'omt_thread_9',
      rootId: 'om_thread_root_9',
    });

  it('answers the click at once with a toast, then posts a second, different answer in the same thread', async () => {
    const h = await start();
    const first = await ask(h, inThread(h));
    expect(first.replyInThread).toBe(true);
    const record = (await h.store.findAnswerByReply('feishu', first.messageId))!;
    const button = anotherAnswerButton(first.states.at(-1))!;
    expect(button.value).toEqual({ action: 'teamllm_another_answer', answerId: record.id });

    h.answerer.tokens = ['Part-timers get ', 'a pro-rata share.'];
    // Generation is held until the callback has been answered: it must not wait for the answer.
    const release = h.answerer.hold();
    const click = cardActionEvent(first.messageId, button.value, 'ou_colleague', 'oc_group_1');
    const res = await h.deliver(click);
    expect(res.status).toBe(200);
    expect(res.body.toast).toEqual({ type: 'info', content: 'Working on another answer…' });
    expect(res.body.card).toBeUndefined();
    // Feishu redelivers a callback it thinks was slow: the same event_id gives no second answer.
    expect((await h.deliver(click)).status).toBe(200);
    release();

    // The new answer replies to the clicked card, in the thread, streamed like any answer.
    await waitFor(() => isFinal(h.fake.cardFor(first.messageId)?.states.at(-1)));
    const second = h.fake.cardFor(first.messageId)!;
    expect(second.replyInThread).toBe(true);
    expect(cardText(second.states[0])).toContain('Thinking…');
    expect(elements(second.states.at(-1))[0]).toEqual({ tag: 'markdown', content: 'Part-timers get a pro-rata share.' });
    expect(elements(first.states.at(-1))[0]).toEqual({ tag: 'markdown', content: 'You get 25 days of leave.' });

    const request = h.answerer.requests.at(-1)!;
    expect(request.question).toBe('how many days of leave do I get?');
    expect(request.avoid).toEqual(['You get 25 days of leave.']);
    const again = (await h.store.findAnswerByReply('feishu', second.messageId))!;
    expect(again).toMatchObject({ question: 'how many days of leave do I get?', channel: 'oc_group_1', thread: record.thread, userId: 'ou_colleague' });
    expect(again.id).not.toBe(record.id);
    // Its own buttons name the new answer.
    expect(anotherAnswerButton(second.states.at(-1))!.value).toEqual({ action: 'teamllm_another_answer', answerId: again.id });

    await waitFor(() => h.logger.lines.filter((l) => l.includes('"another answer" handled')).length === 2);
    expect(h.answerer.requests).toHaveLength(2);
    expect(h.fake.cards).toHaveLength(2);
    expect(h.logger.lines.some((l) => l.includes('"another answer" handled') && l.includes('"outcome":"duplicate"'))).toBe(true);

    // Votes on both answers still work, and a 👎/👍 across the two is what the reward model learns from.
    const down = await h.deliver(cardActionEvent(first.messageId, voteButtons(first.states.at(-1))[1]!.value, 'ou_colleague', 'oc_group_1'));
    expect(down.body.toast).toMatchObject({ type: 'success' });
    const up = await h.deliver(cardActionEvent(second.messageId, voteButtons(second.states.at(-1))[0]!.value, 'ou_colleague', 'oc_group_1'));
    expect(up.body.toast).toMatchObject({ type: 'success' });
    expect(anotherAnswerButton((up.body.card as { data: Record<string, unknown> }).data)).toBeDefined();
    expect((await h.store.feedbackFor(record.id)).map((f) => f.value)).toEqual([-1]);
    expect((await h.store.feedbackFor(again.id)).map((f) => f.value)).toEqual([1]);
  });

  it('gives a second click its own reply (its own uuid), also in a direct chat', async () => {
    const h = await start();
    const first = await ask(h, messageEvent());
    const button = anotherAnswerButton(first.states.at(-1))!;
    h.answerer.tokens = ['Second try.'];
    expect((await h.deliver(cardActionEvent(first.messageId, button.value))).body.toast).toMatchObject({ type: 'info' });
    await waitFor(() => h.fake.cards.length === 2 && isFinal(h.fake.cards[1]!.states.at(-1)));
    h.answerer.tokens = ['Third try.'];
    expect((await h.deliver(cardActionEvent(first.messageId, button.value))).body.toast).toMatchObject({ type: 'info' });
    await waitFor(() => h.fake.cards.length === 3 && isFinal(h.fake.cards[2]!.states.at(-1)));
    expect(h.fake.cards.slice(1).map((c) => c.questionId)).toEqual([first.messageId, first.messageId]);
    expect(new Set(h.fake.cards.map((c) => c.uuid)).size).toBe(3);
    expect(h.fake.cards[2]!.replyInThread).toBe(false);
    expect(cardText(h.fake.cards[2]!.states.at(-1))).toContain('Third try.');
    // Both earlier answers were to be avoided the second time.
    expect(h.answerer.requests.at(-1)!.avoid).toEqual(['You get 25 days of leave.', 'Second try.']);
  });

  it('works from the legacy card callback too (its per-click token keys the click)', async () => {
    const h = await start();
    const first = await ask(h, messageEvent());
    h.answerer.tokens = ['Legacy second answer.'];
    const legacy = (token: string) => ({
      open_id: USER,
      user_id: 'u_1',
      open_message_id: first.messageId,
      open_chat_id: 'oc_p2p_1',
      tenant_key: 'tenant_0001',
      token,
      action: { value: anotherAnswerButton(first.states.at(-1))!.value, tag: 'button' },
    });
    const res = await h.deliver(legacy('c-legacy-click-1'));
    expect(res.status).toBe(200);
    // The legacy format answers with a card or nothing: nothing keeps the clicked card as it is.
    expect(res.body).toEqual({});
    await h.deliver(legacy('c-legacy-click-1'));
    await waitFor(() => isFinal(h.fake.cardFor(first.messageId)?.states.at(-1)));
    expect(elements(h.fake.cardFor(first.messageId)!.states.at(-1))[0]).toEqual({ tag: 'markdown', content: 'Legacy second answer.' });
    await waitFor(() => h.logger.lines.filter((l) => l.includes('"another answer" handled')).length === 2);
    expect(h.fake.cards).toHaveLength(2);
  });

  it('names the closest sections as buttons after a "don\'t know", and answers from the one clicked as a reply', async () => {
    const h = await start();
    h.answerer.near = [
      { source: 'en/leave.md', title: 'Leave > Bereavement', text: 'Bereavement leave is 5 working days.', score: 1.1 },
      { source: 'en/leave.md', title: 'Leave > Sick leave', text: 'Report sick before 09:30.', score: 0.9 },
    ];
    h.answerer.tokens = ["Sorry, I couldn't find that in the knowledge base."];
    const first = await ask(h, inThread(h, '@_user_1 my nan died, can I take time off?'));
    const record = (await h.store.findAnswerByReply('feishu', first.messageId))!;
    const buttons = sectionButtons(first.states.at(-1));
    expect(buttons.map((b) => (b.text as { content: string }).content)).toEqual(['Bereavement', 'Sick leave']);
    expect(buttons[0]!.value).toEqual({ action: 'teamllm_from_section', answerId: record.id, source: 'en/leave.md', title: 'Leave > Bereavement' });

    h.answerer.near = undefined;
    h.answerer.tokens = ['Bereavement leave is 5 working days.'];
    const res = await h.deliver(cardActionEvent(first.messageId, buttons[0]!.value, 'ou_colleague', 'oc_group_1'));
    expect(res.body.toast).toEqual({ type: 'info', content: 'Answering from that section…' });
    await waitFor(() => isFinal(h.fake.cardFor(first.messageId)?.states.at(-1)));
    const second = h.fake.cardFor(first.messageId)!;
    expect(elements(second.states.at(-1))[0]).toEqual({ tag: 'markdown', content: 'Bereavement leave is 5 working days.' });
    const request = h.answerer.requests.at(-1)!;
    expect(request.question).toBe('my nan died, can I take time off?');
    expect(request.section).toEqual({ source: 'en/leave.md', title: 'Leave > Bereavement' });
    // A damaged section button is refused with a toast.
    const damaged = await h.deliver(cardActionEvent(first.messageId, { action: 'teamllm_from_section', answerId: record.id }, 'ou_colleague', 'oc_group_1'));
    expect(damaged.body.toast).toMatchObject({ type: 'error' });
  });

  it('refuses a click from another chat, and on an unknown answer, with a toast and nothing posted', async () => {
    const h = await start();
    const first = await ask(h, inThread(h));
    const button = anotherAnswerButton(first.states.at(-1))!;
    // The card forwarded into another chat and clicked there.
    const elsewhere = await h.deliver(cardActionEvent('om_forwarded_copy', button.value, 'ou_outsider', 'oc_other_group'));
    expect(elsewhere.status).toBe(200);
    expect(elsewhere.body.toast).toEqual({ type: 'warning', content: 'This answer was given in another chat: ask for another answer there.' });
    const unknown = await h.deliver(cardActionEvent(first.messageId, { action: 'teamllm_another_answer', answerId: 'no-such-answer' }, USER, 'oc_group_1'));
    expect(unknown.status).toBe(200);
    expect(unknown.body.toast).toMatchObject({ type: 'warning' });
    expect(String((unknown.body.toast as { content: string }).content)).toMatch(/no longer have this answer/);

    // A barrier: a later question is answered, so nothing from the refused clicks was still on its way.
    await ask(h, messageEvent({ text: 'And sick leave?' }));
    expect(h.answerer.requests).toHaveLength(2);
    expect(h.fake.cards).toHaveLength(2);
    expect(h.fake.cardFor('om_forwarded_copy')).toBeUndefined();
  });

  it('answers malformed button values with a toast or a 400, and keeps serving', async () => {
    const h = await start();
    const first = await ask(h, messageEvent());
    for (const value of [
      { action: 'teamllm_another_answer' },
      { action: 'teamllm_another_answer', answerId: '' },
      { action: 'teamllm_another_answer', answerId: 'x'.repeat(500) },
      { action: 'teamllm_another_answer', answerId: 42 },
      JSON.stringify({ action: 'teamllm_another_answer', answerId: ['a'] }),
    ]) {
      const res = await h.deliver(cardActionEvent(first.messageId, value));
      expect(res.status).toBe(200);
      expect(res.body.toast).toMatchObject({ type: 'error' });
    }
    // A value that is no JSON at all, and a click without its message and chat.
    expect((await h.deliver(cardActionEvent(first.messageId, '{"action":"teamllm_another_answer",'))).body.toast).toMatchObject({ type: 'info' });
    const noContext = cardActionEvent(first.messageId, anotherAnswerButton(first.states.at(-1))!.value);
    delete (noContext.event as Record<string, unknown>).context;
    expect((await h.deliver(noContext)).status).toBe(400);

    const second = await ask(h, messageEvent({ text: 'Still there?' }));
    expect(isFinal(second.states.at(-1))).toBe(true);
    expect(h.answerer.requests).toHaveLength(2);
  });
});

describe('Feishu webhook: platform API failures', () => {
  it('retries server errors and rate limits, and still delivers the answer', async () => {
    const h = await start();
    h.fake.fail('POST', /\/reply$/, 2, 500, { code: 500, msg: 'internal error' });
    h.fake.fail('PATCH', /\/messages\//, 1, 429, { code: 99991400, msg: 'request trigger frequency limit' });
    const posted = await ask(h, messageEvent());
    expect(posted.states.length).toBeGreaterThanOrEqual(2);
    // The retried replies carried the same uuid, so Feishu could not have posted twice.
    const uuids = new Set(h.fake.calls('POST', /\/reply$/).map((r) => r.body?.uuid));
    expect(uuids.size).toBe(1);
  });

  it('gives up on a call Feishu does not answer in time and retries it under the same uuid', async () => {
    const h = await start({ adapter: { streamIntervalMs: 10, retry: { attempts: 3, baseDelayMs: 20, timeoutMs: 150 } } });
    h.fake.stall('POST', /\/reply$/, 1, 400);
    const posted = await ask(h, messageEvent());
    expect(isFinal(posted.states.at(-1))).toBe(true);
    const replies = h.fake.calls('POST', /\/reply$/);
    expect(replies).toHaveLength(2);
    expect(replies[0]!.body?.uuid).toBe(replies[1]!.body?.uuid);
    // The stalled first call did land on Feishu later, but the uuid kept it to one message.
    await waitFor(() => h.fake.answered === h.fake.requests.length);
    expect(h.fake.cards).toHaveLength(1);
  });

  it('fetches a new tenant token when Feishu rejects the cached one', async () => {
    const h = await start();
    await ask(h, messageEvent());
    h.fake.revokeTokens();
    await ask(h, messageEvent({ text: 'And sick leave?' }));
    expect(h.fake.calls('POST', /tenant_access_token/)).toHaveLength(2);
  });

  it('survives a reply Feishu refuses for good, logs it, and keeps answering', async () => {
    const h = await start();
    h.fake.fail('POST', /\/reply$/, 1, 400, { code: 230002, msg: 'The bot can not be outside the group.' });
    const refused = messageEvent();
    expect((await h.deliver(refused)).status).toBe(200);
    await waitFor(() => h.logger.lines.some((l) => l.includes('230002')));
    expect(h.fake.cards).toHaveLength(0);
    const card = await ask(h, messageEvent({ text: 'Is the bot still there?' }));
    expect(isFinal(card.states.at(-1))).toBe(true);
  });

  it('keeps long answers within the 30 KB card limit without breaking characters', async () => {
    const long = '年假政策说明：员工每年享有二十五天带薪年假。'.repeat(700); // ~46 KB of UTF-8
    const answerer = new ScriptedAnswerer([long], [
      { source: 'zh/leave.md', title: '年假', text: '每年二十五天。'.repeat(200), score: 2 },
      { source: 'zh/sick.md', title: '病假', text: '病假需要证明。'.repeat(200), score: 1 },
    ]);
    const h = await start({ answerer });
    const posted = await ask(h, messageEvent({ text: '年假有多少天？' }));
    const final = posted.states.at(-1)!;
    const bytes = Buffer.byteLength(JSON.stringify(final));
    expect(bytes).toBeLessThanOrEqual(30 * 1024);
    expect(bytes).toBeGreaterThan(20 * 1024);
    const text = (elements(final)[0] as { content: string }).content;
    expect(text).toContain('shortened to fit');
    expect(text).not.toContain('\uFFFD');
    expect(cardText(final)).toContain('zh/leave.md');
    // The whole answer is still what was stored.
    const record = await h.store.findAnswerByReply('feishu', posted.messageId);
    expect(record!.output).toBe(long);
  });

  it('never writes secrets or tokens to the log', async () => {
    const h = await start();
    h.fake.fail('PATCH', /\/messages\//, 2, 500, { code: 500, msg: 'internal error' });
    await ask(h, messageEvent());
    h.fake.revokeTokens();
    h.fake.fail('POST', /\/reply$/, 1, 400, { code: 230002, msg: 'The bot can not be outside the group.' });
    await h.deliver(messageEvent({ text: 'again' }));
    await h.deliver(messageEvent({ text: 'forged' }), { sign: 'bad' });
    await waitFor(() => h.logger.lines.some((l) => l.includes('230002')));
    const log = h.logger.lines.join('\n');
    expect(log).toContain('retrying');
    expect(log).not.toContain('t-fake-');
    expect(log).not.toContain(ENCRYPT_KEY);
    expect(log).not.toContain(VERIFICATION_TOKEN);
    expect(log).not.toMatch(/secret-[0-9a-f]{12}/);
  });
});
