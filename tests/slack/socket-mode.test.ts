import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { appMention, eventCallback, slashCommand, startHarness, voteClick, type Harness } from './harness.ts';

let h: Harness;
let envelopes = 0;

beforeAll(async () => {
  // A shorter ping timeout makes the client's reconnect back-off (a multiple of it) short too.
  h = await startHarness({ socketMode: true, adapter: { socketPingTimeoutMs: 1000 } });
  await h.adapter.start!();
});

afterAll(async () => {
  await h.close();
});

/**
 * Sends one Socket Mode envelope and waits until the client acknowledges it by envelope_id. Like
 * Slack, it sends the envelope again while unacknowledged (say the connection was being replaced
 * after a missed pong on a busy machine); the bot's dedupe makes that harmless.
 */
async function deliver(type: string, payload: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<void> {
  const envelopeId = `env-${++envelopes}`;
  const acked = () => h.slack.socketFrames.some((f) => f.envelope_id === envelopeId);
  for (let attempt = 0; attempt < 10 && !acked(); attempt++) {
    h.slack.pushFrame({ envelope_id: envelopeId, type, payload, accepts_response_payload: type !== 'events_api', ...extra });
    await waitFor(acked, 1000).catch(() => {});
  }
  expect(acked()).toBe(true);
}

const finalFor = (ts: string) =>
  h.slack.callsTo('chat.update').find((c) => c.args.ts === ts && JSON.stringify(c.args.blocks ?? []).includes('teamllm_votes') && c.reply?.ok === true);

describe('Slack Socket Mode', () => {
  it('opens the connection with the app token at the URL apps.connections.open returns', () => {
    expect(h.adapter.routes).toBeUndefined();
    const open = h.slack.callsTo('apps.connections.open');
    expect(open.length).toBeGreaterThanOrEqual(1);
    expect(open[0]!.authorization).toBe('Bearer xapp-test-token');
    expect(h.slack.sockets.length).toBe(open.length);
  });

  it('acknowledges an events_api envelope and answers in the thread, once despite a retried envelope', async () => {
    const posts = h.slack.callsTo('chat.postMessage').length;
    const mention = appMention('<@UBOT> How many days of leave do I get?', { user: 'USOCK' });
    const envelope = eventCallback(mention);
    await deliver('events_api', envelope, { retry_attempt: 0, retry_reason: '' });
    await waitFor(() => h.slack.callsTo('chat.postMessage').length > posts);
    const placeholder = h.slack.callsTo('chat.postMessage')[posts]!;
    expect(placeholder.args).toMatchObject({ channel: 'C1', thread_ts: mention.ts });
    const ts = placeholder.reply!.ts as string;
    await waitFor(() => finalFor(ts) !== undefined);

    await deliver('events_api', envelope, { retry_attempt: 1, retry_reason: 'timeout' });
    // Another, different question afterwards is answered: proof the retry was processed and dropped.
    await deliver('events_api', eventCallback(appMention('<@UBOT> second question', { user: 'USOCK' })));
    await waitFor(() => h.answerer.requests.some((r) => r.question === 'second question'));
    expect(h.answerer.requests.filter((r) => r.question === 'How many days of leave do I get?')).toHaveLength(1);
  });

  it('takes slash commands and button clicks over the socket', async () => {
    const command = slashCommand(h.slack, '/train', 'sft', 'UADMIN');
    await deliver('slash_commands', command);
    await waitFor(() => h.slack.responses.some((r) => r.id === command.trigger_id));
    expect(h.slack.responses.find((r) => r.id === command.trigger_id)!.body.text).toMatch(/not available in this version/);

    const posts = h.slack.callsTo('chat.postMessage').length;
    await deliver('events_api', eventCallback(appMention('<@UBOT> rate this', { user: 'USOCK2' })));
    await waitFor(() => h.slack.callsTo('chat.postMessage').length > posts);
    const ts = h.slack.callsTo('chat.postMessage')[posts]!.reply!.ts as string;
    await waitFor(() => finalFor(ts) !== undefined);
    const record = (await h.store.findAnswerByReply('slack', ts))!;
    const final = finalFor(ts)!;
    await deliver('interactive', voteClick(h.slack, { actionId: 'teamllm_vote_up', answerId: record.id, userId: 'U9', channel: 'C1', message: { ts, text: final.args.text as string, blocks: final.args.blocks as unknown[] } }));
    await waitFor(async () => (await h.store.feedbackFor(record.id)).length === 1);
    expect(await h.store.feedbackFor(record.id)).toMatchObject([{ userId: 'U9', value: 1 }]);
  });

  it('reconnects after a disconnect frame and keeps answering', async () => {
    const opened = h.slack.callsTo('apps.connections.open').length;
    const sockets = h.slack.sockets.length;
    h.slack.pushFrame({ type: 'disconnect', reason: 'refresh_requested', debug_info: { host: 'fake-slack' } });
    await waitFor(() => h.slack.callsTo('apps.connections.open').length > opened && h.slack.sockets.length > sockets, 10_000);
    await waitFor(() => h.slack.sockets.at(-1)!.readyState === h.slack.sockets.at(-1)!.OPEN);
    const posts = h.slack.callsTo('chat.postMessage').length;
    await deliver('events_api', eventCallback(appMention('<@UBOT> still there?', { user: 'USOCK3' })));
    await waitFor(() => h.slack.callsTo('chat.postMessage').length > posts);
  });

  it('never logs the app token or the bot token', () => {
    const all = JSON.stringify(h.logger.entries, (_k, v: unknown) => (v instanceof Error ? { message: v.message, stack: v.stack } : v));
    expect(all).not.toContain('xapp-test-token');
    expect(all).not.toContain('xoxb-test-token');
  });
});
