import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local server playing the parts of the Feishu Open API the adapter uses, answering with the
 * shapes (and error codes) of Feishu's docs, and recording every request for assertions.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown> | undefined;
}

export interface Fault {
  method: string;
  path: RegExp;
  times: number;
  status: number;
  body: Record<string, unknown>;
}

export interface PostedCard {
  /** The message the bot replied to. */
  questionId: string;
  /** The id Feishu gave the bot's reply. */
  messageId: string;
  replyInThread: boolean;
  uuid: string | undefined;
  /** The reply's card, then every PATCHed version, in order. */
  states: Record<string, unknown>[];
}

/** An image the bot uploaded (im/v1/images) and where it was sent. */
export interface UploadedImage {
  imageKey: string;
  imageType: string;
  bytes: Buffer;
  /** The messages an image message with this key replied to. */
  repliedTo: { questionId: string; messageId: string; replyInThread: boolean }[];
}

export const MAX_CARD_CONTENT_BYTES = 30 * 1024;

export class FakeFeishu {
  readonly requests: RecordedRequest[] = [];
  /** How many of `requests` have been answered (a stalled one only after its stall). */
  answered = 0;
  readonly cards: PostedCard[] = [];
  readonly images: UploadedImage[] = [];
  readonly botOpenId = 'ou_bot_0000000001';
  url = '';
  /** What POST /callback/ws/endpoint hands out (the long-connection test sets it). */
  wsEndpoint: { url: string } | undefined;
  private readonly validTokens = new Set<string>();
  private issued = 0;
  private readonly faults: Fault[] = [];
  private readonly stalls: { method: string; path: RegExp; times: number; ms: number }[] = [];
  private readonly server: Server;

  private constructor(
    readonly appId: string,
    readonly appSecret: string,
  ) {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString('utf8');
        let body: Record<string, unknown> | undefined;
        try {
          body = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
        } catch {
          body = undefined;
        }
        const path = (req.url ?? '/').split('?')[0]!;
        if (path === '/open-apis/im/v1/images') body = multipartFields(raw, req.headers['content-type'] ?? '');
        const request: RecordedRequest = { method: req.method ?? 'GET', path, headers: req.headers, body };
        this.requests.push(request);
        const stall = this.stalls.find((f) => f.times > 0 && f.method === request.method && f.path.test(request.path));
        if (stall) stall.times--;
        setTimeout(() => {
          const [status, answer] = this.answer(request);
          res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
          res.end(JSON.stringify(answer));
          this.answered++;
        }, stall?.ms ?? 0);
      });
    });
  }

  static async start(appId: string, appSecret: string): Promise<FakeFeishu> {
    const fake = new FakeFeishu(appId, appSecret);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  get httpServer(): Server {
    return this.server;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** The next `times` matching requests get this answer instead of the normal one. */
  fail(method: string, path: RegExp, times: number, status: number, body: Record<string, unknown>): void {
    this.faults.push({ method, path, times, status, body });
  }

  /** The next `times` matching requests are answered (normally) only after `ms`. */
  stall(method: string, path: RegExp, times: number, ms: number): void {
    this.stalls.push({ method, path, times, ms });
  }

  /** Feishu revoked every token issued so far (they now fail with 99991663). */
  revokeTokens(): void {
    this.validTokens.clear();
  }

  calls(method: string, path: RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && path.test(r.path));
  }

  cardFor(questionId: string): PostedCard | undefined {
    return this.cards.find((c) => c.questionId === questionId);
  }

  private answer(req: RecordedRequest): [number, Record<string, unknown>] {
    const fault = this.faults.find((f) => f.times > 0 && f.method === req.method && f.path.test(req.path));
    if (fault) {
      fault.times--;
      return [fault.status, fault.body];
    }
    if (req.method === 'POST' && req.path === '/open-apis/auth/v3/tenant_access_token/internal') {
      if (req.body?.app_id !== this.appId || req.body?.app_secret !== this.appSecret) {
        return [200, { code: 10014, msg: 'app secret invalid' }];
      }
      const token = `t-fake-${++this.issued}`;
      this.validTokens.add(token);
      return [200, { code: 0, msg: 'ok', tenant_access_token: token, expire: 7200 }];
    }
    if (req.method === 'POST' && req.path === '/callback/ws/endpoint') {
      if (req.body?.AppID !== this.appId || req.body?.AppSecret !== this.appSecret || !this.wsEndpoint) {
        return [200, { code: 403, msg: 'forbidden', data: {} }];
      }
      return [
        200,
        {
          code: 0,
          msg: 'ok',
          data: {
            URL: this.wsEndpoint.url,
            ClientConfig: { PingInterval: 120, ReconnectCount: -1, ReconnectInterval: 120, ReconnectNonce: 30 },
          },
        },
      ];
    }
    if (!req.path.startsWith('/open-apis/')) return [404, { code: 404, msg: 'not found' }];

    const auth = req.headers.authorization ?? '';
    if (!auth.startsWith('Bearer ') || !this.validTokens.has(auth.slice(7))) {
      return [400, { code: 99991663, msg: 'Invalid access token for authorization. Please make a request with token attached.' }];
    }
    if (req.method === 'GET' && req.path === '/open-apis/bot/v3/info') {
      return [200, { code: 0, msg: 'ok', bot: { activate_status: 2, app_name: 'teamllm', avatar_url: '', ip_white_list: [], open_id: this.botOpenId } }];
    }
    if (req.method === 'POST' && req.path === '/open-apis/im/v1/images') {
      const image = req.body?.image;
      if (req.body?.image_type !== 'message' || !Buffer.isBuffer(image) || image.length === 0) return [400, { code: 234001, msg: 'invalid image' }];
      const imageKey = `img_v3_fake_${this.images.length + 1}`;
      this.images.push({ imageKey, imageType: 'message', bytes: image, repliedTo: [] });
      return [200, { code: 0, msg: 'success', data: { image_key: imageKey } }];
    }
    const reply = /^\/open-apis\/im\/v1\/messages\/([^/]+)\/reply$/.exec(req.path);
    if (req.method === 'POST' && reply) return this.reply(reply[1]!, req.body ?? {});
    const patch = /^\/open-apis\/im\/v1\/messages\/([^/]+)$/.exec(req.path);
    if (req.method === 'PATCH' && patch) return this.patch(patch[1]!, req.body ?? {});
    return [404, { code: 404, msg: `no route ${req.method} ${req.path}` }];
  }

  private reply(questionId: string, body: Record<string, unknown>): [number, Record<string, unknown>] {
    if (body.msg_type === 'image') {
      const key = typeof body.content === 'string' ? (JSON.parse(body.content) as { image_key?: string }).image_key : undefined;
      const image = this.images.find((i) => i.imageKey === key);
      if (!image) return [400, { code: 230001, msg: 'invalid image_key' }];
      const messageId = `om_bot_image_${this.images.reduce((n, i) => n + i.repliedTo.length, 0) + 1}`;
      image.repliedTo.push({ questionId, messageId, replyInThread: body.reply_in_thread === true });
      return [200, okReply(messageId, questionId)];
    }
    if (body.msg_type !== 'interactive' || typeof body.content !== 'string') return [400, { code: 230001, msg: 'invalid message content' }];
    const card = parseCard(body.content);
    if (!card) return [400, { code: 230001, msg: 'content is not a JSON card' }];
    if (Buffer.byteLength(body.content) > MAX_CARD_CONTENT_BYTES) return [400, { code: 230025, msg: 'message content too long' }];
    const uuid = typeof body.uuid === 'string' ? body.uuid : undefined;
    const same = uuid ? this.cards.find((c) => c.uuid === uuid) : undefined;
    if (same) return [200, okReply(same.messageId, questionId)];
    const messageId = `om_bot_reply_${this.cards.length + 1}`;
    this.cards.push({ questionId, messageId, replyInThread: body.reply_in_thread === true, uuid, states: [card] });
    return [200, okReply(messageId, questionId)];
  }

  private patch(messageId: string, body: Record<string, unknown>): [number, Record<string, unknown>] {
    const posted = this.cards.find((c) => c.messageId === messageId);
    if (!posted) return [400, { code: 230011, msg: 'the message is not found or was recalled' }];
    if (typeof body.content !== 'string') return [400, { code: 230001, msg: 'invalid message content' }];
    const card = parseCard(body.content);
    if (!card) return [400, { code: 230001, msg: 'content is not a JSON card' }];
    if ((card.config as { update_multi?: boolean } | undefined)?.update_multi !== true) {
      return [400, { code: 230099, msg: 'only cards sent with update_multi can be updated for everyone' }];
    }
    if (Buffer.byteLength(body.content) > MAX_CARD_CONTENT_BYTES) return [400, { code: 230025, msg: 'message content too long' }];
    posted.states.push(card);
    return [200, { code: 0, msg: 'success', data: {} }];
  }
}

function okReply(messageId: string, questionId: string): Record<string, unknown> {
  return { code: 0, msg: 'success', data: { message_id: messageId, parent_id: questionId, msg_type: 'interactive' } };
}

function parseCard(content: string): Record<string, unknown> | undefined {
  try {
    const card: unknown = JSON.parse(content);
    return typeof card === 'object' && card !== null ? (card as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The fields of a multipart/form-data body: file parts as Buffers, the others as strings. */
function multipartFields(body: Buffer, contentType: string): Record<string, unknown> {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  if (!boundary) return {};
  const marker = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const fields: Record<string, unknown> = {};
  let at = body.indexOf(marker);
  while (at >= 0) {
    const headersStart = at + marker.length + 2;
    const headersEnd = body.indexOf('\r\n\r\n', headersStart);
    const next = body.indexOf(marker, headersEnd);
    if (headersEnd < 0 || next < 0) break;
    const headers = body.subarray(headersStart, headersEnd).toString('utf8');
    const value = body.subarray(headersEnd + 4, next - 2);
    const name = /name="([^"]+)"/.exec(headers)?.[1];
    if (name) fields[name] = /filename=|content-type:/i.test(headers) ? Buffer.from(value) : value.toString('utf8');
    at = next;
  }
  return fields;
}
