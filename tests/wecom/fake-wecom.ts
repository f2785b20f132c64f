import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SentMessage {
  token: string;
  /** When the fake received it (ms since epoch). */
  at: number;
  body: {
    touser: string;
    agentid: number;
    msgtype: string;
    text?: { content: string };
    markdown?: { content: string };
    image?: { media_id: string };
    template_card?: {
      card_type: string;
      task_id: string;
      sub_title_text?: string;
      main_title?: { title: string; desc?: string };
      button_list: { text: string; key: string; style?: number }[];
    };
  };
}

export interface CardUpdate {
  token: string;
  body: {
    userids: string[];
    agentid: number;
    response_code: string;
    template_card: NonNullable<SentMessage['body']['template_card']>;
  };
}

/**
 * A local stand-in for qyapi.weixin.qq.com: gettoken, message/send and
 * message/update_template_card, with WeCom's error codes for bad or expired tokens and its
 * 2048-byte limit on text and markdown content.
 */
export class FakeWecom {
  readonly tokenRequests: URLSearchParams[] = [];
  readonly sent: SentMessage[] = [];
  /** Temporary media uploaded with media/upload: the file part of the multipart body. */
  readonly media: { mediaId: string; type: string; filename: string; bytes: Buffer }[] = [];
  readonly updates: CardUpdate[] = [];
  /** Error codes to answer the next message/send calls with, in order. */
  readonly sendErrors: number[] = [];
  /** Contents over the byte limit (WeCom would silently cut them). */
  readonly oversized: string[] = [];
  private server!: Server;
  private issued = 0;
  private validToken: string | undefined;
  private expired = new Set<string>();
  private responseCodes = 0;
  url = '';

  constructor(
    private readonly corpId: string,
    private readonly secret: string,
  ) {}

  static async start(corpId: string, secret: string): Promise<FakeWecom> {
    const fake = new FakeWecom(corpId, secret);
    fake.server = createServer((req, res) => void fake.route(req, res));
    await new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', r));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** Makes the current token expired, as WeCom does after expires_in. */
  expireToken(): void {
    if (this.validToken) this.expired.add(this.validToken);
    this.validToken = undefined;
  }

  get tokensIssued(): number {
    return this.issued;
  }

  /** The text and markdown contents sent to a member, in order. */
  textsTo(user: string): { msgtype: string; content: string }[] {
    return this.sent
      .filter((s) => s.body.touser === user && (s.body.msgtype === 'text' || s.body.msgtype === 'markdown'))
      .map((s) => ({ msgtype: s.body.msgtype, content: (s.body.text ?? s.body.markdown)!.content }));
  }

  cardsTo(user: string): NonNullable<SentMessage['body']['template_card']>[] {
    return this.sent.filter((s) => s.body.touser === user && s.body.msgtype === 'template_card').map((s) => s.body.template_card!);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const reply = (body: object) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && url.pathname === '/cgi-bin/gettoken') {
      this.tokenRequests.push(url.searchParams);
      if (url.searchParams.get('corpid') !== this.corpId) return reply({ errcode: 40013, errmsg: 'invalid corpid' });
      if (url.searchParams.get('corpsecret') !== this.secret) return reply({ errcode: 40001, errmsg: 'invalid credential' });
      this.validToken = `tok-${++this.issued}`;
      return reply({ errcode: 0, errmsg: 'ok', access_token: this.validToken, expires_in: 7200 });
    }
    if (req.method !== 'POST') return reply({ errcode: 404, errmsg: 'unknown api' });
    const token = url.searchParams.get('access_token') ?? '';
    if (this.expired.has(token)) return reply({ errcode: 42001, errmsg: 'access_token expired' });
    if (token !== this.validToken) return reply({ errcode: 40014, errmsg: 'invalid access_token' });
    if (url.pathname === '/cgi-bin/media/upload') {
      const part = mediaPart(Buffer.concat(chunks), req.headers['content-type'] ?? '');
      const type = url.searchParams.get('type') ?? '';
      if (!part || !['image', 'voice', 'video', 'file'].includes(type) || part.bytes.length < 5) return reply({ errcode: 40004, errmsg: 'invalid media type or empty media' });
      const mediaId = `media-${this.media.length + 1}`;
      this.media.push({ mediaId, type, ...part });
      return reply({ errcode: 0, errmsg: 'ok', type, media_id: mediaId, created_at: String(Math.floor(Date.now() / 1000)) });
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (url.pathname === '/cgi-bin/message/send') {
      if (body.msgtype === 'image' && !this.media.some((m) => m.mediaId === body.image?.media_id)) return reply({ errcode: 40007, errmsg: 'invalid media_id' });
      const error = this.sendErrors.shift();
      if (error !== undefined) return reply({ errcode: error, errmsg: `simulated error ${error}` });
      const content: string | undefined = body.text?.content ?? body.markdown?.content;
      if (content !== undefined && Buffer.byteLength(content, 'utf8') > 2048) this.oversized.push(content);
      this.sent.push({ token, at: Date.now(), body });
      return reply({
        errcode: 0,
        errmsg: 'ok',
        invaliduser: '',
        msgid: `msg-${this.sent.length}`,
        ...(body.msgtype === 'template_card' ? { response_code: `send-rc-${++this.responseCodes}` } : {}),
      });
    }
    if (url.pathname === '/cgi-bin/message/update_template_card') {
      this.updates.push({ token, body });
      return reply({ errcode: 0, errmsg: 'ok', invaliduser: [] });
    }
    return reply({ errcode: 404, errmsg: 'unknown api' });
  }
}

/** The `media` part of a multipart/form-data upload, as WeCom's media/upload expects it. */
function mediaPart(body: Buffer, contentType: string): { filename: string; bytes: Buffer } | undefined {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  if (!contentType.startsWith('multipart/form-data') || !boundary) return undefined;
  const marker = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const start = body.indexOf(marker);
  const headersEnd = body.indexOf('\r\n\r\n', start);
  const end = body.indexOf(Buffer.concat([Buffer.from('\r\n'), marker]), headersEnd);
  if (start < 0 || headersEnd < 0 || end < 0) return undefined;
  const headers = body.subarray(start, headersEnd).toString('utf8');
  if (!/name="media"/.test(headers)) return undefined;
  return { filename: /filename="([^"]*)"/.exec(headers)?.[1] ?? '', bytes: Buffer.from(body.subarray(headersEnd + 4, end)) };
}
