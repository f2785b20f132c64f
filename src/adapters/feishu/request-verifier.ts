import { createHash, timingSafeEqual } from 'node:crypto';
import { AESCipher } from '@larksuiteoapi/node-sdk';

export type Verified =
  | { ok: true; payload: Record<string, unknown> }
  | { ok: false; status: 400 | 401; error: string };

export interface VerifierOptions {
  verificationToken?: string;
  encryptKey?: string;
  /** FEISHU_REQUEST_WINDOW_SECONDS: how far a request's timestamp may be from now, either way; default 300. */
  windowSeconds?: number;
  now?: () => number;
}

/**
 * Checks that a callback really comes from Feishu and opens it.
 *
 * With an encrypt key, Feishu signs every push: X-Lark-Signature = sha256_hex(timestamp + nonce +
 * encryptKey + body). The check runs on the raw bytes as received. (The SDK's own check hashes
 * `JSON.stringify` of the parsed body, which fails for bodies Feishu serialised differently, and
 * reports a failure as an empty result that cannot be told apart from a handler's answer.) The
 * verification token inside the (decrypted) payload is checked too. Legacy card callbacks without
 * an encrypt key are signed with sha1(timestamp + nonce + verificationToken + body) instead.
 *
 * Freshness: a request whose X-Lark-Request-Timestamp (signed, with an encrypt key) is more than
 * the window away from now is refused, so a captured request cannot be replayed later. Feishu
 * stamps each delivery anew, so its own redeliveries (15 s, 5 min, 1 h, 6 h later) still arrive
 * and are dropped as duplicates by event and message id. A request without that header is judged
 * by the event's own `header.create_time`.
 */
export class FeishuRequestVerifier {
  private readonly cipher: AESCipher | undefined;

  constructor(private readonly options: VerifierOptions) {
    this.cipher = options.encryptKey ? new AESCipher(options.encryptKey) : undefined;
  }

  private fresh(timestamp: string | undefined, payload: Record<string, unknown>): boolean {
    const created = isObject(payload.header) ? payload.header.create_time : undefined;
    const given = timestamp ?? (typeof created === 'string' || typeof created === 'number' ? String(created) : undefined);
    if (given === undefined) return true; // nothing to judge by (legacy card actions: their signature is the proof)
    const at = Number(given);
    if (!Number.isFinite(at)) return false;
    const now = (this.options.now?.() ?? Date.now()) / 1000;
    return Math.abs(now - toSeconds(at)) <= (this.options.windowSeconds ?? 300);
  }

  verify(raw: string, header: (name: string) => string | undefined): Verified {
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return { ok: false, status: 400, error: 'body is not JSON' };
    }
    if (!isObject(body)) return { ok: false, status: 400, error: 'body must be a JSON object' };

    const timestamp = header('x-lark-request-timestamp');
    const nonce = header('x-lark-request-nonce');
    const signature = header('x-lark-signature');
    const { encryptKey, verificationToken } = this.options;
    const signed = timestamp !== undefined && nonce !== undefined && signature !== undefined;
    if (encryptKey && signed && !sameHex(signature, sha256(timestamp + nonce + encryptKey + raw))) {
      return { ok: false, status: 401, error: 'bad X-Lark-Signature' };
    }

    let payload: Record<string, unknown> = body;
    if (typeof body.encrypt === 'string') {
      if (!this.cipher) return { ok: false, status: 400, error: 'the body is encrypted but FEISHU_ENCRYPT_KEY is not set' };
      try {
        const opened: unknown = JSON.parse(this.cipher.decrypt(body.encrypt));
        if (!isObject(opened)) throw new Error('not an object');
        payload = opened;
      } catch {
        return { ok: false, status: 400, error: 'cannot decrypt the body with FEISHU_ENCRYPT_KEY' };
      }
    }

    if (payload.type === 'url_verification') {
      // Feishu does not sign the challenge; its token (and, when encrypted, decrypting at all) vouches for it.
      if (verificationToken && !sameText(payload.token, verificationToken)) {
        return { ok: false, status: 401, error: 'verification token mismatch' };
      }
      if (typeof payload.challenge !== 'string') return { ok: false, status: 400, error: 'url_verification without a challenge' };
      return { ok: true, payload };
    }

    if (encryptKey && !signed) return { ok: false, status: 401, error: 'missing X-Lark-Signature headers' };
    if (!this.fresh(timestamp, payload)) return { ok: false, status: 401, error: 'request timestamp outside the allowed window' };

    if (isLegacyCardAction(payload)) {
      // Its `token` is a card-update token, not the verification token; the sha1 signature is the proof.
      if (!encryptKey && verificationToken) {
        if (!signed) return { ok: false, status: 401, error: 'missing X-Lark-Signature headers' };
        if (!sameHex(signature, sha1(timestamp + nonce + verificationToken + raw))) {
          return { ok: false, status: 401, error: 'bad X-Lark-Signature' };
        }
      }
      return { ok: true, payload };
    }

    if (verificationToken) {
      const token = isObject(payload.header) ? payload.header.token : payload.token;
      if (!sameText(token, verificationToken)) return { ok: false, status: 401, error: 'verification token mismatch' };
    }
    if (!isObject(payload.header) && !isObject(payload.event)) {
      return { ok: false, status: 400, error: 'neither an event (header/event) nor a card action' };
    }
    return { ok: true, payload };
  }
}

/** Feishu's timestamps come in seconds (request headers), milliseconds (events) or microseconds (card actions). */
function toSeconds(value: number): number {
  return value > 1e14 ? value / 1e6 : value > 1e11 ? value / 1e3 : value;
}

/** The old "message card request URL" format: no schema and header, the action at the top level. */
export function isLegacyCardAction(payload: Record<string, unknown>): boolean {
  return payload.schema === undefined && !isObject(payload.header) && isObject(payload.action) && 'open_message_id' in payload;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

function sameHex(given: string, expected: string): boolean {
  const a = Buffer.from(given.toLowerCase());
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function sameText(given: unknown, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
