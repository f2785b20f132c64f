import { WebSocketServer, type WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { cardActionEvent, isFinal, messageEvent, startHarness, voteButtons, type Harness } from './feishu-harness.ts';
import { decodeFrame, encodeFrame, type Frame } from './ws-frames.ts';

/**
 * FEISHU_MODE=ws against a local server: the SDK's WSClient asks POST /callback/ws/endpoint (on
 * FEISHU_DOMAIN) for a socket URL, connects there, and receives events as protobuf frames, each
 * acknowledged by a frame carrying {code, data?}.
 */

let harness: Harness | undefined;
let wss: WebSocketServer | undefined;
afterEach(async () => {
  await harness?.close();
  for (const client of wss?.clients ?? []) client.terminate();
  await new Promise<void>((resolve) => (wss ? wss.close(() => resolve()) : resolve()));
  harness = undefined;
  wss = undefined;
});

interface FeishuSide {
  socket: () => WebSocket | undefined;
  received: Frame[];
  push(event: Record<string, unknown>): Promise<{ code: number; data?: unknown }>;
}

async function startWs(): Promise<{ h: Harness; side: FeishuSide }> {
  const h = await startHarness({ env: { FEISHU_MODE: 'ws', FEISHU_VERIFICATION_TOKEN: undefined, FEISHU_ENCRYPT_KEY: undefined } });
  harness = h;
  expect(h.adapter.routes).toBeUndefined();
  wss = new WebSocketServer({ server: h.fake.httpServer, path: '/ws' });
  const port = (h.fake.httpServer.address() as { port: number }).port;
  h.fake.wsEndpoint = { url: `ws://127.0.0.1:${port}/ws?device_id=dev-1&service_id=7` };
  let current: WebSocket | undefined;
  const received: Frame[] = [];
  wss.on('connection', (socket) => {
    current = socket;
    socket.on('message', (data: Buffer) => received.push(decodeFrame(new Uint8Array(data))));
  });
  let seq = 0;
  const side: FeishuSide = {
    socket: () => current,
    received,
    async push(event) {
      const messageId = `ws-msg-${++seq}`;
      current!.send(
        encodeFrame({
          seqId: seq,
          logId: 1000 + seq,
          service: 7,
          method: 1,
          headers: { type: 'event', message_id: messageId, sum: '1', seq: '0', trace_id: `trace-${seq}` },
          payload: new TextEncoder().encode(JSON.stringify(event)),
        }),
      );
      await waitFor(() => received.some((f) => f.method === 1 && f.headers.message_id === messageId));
      const ack = received.find((f) => f.method === 1 && f.headers.message_id === messageId)!;
      const body = JSON.parse(new TextDecoder().decode(ack.payload)) as { code: number; data?: string };
      return { code: body.code, ...(body.data ? { data: JSON.parse(Buffer.from(body.data, 'base64').toString('utf8')) } : {}) };
    },
  };
  return { h, side };
}

describe('Feishu long connection (FEISHU_MODE=ws)', () => {
  it('connects through the SDK WSClient, answers a question and takes a card vote', async () => {
    const { h, side } = await startWs();
    await h.adapter.start!();
    await waitFor(() => side.socket() !== undefined);
    // The endpoint was asked with the app credentials, and the client pings on connect.
    expect(h.fake.calls('POST', /\/callback\/ws\/endpoint$/)[0]!.body).toMatchObject({ AppID: h.appId });
    await waitFor(() => side.received.some((f) => f.method === 0 && f.headers.type === 'ping'));
    expect(side.received.find((f) => f.headers.type === 'ping')!.service).toBe(7);

    const question = messageEvent({ text: 'How many days of leave do I get?' });
    const ack = await side.push(question);
    expect(ack.code).toBe(200);
    const questionId = ((question.event as Record<string, unknown>).message as { message_id: string }).message_id;
    await waitFor(() => isFinal(h.fake.cardFor(questionId)?.states.at(-1)));
    const posted = h.fake.cardFor(questionId)!;

    // Redelivered over the socket: acknowledged, not answered again.
    expect((await side.push(question)).code).toBe(200);

    const [up] = voteButtons(posted.states.at(-1));
    const vote = await side.push(cardActionEvent(posted.messageId, up!.value));
    expect(vote.code).toBe(200);
    expect(vote.data).toMatchObject({ toast: { type: 'success' }, card: { type: 'raw' } });
    expect(await h.store.feedbackCounts()).toEqual({ up: 1, down: 0 });
    expect(h.fake.cards).toHaveLength(1);
  });

  it('fails start() with a clear error when Feishu refuses the connection', async () => {
    const { h } = await startWs();
    h.fake.wsEndpoint = undefined; // the fake then answers code 403
    await expect(h.adapter.start!()).rejects.toThrow(/long connection failed/);
  });
});
