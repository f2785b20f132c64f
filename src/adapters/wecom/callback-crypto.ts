import { timingSafeEqual } from 'node:crypto';
import { decrypt, getSignature } from '@wecom/crypto';

/** Why a callback was refused; each maps to one HTTP status. */
export type CallbackRejection = 'bad_signature' | 'undecryptable' | 'wrong_receive_id' | 'stale_timestamp';

export class CallbackRejected extends Error {
  constructor(readonly reason: CallbackRejection) {
    super(reason);
  }
}

export interface CallbackSecrets {
  token: string;
  encodingAesKey: string;
  /** The receive id WeCom appends to every plaintext: the CorpID for a self-built app. */
  receiveId: string;
  /**
   * Refuse callbacks whose signed timestamp is further than this from now, either way (default
   * 300 s): a captured callback cannot be replayed later. Redeliveries carry a new timestamp.
   */
  windowSeconds?: number;
  now?: () => number;
}

/**
 * Checks `msg_signature` (sha1 of the sorted token, timestamp, nonce and ciphertext), decrypts
 * the ciphertext and checks that it was meant for this corp. Returns the plaintext.
 */
export function openCallback(
  secrets: CallbackSecrets,
  query: { signature: string; timestamp: string; nonce: string },
  ciphertext: string,
): string {
  const expected = getSignature(secrets.token, query.timestamp, query.nonce, ciphertext);
  if (!sameText(expected, query.signature.toLowerCase())) throw new CallbackRejected('bad_signature');
  // Checked after the signature, which covers the timestamp: before it, the timestamp proves nothing.
  const at = Number(query.timestamp);
  const skew = Math.abs((secrets.now?.() ?? Date.now()) / 1000 - at);
  if (!Number.isFinite(at) || skew > (secrets.windowSeconds ?? 300)) throw new CallbackRejected('stale_timestamp');
  let opened: { message: string; id: string };
  try {
    opened = decrypt(secrets.encodingAesKey, ciphertext);
  } catch {
    throw new CallbackRejected('undecryptable');
  }
  // Another corp's ciphertext (or the wrong AES key) decrypts to garbage or a foreign id.
  if (!sameText(opened.id, secrets.receiveId)) throw new CallbackRejected('wrong_receive_id');
  return opened.message;
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
