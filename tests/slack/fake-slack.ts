import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/** One Web API call as the fake platform received it. */
export interface ApiCall {
  method: string;
  args: Record<string, unknown>;
  authorization: string | undefined;
  at: number;
  /** The HTTP status and body the fake answered with. */
  status: number;
  reply?: Record<string, unknown>;
}

interface ScriptedReply {
  method: string;
  when?: (args: Record<string, unknown>) => boolean;
  status?: number;
  headers?: Record<string, string>;
  body: Record<string, unknown>;
}

/**
 * A local stand-in for Slack: the Web API under /api/<method> (recording every call), response
 * URLs under /respond/<id>, and the Socket Mode WebSocket endpoint that apps.connections.open
 * hands out.
 */
export class FakeSlack {
  readonly calls: ApiCall[] = [];
  /** JSON bodies posted to response URLs, with the URL id. */
  readonly responses: { id: string; body: Record<string, unknown> }[] = [];
  /** File bytes posted to the upload URLs that files.getUploadURLExternal handed out. */
  readonly uploads: { fileId: string; bytes: Buffer }[] = [];
  /** Frames the Socket Mode client sent (acks), parsed. */
  readonly socketFrames: Record<string, unknown>[] = [];
  readonly sockets: WebSocket[] = [];
  private scripted: ScriptedReply[] = [];
  private tsCounter = 0;
  private readonly wss: WebSocketServer;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {
    this.wss = new WebSocketServer({ server, path: '/link/' });
    this.wss.on('connection', (socket) => {
      this.sockets.push(socket);
      socket.on('message', (data) => this.socketFrames.push(JSON.parse(String(data)) as Record<string, unknown>));
      socket.send(JSON.stringify({ type: 'hello', num_connections: 1, debug_info: { host: 'fake-slack', build_number: 1, approximate_connection_time: 18060 }, connection_info: { app_id: 'A1' } }));
    });
  }

  static async start(): Promise<FakeSlack> {
    let fake: FakeSlack | undefined;
    const server = createServer((req, res) => {
      void fake!.route(req).then(({ status, headers, body }) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fake = new FakeSlack(server, (server.address() as AddressInfo).port);
    return fake;
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api/`;
  }

  responseUrl(id: string): string {
    return `http://127.0.0.1:${this.port}/respond/${id}`;
  }

  /** Answers the next matching call to `method` with `reply` instead of the default. */
  failNext(method: string, reply: Omit<ScriptedReply, 'method'>): void {
    this.scripted.push({ method, ...reply });
  }

  callsTo(method: string): ApiCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** Sends a Socket Mode frame to every connected client. */
  pushFrame(frame: Record<string, unknown>): void {
    for (const socket of this.sockets) if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(frame));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async route(req: IncomingMessage): Promise<{ status: number; headers?: Record<string, string>; body: unknown }> {
    const bytes = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => resolve(Buffer.concat(chunks)));
    });
    const raw = bytes.toString('utf8');
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname.startsWith('/upload/')) {
      this.uploads.push({ fileId: url.pathname.slice('/upload/'.length), bytes: uploadedFile(bytes, req.headers['content-type'] ?? '') });
      return { status: 200, body: { ok: true } };
    }
    if (url.pathname.startsWith('/respond/')) {
      this.responses.push({ id: url.pathname.slice('/respond/'.length), body: JSON.parse(raw) as Record<string, unknown> });
      return { status: 200, body: { ok: true } };
    }
    const method = url.pathname.replace(/^\/api\//, '');
    const args = parseArgs(raw, req.headers['content-type'] ?? '');
    const call: ApiCall = { method, args, authorization: req.headers.authorization, at: Date.now(), status: 200 };
    this.calls.push(call);
    const at = this.scripted.findIndex((s) => s.method === method && (!s.when || s.when(args)));
    if (at >= 0) {
      const [reply] = this.scripted.splice(at, 1);
      call.status = reply!.status ?? 200;
      call.reply = reply!.body;
      return { status: call.status, ...(reply!.headers ? { headers: reply!.headers } : {}), body: reply!.body };
    }
    call.reply = this.defaultReply(method, args);
    return { status: 200, body: call.reply };
  }

  private defaultReply(method: string, args: Record<string, unknown>): Record<string, unknown> {
    switch (method) {
      case 'auth.test':
        return { ok: true, url: 'https://acme.slack.com/', team: 'Acme', user: 'teamllm', team_id: 'T1', user_id: 'UBOT', bot_id: 'BBOT' };
      case 'chat.postMessage': {
        const ts = `1700000000.${String(++this.tsCounter).padStart(6, '0')}`;
        return { ok: true, channel: args.channel, ts, message: { type: 'message', user: 'UBOT', bot_id: 'BBOT', text: args.text, ts } };
      }
      case 'chat.update':
        return { ok: true, channel: args.channel, ts: args.ts, text: args.text };
      case 'chat.delete':
        return { ok: true, channel: args.channel, ts: args.ts };
      case 'files.getUploadURLExternal': {
        const fileId = `F${String(this.callsTo('files.getUploadURLExternal').length).padStart(6, '0')}`;
        return { ok: true, upload_url: `http://127.0.0.1:${this.port}/upload/${fileId}`, file_id: fileId };
      }
      case 'files.completeUploadExternal': {
        const files = (typeof args.files === 'string' ? JSON.parse(args.files) : args.files) as { id: string; title?: string }[];
        return { ok: true, files: files.map((f) => ({ id: f.id, title: f.title ?? '' })) };
      }
      case 'apps.connections.open':
        return { ok: true, url: `ws://127.0.0.1:${this.port}/link/?ticket=t${this.callsTo('apps.connections.open').length}` };
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }
}

/** The file in an upload: the raw body, or the first part of a multipart/form-data body. */
function uploadedFile(body: Buffer, contentType: string): Buffer {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  if (!contentType.startsWith('multipart/form-data') || !boundary) return body;
  const marker = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const start = body.indexOf(marker);
  const headersEnd = body.indexOf('\r\n\r\n', start);
  const end = body.indexOf(Buffer.concat([Buffer.from('\r\n'), marker]), headersEnd);
  return body.subarray(headersEnd + 4, end);
}

/** The WebClient posts form fields with nested values (blocks) as JSON strings. */
function parseArgs(raw: string, contentType: string): Record<string, unknown> {
  if (!raw) return {};
  if (contentType.startsWith('application/json')) return JSON.parse(raw) as Record<string, unknown>;
  const args: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    args[key] = key === 'blocks' || key === 'attachments' ? JSON.parse(value) : value;
  }
  return args;
}
