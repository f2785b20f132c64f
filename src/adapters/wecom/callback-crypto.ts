import { timingSafeEqual } from 'node:crypto';
import { decrypt, getSignature } from '@wecom/crypto';

/** Why a callback was refused; each maps to one HTTP status. */
export type CallbackRejection = 'bad_signature' | 'undecryptable' | 'wrong_receive_id';

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
