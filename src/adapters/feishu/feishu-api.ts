import type { Cache, Client } from '@larksuiteoapi/node-sdk';
import type { Logger } from '../../core/index.ts';

/** A platform API failure reduced to what is safe to log (no request headers, so no token). */
export class FeishuApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: number,
  ) {
    super(message);
    this.name = 'FeishuApiError';
  }
}

/** Feishu's "slow down" answers: the generic gateway limit and the IM send/update limit. */
const RATE_LIMIT_CODES = new Set([99991400, 230020]);
/** The token was revoked or expired early: fetch a fresh one and try again. */
const BAD_TOKEN_CODES = new Set([99991661, 99991663, 99991668]);

export interface RetryPolicy {
  attempts: number;
  baseDelayMs: number;
  /** Per attempt: the SDK's HTTP client has no timeout of its own, and a hung call would stall an answer. */
  timeoutMs?: number;
}

/**
 * The SDK's token cache, owned by this adapter so that a token Feishu rejects can be dropped
 * (the SDK's shared default cache would keep serving it until its own expiry).
 */
export class TokenCache implements Cache {
  private readonly values = new Map<string, { value: unknown; expiresAt?: number }>();

  // The SDK types its keys with the `Symbol` wrapper type.
  async set(key: string | Symbol, value: unknown, expiresAt?: number, options?: { namespace?: string }): Promise<boolean> {
    this.values.set(this.key(key, options?.namespace), { value, ...(expiresAt ? { expiresAt } : {}) });
    return true;
  }

  async get(key: string | Symbol, options?: { namespace?: string }): Promise<unknown> {
    const entry = this.values.get(this.key(key, options?.namespace));
    if (!entry || (entry.expiresAt !== undefined && entry.expiresAt <= Date.now())) return undefined;
    return entry.value;
  }

  clear(): void {
    this.values.clear();
  }

  private key(key: string | Symbol, namespace?: string): string {
    return `${namespace ?? ''}/${String(key)}`;
  }
}

interface ApiResult {
  code?: number;
  msg?: string;
}

/**
 * The few Open API calls the adapter makes, through the SDK client, with retries on rate limits,
 * server errors and network failures, and one token refresh when Feishu rejects the token.
 */
export class FeishuApi {
  private botOpenId: Promise<string> | undefined;

  constructor(
    private readonly client: Client,
    private readonly tokens: TokenCache,
    private readonly logger: Logger,
    private readonly retry: RetryPolicy = { attempts: 3, baseDelayMs: 400, timeoutMs: 15_000 },
  ) {}

  /** The bot's own open_id, to recognise its @-mentions in groups. Cached; a failure is retried next time. */
  ownOpenId(): Promise<string> {
    this.botOpenId ??= this.call('bot info', () =>
      this.client.request<ApiResult & { bot?: { open_id?: string } }>({ method: 'GET', url: '/open-apis/bot/v3/info' }),
    ).then((res) => {
      const openId = res.bot?.open_id;
      if (!openId) throw new FeishuApiError('bot info has no open_id (is the bot capability enabled?)');
      return openId;
    });
    this.botOpenId.catch(() => (this.botOpenId = undefined));
    return this.botOpenId;
  }

  /**
   * Replies to `messageId` with an interactive card and returns the new message's id.
   * `uuid` makes the call idempotent on Feishu's side, so a retried request cannot post twice.
   */
  async replyCard(messageId: string, card: object, options: { inThread: boolean; uuid: string }): Promise<string> {
    const res = await this.call('reply', () =>
      this.client.im.v1.message.reply({
        path: { message_id: messageId },
        data: {
          msg_type: 'interactive',
          content: JSON.stringify(card),
          reply_in_thread: options.inThread,
          uuid: options.uuid,
        },
      }),
    );
    const id = res.data?.message_id;
    if (!id) throw new FeishuApiError('reply returned no message_id');
    return id;
  }

  /** Uploads a PNG for an image message (POST im/v1/images, image_type "message"); returns its image_key. */
  async uploadImage(png: Buffer): Promise<string> {
    const res = await this.call('image upload', async () => {
      // The SDK hands back the response body ({code, msg, data: {image_key}}), though its types
      // promise the unwrapped `data`: accept both.
      const out = (await this.client.im.v1.image.create({ data: { image_type: 'message', image: png } })) as
        | { image_key?: string; code?: number; msg?: string; data?: { image_key?: string } }
        | null;
      const key = out?.image_key ?? out?.data?.image_key;
      return { code: out?.code ?? 0, ...(out?.msg ? { msg: out.msg } : {}), ...(key ? { data: { image_key: key } } : {}) } as ApiResult & { data?: { image_key?: string } };
    });
    const key = res.data?.image_key;
    if (!key) throw new FeishuApiError('image upload returned no image_key');
    return key;
  }

  /** Replies to `messageId` with an image message (an image_key from uploadImage). */
  async replyImage(messageId: string, imageKey: string, options: { inThread: boolean; uuid: string }): Promise<string> {
    const res = await this.call('reply image', () =>
      this.client.im.v1.message.reply({
        path: { message_id: messageId },
        data: { msg_type: 'image', content: JSON.stringify({ image_key: imageKey }), reply_in_thread: options.inThread, uuid: options.uuid },
      }),
    );
    const id = res.data?.message_id;
    if (!id) throw new FeishuApiError('reply returned no message_id');
    return id;
  }

  /** Replaces the content of a card the bot sent (it must have been sent with update_multi). */
  async patchCard(messageId: string, card: object): Promise<void> {
    await this.call('patch', () =>
      this.client.im.v1.message.patch({ path: { message_id: messageId }, data: { content: JSON.stringify(card) } }),
    );
  }

  private async call<T extends ApiResult>(what: string, request: () => Promise<T>): Promise<T> {
    let tokenRefreshed = false;
    for (let attempt = 1; ; attempt++) {
      let error: FeishuApiError;
      try {
        const res = await withTimeout(request(), this.retry.timeoutMs ?? 15_000, what);
        if (res.code === undefined || res.code === 0) return res;
        error = new FeishuApiError(`${what} failed: code ${res.code} ${res.msg ?? ''}`.trim(), 200, res.code);
      } catch (err) {
        error = toApiError(what, err);
      }
      if (error.code !== undefined && BAD_TOKEN_CODES.has(error.code) && !tokenRefreshed) {
        tokenRefreshed = true;
        this.tokens.clear();
        this.logger.warn({ call: what, code: error.code }, 'Feishu rejected the tenant access token; fetching a new one');
        attempt--;
        continue;
      }
      if (!isRetryable(error) || attempt >= this.retry.attempts) throw error;
      const delay = this.retry.baseDelayMs * 2 ** (attempt - 1);
      this.logger.warn({ call: what, status: error.status, code: error.code, attempt, delayMs: delay }, 'Feishu API call failed; retrying');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FeishuApiError(`${what} failed: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

function isRetryable(error: FeishuApiError): boolean {
  if (error.code !== undefined && RATE_LIMIT_CODES.has(error.code)) return true;
  if (error.status === undefined) return true; // network failure: no answer at all
  return error.status === 429 || error.status >= 500;
}

function toApiError(what: string, err: unknown): FeishuApiError {
  if (err instanceof FeishuApiError) return err;
  const e = err as { message?: string; response?: { status?: number; data?: { code?: number; msg?: string } } };
  const status = e.response?.status;
  const code = e.response?.data?.code;
  const detail = e.response?.data?.msg ?? e.message ?? String(err);
  return new FeishuApiError(
    `${what} failed: ${status ? `HTTP ${status} ` : ''}${code !== undefined ? `code ${code} ` : ''}${detail}`,
    status,
    code,
  );
}
