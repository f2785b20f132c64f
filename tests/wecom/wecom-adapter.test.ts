import { afterEach, describe, expect, it } from 'vitest';
import { createWecomAdapter } from '../../src/adapters/wecom/index.ts';
import { makeBot, SAMPLE_SOURCE, ScriptedAnswerer, waitFor } from '../helpers.ts';
import { recordingLogger, startHarness, SECRETS, wecomEnv, type Harness } from './harness.ts';
import { cardEventXml, encryptedCallback, imageMessageXml, textMessageXml, wecomEncrypt, wecomSignature } from './wecom-protocol.ts';
import { parseButtonKey } from '../../src/adapters/wecom/message-format.ts';

const USER = 'zhangsan';
let msgIds = 7_000_000_000_000_000_000n;
const nextMsgId = () => String(++msgIds);

const question = (content: string, from = USER, msgId = nextMsgId()) =>
  textMessageXml({ corpId: SECRETS.corpId, from, content, msgId, agentId: SECRETS.agentId });

let h: Harness | undefined;
afterEach(async () => {
  if (!h) return;
  // No line of the log may carry a credential, whatever the test did.
  const log = JSON.stringify(h.logger.entries);
  for (const secret of [SECRETS.secret, SECRETS.token, SECRETS.encodingAesKey, 'tok-1', 'tok-2']) expect(log).not.toContain(secret);
  await h.close();
  h = undefined;
});

/** Waits for the answer to `USER`: its text messages, then the vote card. */
async function answerTo(harness: Harness, user = USER, cards = 1) {
  await waitFor(() => harness.fake.cardsTo(user).length >= cards);
  return { texts: harness.fake.textsTo(user), card: harness.fake.cardsTo(user)[cards - 1]! };
}

describe('WeCom URL verification', () => {
  it('returns the decrypted echostr for a correctly signed request and refuses a forged one', async () => {
    h = await startHarness();
    // A '+' in the ciphertext must survive URL decoding: pick one that has it.
    let echostr = '';
    while (!echostr.includes('+')) echostr = wecomEncrypt(SECRETS.encodingAesKey, 'echo-5912837465', SECRETS.corpId);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const nonce = '1597212914';
    const signature = wecomSignature(SECRETS.token, timestamp, nonce, echostr);
    const verify = (sig: string, echo: string) =>
      fetch(`${h!.url}/wecom/callback?msg_signature=${sig}&timestamp=${timestamp}&nonce=${nonce}&echostr=${echo}`);

    const ok = await verify(signature, encodeURIComponent(echostr));
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('echo-5912837465');
    // Some proxies pass the '+' through unencoded.
    const raw = await verify(signature, echostr.replace(/\//g, '%2F').replace(/=/g, '%3D'));
    expect(await raw.text()).toBe('echo-5912837465');

    const forged = await verify('0'.repeat(40), encodeURIComponent(echostr));
    expect(forged.status).toBe(401);
    const missing = await fetch(`${h.url}/wecom/callback?msg_signature=${signature}&timestamp=${timestamp}`);
    expect(missing.status).toBe(400);
  });
});

describe('WeCom messages', () => {
  it('acknowledges a question at once and sends the final answer with sources, then a 👍/👎 card', async () => {
    const answerer = new ScriptedAnswerer(['You get ', '25 days ', 'of leave.'], [SAMPLE_SOURCE]);
    h = await startHarness({ answerer });
    // The answer is held until the 200 is in: had the callback waited for it, the POST would never return.
    const release = answerer.hold();
    const res = await h.post(question('How many days of leave do I get?'));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
    expect(h.fake.sent).toHaveLength(0);
    release();

    const { texts, card } = await answerTo(h);
    // No "Thinking…" and no streamed drafts: a self-built app cannot edit what it sent.
    expect(texts).toHaveLength(1);
    expect(texts[0]!.msgtype).toBe('markdown');
    expect(texts[0]!.content).toContain('You get 25 days of leave.');
    expect(texts[0]!.content).toContain('[1] Leave — en/leave.md');
    expect(texts[0]!.content).toContain('Answered by scripted t1');
    const first = h.fake.sent[0]!.body;
    expect(first).toMatchObject({ touser: USER, agentid: 1000002 });

    expect(card.card_type).toBe('button_interaction');
    const keys = card.button_list.map((b) => b.key);
    const answerId = keys[0]!.replace(/^up:/, '');
    expect(keys).toEqual([`up:${answerId}`, `down:${answerId}`, `another:${answerId}`]);
    expect(card.button_list[2]!.text).toBe('↻ Another answer');
    expect(card.task_id).toMatch(/^[A-Za-z0-9_@-]{1,128}$/);
    const record = await h.store.getAnswer(answerId);
    expect(record).toMatchObject({ platform: 'wecom', userId: USER, workspace: SECRETS.corpId, output: 'You get 25 days of leave.' });

    // One gettoken with the corp's credentials; every send used its token.
    expect(h.fake.tokensIssued).toBe(1);
    expect(h.fake.tokenRequests[0]!.get('corpid')).toBe(SECRETS.corpId);
    expect(h.fake.tokenRequests[0]!.get('corpsecret')).toBe(SECRETS.secret);
    expect(h.fake.sent.every((s) => s.token === 'tok-1')).toBe(true);
  });

  it('answers a message once however often WeCom retries it', async () => {
    h = await startHarness({ answerer: new ScriptedAnswerer(['Twenty-five ', 'days.'], [SAMPLE_SOURCE], 20) });
    const xml = question('How many days of leave do I get?');
    // WeCom's retries carry the same MsgId, with the same or a fresh signature.
    const statuses = await Promise.all([h.post(xml), h.post(xml), h.post(xml, { nonce: 'retry-1' })].map(async (r) => (await r).status));
    expect(statuses).toEqual([200, 200, 200]);
    await answerTo(h);
    expect((await h.post(xml, { nonce: 'retry-late' })).status).toBe(200);
    await h.adapter.stop!();
    // After a restart the adapter's memory is gone; the Bot's persistent claim still holds.
    const restarted = await createWecomAdapter({ bot: h.bot, logger: h.logger, env: wecomEnv(h.fake.url) });
    const retry = encryptedCallback(SECRETS, xml);
    expect((await restarted.routes!.request(`/wecom/callback?${retry.query}`, { method: 'POST', body: retry.body })).status).toBe(200);
    await restarted.stop!();
    expect(h.logger.entries.some((e) => e.msg === 'duplicate delivery dropped')).toBe(true);
    expect(h.answerer.requests).toHaveLength(1);
    expect(h.fake.textsTo(USER)).toHaveLength(1);
    expect(h.fake.cardsTo(USER)).toHaveLength(1);
  });

  it('refuses a bad signature with 401, logs it and sends nothing', async () => {
    h = await startHarness();
    const xml = question('Hello?');
    expect((await h.post(xml, { signature: 'f'.repeat(40) })).status).toBe(401);
    // A valid signature over one ciphertext does not cover another.
    const genuine = encryptedCallback(SECRETS, xml);
    const swapped = genuine.body.replace(genuine.encrypted, wecomEncrypt(SECRETS.encodingAesKey, question('Other'), SECRETS.corpId));
    expect((await h.postRaw(genuine.query, swapped)).status).toBe(401);
    expect((await h.postRaw('', genuine.body)).status).toBe(400);
    const refusals = h.logger.entries.filter((e) => e.level === 'warn' && e.msg === 'WeCom callback refused');
    expect(refusals.map((e) => e.obj.reason)).toEqual(['bad_signature', 'bad_signature']);
    await h.adapter.stop!();
    expect(h.fake.sent).toHaveLength(0);
    expect(h.answerer.requests).toHaveLength(0);
  });

  it('refuses correctly signed callbacks dated outside the window (a day old, 10 minutes ahead), and drops a replay inside it', async () => {
    h = await startHarness();
    const now = Math.floor(Date.now() / 1000);
    expect((await h.post(question('Old?'), { timestamp: now - 86_400 })).status).toBe(401);
    expect((await h.post(question('Ahead?'), { timestamp: now + 600 })).status).toBe(401);
    const refusals = h.logger.entries.filter((e) => e.level === 'warn' && e.msg === 'WeCom callback refused');
    expect(refusals.map((e) => e.obj.reason)).toEqual(['stale_timestamp', 'stale_timestamp']);
    // Inside the window: answered once; the identical request sent again is dropped as a duplicate.
    const fresh = encryptedCallback(SECRETS, question('Fresh?'), { timestamp: now - 60 });
    expect((await h.postRaw(fresh.query, fresh.body)).status).toBe(200);
    expect((await h.postRaw(fresh.query, fresh.body)).status).toBe(200);
    await h.adapter.stop!();
    expect(h.answerer.requests.map((r) => r.question)).toEqual(['Fresh?']);
  });

  it('refuses a message encrypted for another corp (wrong receive id) with 403', async () => {
    h = await startHarness();
    const xml = question('Hello?');
    expect((await h.post(xml, { receiveId: 'wwAnotherCorp00001' })).status).toBe(403);
    // The wrong AES key decrypts to garbage: refused too, never a crash.
    const wrongKey = await h.post(xml, { encodingAesKey: 'A'.repeat(43) });
    expect(wrongKey.status).toBeGreaterThanOrEqual(400);
    expect(wrongKey.status).toBeLessThan(500);
    expect(h.logger.entries.some((e) => e.obj.reason === 'wrong_receive_id')).toBe(true);
    await h.adapter.stop!();
    expect(h.fake.sent).toHaveLength(0);
  });

  it('refuses malformed XML with 400 and keeps serving', async () => {
    h = await startHarness();
    const timestamp = '1700000000';
    const nonce = 'n1';
    const signed = (encrypted: string) => `msg_signature=${wecomSignature(SECRETS.token, timestamp, nonce, encrypted)}&timestamp=${timestamp}&nonce=${nonce}`;
    expect((await h.postRaw(signed('x'), '<xml><Encrypt>x</Encrypt>')).status).toBe(400);
    expect((await h.postRaw(signed('x'), 'not xml at all')).status).toBe(400);
    expect((await h.postRaw(signed('x'), '<xml><ToUserName>c</ToUserName></xml>')).status).toBe(400);
    // Correctly encrypted and signed, but the XML inside is broken or lacks the sender.
    expect((await h.post('<xml><FromUserName>broken')).status).toBe(400);
    expect((await h.post('<xml><Content>no sender</Content></xml>')).status).toBe(400);
    expect(h.logger.entries.filter((e) => e.msg === 'malformed WeCom callback refused')).toHaveLength(5);

    expect((await h.post(question('How many days of leave do I get?'))).status).toBe(200);
    const { texts } = await answerTo(h);
    expect(texts[0]!.content).toContain('25 days');
  });

  it('records a card vote, shows it with update_template_card, and withdraws it on a second tap', async () => {
    h = await startHarness();
    await h.post(question('How many days of leave do I get?'));
    const { card } = await answerTo(h);
    const answerId = card.button_list[0]!.key.slice('up:'.length);
    const click = (eventKey: string, responseCode: string, createTime: number) =>
      h!.post(
        cardEventXml({ corpId: SECRETS.corpId, from: USER, eventKey, taskId: card.task_id, responseCode, agentId: SECRETS.agentId, createTime }),
      );

    expect((await click(`up:${answerId}`, 'rc-click-1', 1_700_000_001)).status).toBe(200);
    await waitFor(() => h!.fake.updates.length === 1);
    const update = h.fake.updates[0]!.body;
    expect(update).toMatchObject({ userids: [USER], agentid: 1000002, response_code: 'rc-click-1' });
    expect(update.template_card.card_type).toBe('button_interaction');
    expect(update.template_card.sub_title_text).toContain('👍');
    expect(update.template_card.button_list.map((b) => b.key)).toEqual([`withdraw:${answerId}`, `down:${answerId}`, `another:${answerId}`]);
    expect(await h.store.feedbackFor(answerId)).toMatchObject([{ platform: 'wecom', userId: USER, value: 1 }]);

    // The same click retried by WeCom is not counted or shown twice.
    await click(`up:${answerId}`, 'rc-click-1', 1_700_000_001);
    await click(`down:${answerId}`, 'rc-click-2', 1_700_000_002);
    await waitFor(() => h!.fake.updates.length === 2);
    expect(h.fake.updates[1]!.body.response_code).toBe('rc-click-2');
    expect(await h.store.feedbackFor(answerId)).toMatchObject([{ value: -1 }]);

    await click(`withdraw:${answerId}`, 'rc-click-3', 1_700_000_003);
    await waitFor(() => h!.fake.updates.length === 3);
    expect(await h.store.feedbackFor(answerId)).toHaveLength(0);
    expect(h.fake.updates[2]!.body.template_card.button_list.map((b) => b.key)).toEqual([`up:${answerId}`, `down:${answerId}`, `another:${answerId}`]);
    await h.adapter.stop!();
    expect(h.fake.updates).toHaveLength(3);
  });

  it('counts a 👍/👎 (or 1/0) reply right after an answer as a vote on it', async () => {
    h = await startHarness();
    const asked = question('How many days of leave do I get?');
    await h.post(asked);
    const first = await answerTo(h);
    const firstId = first.card.button_list[0]!.key.slice(3);
    // A late retry of the question does not count as "another message".
    await h.post(asked, { nonce: 'late-retry' });

    await h.post(question('👎'));
    await waitFor(async () => (await h!.store.feedbackFor(firstId)).length === 1);
    expect(await h.store.feedbackFor(firstId)).toMatchObject([{ value: -1, userId: USER }]);
    await waitFor(() => h!.fake.textsTo(USER).some((t) => t.content.includes('recorded')));
    await h.post(question('1'));
    await waitFor(async () => (await h!.store.feedbackFor(firstId))[0]?.value === 1);

    // Another question moves on: its answer is the one a later vote refers to.
    await h.post(question('And sick days?'));
    const second = await answerTo(h, USER, 2);
    const secondId = second.card.button_list[0]!.key.slice(3);
    await h.post(question('[强]'));
    await waitFor(async () => (await h!.store.feedbackFor(secondId)).length === 1);
    expect(h.answerer.requests.map((r) => r.question)).toEqual(['How many days of leave do I get?', 'And sick days?']);

    // With no answer just before it, "1" is an ordinary message.
    await h.post(question('1', 'lisi'));
    await answerTo(h, 'lisi');
    expect(h.answerer.requests.at(-1)!.question).toBe('1');
  });

  it('splits a long Chinese answer into messages of at most 2048 bytes on character boundaries', async () => {
    const sentence = '员工每年享有二十五天带薪年假，未休完的假期可以顺延到次年三月底。';
    const tokens = Array.from({ length: 120 }, (_, i) => `${i + 1}. ${sentence}\n`);
    h = await startHarness({ answerer: new ScriptedAnswerer(tokens, [SAMPLE_SOURCE]) });
    await h.post(question('年假有多少天？'));
    const { texts } = await answerTo(h);

    const answer = tokens.join('');
    expect(Buffer.byteLength(answer)).toBeGreaterThan(3 * 2048);
    expect(texts.length).toBeGreaterThanOrEqual(4);
    for (const t of texts) {
      expect(Buffer.byteLength(t.content, 'utf8')).toBeLessThanOrEqual(2048);
      expect(t.content).not.toContain('\uFFFD');
    }
    expect(h.fake.oversized).toHaveLength(0);
    const joined = texts.map((t) => t.content).join('');
    expect(joined.startsWith(answer.trim())).toBe(true);
    expect(joined).toContain('[1] Leave — en/leave.md');
    // Pieces break after whole lines, not inside a sentence.
    for (const t of texts.slice(0, -1)) expect(t.content).toMatch(/。\n+$/);
    // The card comes after the last piece.
    expect(h.fake.sent.at(-1)!.body.msgtype).toBe('template_card');
  });

  it('runs /train for admins (not available yet) and refuses it to everyone else', async () => {
    h = await startHarness();
    await h.post(question('/train sft lr=1e-4', 'UADMIN'));
    await h.post(question('/train sft lr=1e-4', USER));
    await waitFor(() => h!.fake.textsTo('UADMIN').length === 1 && h!.fake.textsTo(USER).length === 1);
    expect(h.fake.textsTo('UADMIN')[0]).toMatchObject({ msgtype: 'text' });
    expect(h.fake.textsTo('UADMIN')[0]!.content).toMatch(/not available in this version/);
    expect(h.fake.textsTo(USER)[0]!.content).toMatch(/Sorry, only admins can run \/train sft/);
    expect(h.fake.cardsTo(USER)).toHaveLength(0);
    expect((await h.store.auditDenials(5)).find((d) => d.command === '/train sft')).toMatchObject({ actor: `wecom:${USER}`, count: 1 });
    expect(h.answerer.requests).toHaveLength(0);
  });

  it('tells the member it reads text only when sent an image', async () => {
    h = await startHarness();
    await h.post(imageMessageXml({ corpId: SECRETS.corpId, from: USER, msgId: nextMsgId(), agentId: SECRETS.agentId }));
    await waitFor(() => h!.fake.textsTo(USER).length === 1);
    expect(h.fake.textsTo(USER)[0]!.content).toMatch(/only read text/);
  });
});

describe('WeCom "↻ Another answer"', () => {
  const click = (harness: Harness, o: { from?: string; eventKey: string; taskId: string; responseCode: string; createTime: number }) =>
    harness.post(cardEventXml({ corpId: SECRETS.corpId, from: o.from ?? USER, eventKey: o.eventKey, taskId: o.taskId, responseCode: o.responseCode, agentId: SECRETS.agentId, createTime: o.createTime }));

  it('answers the question again from the card button: a second, different answer with its own card; votes still work', async () => {
    h = await startHarness();
    await h.post(question('How many days of leave do I get?'));
    const first = await answerTo(h);
    const firstId = first.card.button_list[0]!.key.slice('up:'.length);

    h.answerer.tokens = ['Part-timers get ', 'a pro-rata share.'];
    const release = h.answerer.hold();
    const res = await click(h, { eventKey: `another:${firstId}`, taskId: first.card.task_id, responseCode: 'rc-another-1', createTime: 1_700_000_101 });
    // Acknowledged at once with an empty body, before the answer is generated.
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
    // WeCom retries a callback it thinks was slow: the same click is answered once.
    expect((await click(h, { eventKey: `another:${firstId}`, taskId: first.card.task_id, responseCode: 'rc-another-1', createTime: 1_700_000_101 })).status).toBe(200);
    release();

    const second = await answerTo(h, USER, 2);
    expect(second.texts).toHaveLength(2);
    expect(second.texts[1]!.content).toContain('Part-timers get a pro-rata share.');
    expect(second.texts[1]!.content).not.toContain('25 days of leave');
    const secondId = second.card.button_list[0]!.key.slice('up:'.length);
    expect(secondId).not.toBe(firstId);
    expect(second.card.button_list.map((b) => b.key)).toEqual([`up:${secondId}`, `down:${secondId}`, `another:${secondId}`]);
    const request = h.answerer.requests.at(-1)!;
    expect(request.question).toBe('How many days of leave do I get?');
    expect(request.avoid).toEqual(['You get 25 days of leave.']);
    expect(await h.store.getAnswer(secondId)).toMatchObject({ platform: 'wecom', channel: USER, question: 'How many days of leave do I get?', output: 'Part-timers get a pro-rata share.' });

    // The click is no vote and does not use up the card's response code.
    expect(h.fake.updates).toHaveLength(0);
    expect(await h.store.feedbackFor(firstId)).toHaveLength(0);
    // 👎 on the first, 👍 on the second, from their cards.
    await click(h, { eventKey: `down:${firstId}`, taskId: first.card.task_id, responseCode: 'rc-vote-1', createTime: 1_700_000_102 });
    await click(h, { eventKey: `up:${secondId}`, taskId: second.card.task_id, responseCode: 'rc-vote-2', createTime: 1_700_000_103 });
    await waitFor(() => h!.fake.updates.length === 2);
    expect(await h.store.feedbackFor(firstId)).toMatchObject([{ value: -1, userId: USER }]);
    expect(await h.store.feedbackFor(secondId)).toMatchObject([{ value: 1, userId: USER }]);
    await h.adapter.stop!();
    expect(h.answerer.requests).toHaveLength(2);
  });

  it('offers the closest sections on the card after a "don\'t know", and answers from the one tapped', async () => {
    h = await startHarness();
    h.answerer.near = [
      { source: 'zh/leave.md', title: '假期 > 丧假', text: '直系亲属去世给予丧假 3 天。', score: 1.1 },
      { source: 'zh/leave.md', title: '假期 > 病假', text: '病假需在 9:30 前报告主管。', score: 0.9 },
    ];
    h.answerer.tokens = ['抱歉，我在知识库里没有找到相关内容。'];
    await h.post(question('奶奶走了，能请几天假？'));
    const first = await answerTo(h);
    const firstId = first.card.button_list[0]!.key.slice('up:'.length);
    expect(first.card.main_title?.title).toBe('Is the answer in one of these sections?');
    const sections = first.card.button_list.slice(3);
    expect(sections.map((b) => b.text)).toEqual(['丧假', '病假']);
    expect(parseButtonKey(sections[0]!.key)).toEqual({ action: 'section', answerId: firstId, section: { source: 'zh/leave.md', title: '假期 > 丧假' } });

    h.answerer.near = undefined;
    h.answerer.tokens = ['直系亲属去世给予丧假 3 天。'];
    const res = await click(h, { eventKey: sections[0]!.key, taskId: first.card.task_id, responseCode: 'rc-section-1', createTime: 1_700_000_201 });
    expect(res.status).toBe(200);
    const second = await answerTo(h, USER, 2);
    expect(second.texts[1]!.content).toContain('丧假 3 天');
    const request = h.answerer.requests.at(-1)!;
    expect(request.question).toBe('奶奶走了，能请几天假？');
    expect(request.section).toEqual({ source: 'zh/leave.md', title: '假期 > 丧假' });
    // A tampered key is ignored: no third answer.
    await click(h, { eventKey: 'section:bm90LWpzb24', taskId: first.card.task_id, responseCode: 'rc-section-2', createTime: 1_700_000_202 });
    await new Promise((r) => setTimeout(r, 200));
    expect(h.answerer.requests).toHaveLength(2);
    await h.adapter.stop!();
  });

  it('takes "换一个" (or "another", "↻") typed right after an answer as the same request', async () => {
    h = await startHarness();
    await h.post(question('年假有几天？'));
    const first = await answerTo(h);
    const firstId = first.card.button_list[0]!.key.slice('up:'.length);
    h.answerer.tokens = ['另一个答案。'];
    await h.post(question('换一个'));
    const second = await answerTo(h, USER, 2);
    expect(second.texts.at(-1)!.content).toContain('另一个答案。');
    expect(h.answerer.requests.map((r) => r.question)).toEqual(['年假有几天？', '年假有几天？']);
    expect(h.answerer.requests[1]!.avoid).toEqual(['You get 25 days of leave.']);
    const secondId = second.card.button_list[0]!.key.slice('up:'.length);
    expect(secondId).not.toBe(firstId);
    // With no answer just before it, "another" is an ordinary message.
    await h.post(question('another', 'lisi'));
    await answerTo(h, 'lisi');
    expect(h.answerer.requests.at(-1)).toMatchObject({ question: 'another' });
  });

  it('refuses a click on someone else\'s answer or an unknown one with a message, and ignores malformed keys', async () => {
    h = await startHarness();
    await h.post(question('How many days of leave do I get?'));
    const first = await answerTo(h);
    const answerId = first.card.button_list[0]!.key.slice('up:'.length);

    // Another member sends the click for zhangsan's answer (a forged or forwarded card).
    await click(h, { from: 'lisi', eventKey: `another:${answerId}`, taskId: first.card.task_id, responseCode: 'rc-x-1', createTime: 1_700_000_201 });
    await waitFor(() => h!.fake.textsTo('lisi').length === 1);
    expect(h.fake.textsTo('lisi')[0]!.content).toMatch(/not one I gave in this conversation/);
    await click(h, { eventKey: 'another:no-such-answer', taskId: first.card.task_id, responseCode: 'rc-x-2', createTime: 1_700_000_202 });
    await waitFor(() => h!.fake.textsTo(USER).length === 2);
    expect(h.fake.textsTo(USER)[1]!.content).toMatch(/not one I gave in this conversation/);

    // Malformed keys: logged and dropped, nothing sent, and the adapter keeps serving.
    for (const [i, eventKey] of ['another:', `another:${'x'.repeat(600)}`, 'again:abc', ''].entries()) {
      const res = await click(h, { eventKey, taskId: first.card.task_id, responseCode: `rc-bad-${i}`, createTime: 1_700_000_300 + i });
      expect(res.status).toBe(200);
    }
    await waitFor(() => h!.logger.entries.filter((e) => e.msg === 'card click with an unknown button key ignored').length === 4);
    await h.post(question('And sick days?'));
    await answerTo(h, USER, 2);
    expect(h.answerer.requests.map((r) => r.question)).toEqual(['How many days of leave do I get?', 'And sick days?']);
    expect(h.fake.cardsTo('lisi')).toHaveLength(0);
  });
});

describe('WeCom API client behaviour', () => {
  it('fetches a new access token when WeCom says the old one expired, and resends', async () => {
    h = await startHarness();
    await h.post(question('How many days of leave do I get?'));
    await answerTo(h);
    h.fake.expireToken();
    await h.post(question('And sick days?'));
    await answerTo(h, USER, 2);
    expect(h.fake.tokensIssued).toBe(2);
    expect(h.fake.sent.at(-1)!.token).toBe('tok-2');
    expect(h.fake.textsTo(USER)).toHaveLength(2);
  });

  it('logs API errors without crashing and keeps answering; retries when WeCom is busy', async () => {
    h = await startHarness();
    // 60020: the server's IP is not in the app's trusted IPs.
    h.fake.sendErrors.push(60020, 60020);
    await h.post(question('How many days of leave do I get?'));
    await waitFor(() => h!.logger.entries.some((e) => e.level === 'error'));
    expect(JSON.stringify(h.logger.entries)).toContain('60020');

    h.fake.sendErrors.push(-1, 45009);
    await h.post(question('And sick days?'));
    const { texts } = await answerTo(h);
    expect(texts.at(-1)!.content).toContain('25 days');
  });
});

describe('WeCom per-member rate limit', () => {
  it('paces the messages to one member within the limit and leaves other members alone', async () => {
    const sentence = '这是一个很长的回答。';
    const tokens = Array.from({ length: 80 }, () => sentence);
    // The queue's clock stands still and its waits are released by hand: what is sent while a wait
    // is pending went out within the window, whatever the machine's speed.
    let now = 1_000_000;
    const waits: { ms: number; done: () => void }[] = [];
    const sendClock = { now: () => now, sleep: (ms: number) => new Promise<void>((done) => waits.push({ ms, done })) };
    h = await startHarness({ answerer: new ScriptedAnswerer(tokens, []), adapter: { memberLimits: [{ max: 2, windowMs: 250 }], sendClock } });
    await h.post(question('长问题？'));
    // Two pieces went out; the card waits for the window to pass.
    await waitFor(() => waits.length === 1);
    expect(waits[0]!.ms).toBe(250);
    expect(h.fake.textsTo(USER)).toHaveLength(2);
    expect(h.fake.cardsTo(USER)).toHaveLength(0);
    expect(h.logger.entries.some((e) => e.msg?.includes('per-member limit'))).toBe(true);
    // Another member is not held up by that wait.
    await h.post(question('/model', 'lisi'));
    await waitFor(() => h!.fake.textsTo('lisi').length === 1);
    expect(h.fake.cardsTo(USER)).toHaveLength(0);
    expect(waits).toHaveLength(1);
    // The window passes: the card goes out, and nothing else waited.
    now += waits[0]!.ms;
    waits[0]!.done();
    const { texts } = await answerTo(h);
    expect(texts).toHaveLength(2);
    expect(waits).toHaveLength(1);
  });
});

describe('WeCom adapter setup', () => {
  it('refuses to start without its credentials', async () => {
    await expect(createWecomAdapter({ bot: makeBot().bot, logger: recordingLogger(), env: { WECOM_CORP_ID: 'x' } })).rejects.toThrow(
      /WECOM_AGENT_ID, WECOM_SECRET, WECOM_TOKEN, WECOM_ENCODING_AES_KEY/,
    );
  });
});
