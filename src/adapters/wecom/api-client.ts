import type { Logger } from '../../core/index.ts';

export const DEFAULT_WECOM_API_BASE = 'https://qyapi.weixin.qq.com';

/** 40014 invalid access_token, 42001 expired: fetch a new token and try once more. */
const TOKEN_ERRORS = new Set([40014, 42001]);
/** -1 system busy, 45009 API frequency limit, 45033 too many concurrent calls: worth a later retry. */
const BUSY_ERRORS = new Set([-1, 45009, 45033]);

export class WecomApiError extends Error {
  constructor(
    readonly errcode: number,
    readonly errmsg: string,
    readonly api: string,
  ) {
    super(`WeCom ${api} failed: errcode ${errcode} ${errmsg}`);
  }
}

export interface WecomApiClientOptions {
  corpId: string;
  secret: string;
  baseUrl?: string;
  logger: Logger;
  /** First pause before retrying a busy API; doubles per attempt. */
  retryDelayMs?: number;
  busyRetries?: number;
  timeoutMs?: number;
  now?: () => number;
}

interface WecomResponse {
  errcode?: number;
  errmsg?: string;
}

export interface SendResult extends WecomResponse {
  msgid?: string;
  response_code?: string;
  invaliduser?: string;
}

/**
 * The slice of the WeCom server API the adapter needs. The access token is shared by all calls,
 * cached for its lifetime and fetched once however many calls want it at the same time. URLs
 * carry the token and secret, so they are never logged.
 */
export class WecomApiClient {
  private readonly base: string;
  private cached: { token: string; expiresAt: number } | undefined;
  private fetching: Promise<string> | undefined;
  private readonly now: () => number;

  constructor(private readonly options: WecomApiClientOptions) {
    this.base = (options.baseUrl ?? DEFAULT_WECOM_API_BASE).replace(/\/+$/, '');
    this.now = options.now ?? Date.now;
  }

  sendMessage(body: Record<string, unknown>): Promise<SendResult> {
    return this.call<SendResult>('message/send', body);
  }

  /** Uploads temporary media (valid 3 days) with media/upload; returns its media_id. */
  async uploadMedia(type: 'image' | 'file', filename: string, bytes: Uint8Array): Promise<string> {
    const result = await this.call<WecomResponse & { media_id?: string }>('media/upload', () => {
      const form = new FormData();
      form.append('media', new Blob([new Uint8Array(bytes)], { type: type === 'image' ? 'image/png' : 'application/octet-stream' }), filename);
      return { body: form, query: `&type=${type}` };
    });
    if (!result.media_id) throw new WecomApiError(-1, 'media/upload returned no media_id', 'media/upload');
    return result.media_id;
  }

  updateTemplateCard(body: Record<string, unknown>): Promise<WecomResponse> {
    return this.call<WecomResponse>('message/update_template_card', body);
  }

  /**
   * POSTs to /cgi-bin/<api>, refreshing the token once when WeCom says it is invalid or expired.
   * `body` is sent as JSON, or is a function building a multipart form (and extra query) per attempt.
   */
  async call<T extends WecomResponse>(api: string, body: unknown): Promise<T> {
    const retries = this.options.busyRetries ?? 2;
    for (let attempt = 0, refreshed = false; ; attempt++) {
      const token = await this.token();
      const form = typeof body === 'function' ? (body as () => { body: FormData; query: string })() : undefined;
      const result = await this.request<T>(
        api,
        `/cgi-bin/${api}?access_token=${encodeURIComponent(token)}${form?.query ?? ''}`,
        form ? { method: 'POST', body: form.body } : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
      );
      const code = result.errcode ?? 0;
      if (code === 0) return result;
      if (TOKEN_ERRORS.has(code) && !refreshed) {
        refreshed = true;
        this.invalidate(token);
        this.options.logger.info({ api, errcode: code }, 'WeCom access token rejected; fetching a new one');
        continue;
      }
      if (BUSY_ERRORS.has(code) && attempt < retries) {
        const delay = (this.options.retryDelayMs ?? 1000) * 2 ** attempt;
        this.options.logger.warn({ api, errcode: code, delayMs: delay }, 'WeCom API busy; retrying');
        await new Promise((r) => setTimeout(r, delay));
        continue;
      }
      throw new WecomApiError(code, result.errmsg ?? '', api);
    }
  }

  /** A valid access token, from the cache or from gettoken. */
  async token(): Promise<string> {
    if (this.cached && this.cached.expiresAt > this.now()) return this.cached.token;
    this.fetching ??= this.fetchToken().finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  private async fetchToken(): Promise<string> {
    const query = new URLSearchParams({ corpid: this.options.corpId, corpsecret: this.options.secret });
    const result = await this.request<WecomResponse & { access_token?: string; expires_in?: number }>(
      'gettoken',
      `/cgi-bin/gettoken?${query}`,
      { method: 'GET' },
    );
    if ((result.errcode ?? 0) !== 0 || !result.access_token) {
      throw new WecomApiError(result.errcode ?? -1, result.errmsg ?? 'no access_token in the response', 'gettoken');
    }
    const lifetimeMs = (result.expires_in ?? 7200) * 1000;
    // Renew a little early so a token never expires between the check and the call.
    const margin = Math.min(300_000, lifetimeMs / 10);
    this.cached = { token: result.access_token, expiresAt: this.now() + lifetimeMs - margin };
    return result.access_token;
  }

  private invalidate(token: string): void {
    if (this.cached?.token === token) this.cached = undefined;
  }

  private async request<T>(api: string, path: string, init: RequestInit): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.base + path, { ...init, signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000) });
    } catch (err) {
      // Only the error's kind and cause code: never anything that could echo the URL and its token.
      const cause = (err as { cause?: { code?: unknown } }).cause?.code;
      const kind = err instanceof Error ? err.name : 'unknown';
      throw new WecomApiError(-2, `network error (${kind}${typeof cause === 'string' ? ` ${cause}` : ''})`, api);
    }
    if (!response.ok) throw new WecomApiError(-3, `HTTP ${response.status}`, api);
    try {
      return (await response.json()) as T;
    } catch {
      throw new WecomApiError(-4, 'response is not JSON', api);
    }
  }
}
