import type { Context } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';

/** `::ffff:10.0.0.1` and `10.0.0.1` are one address. */
function normalize(address: string): string {
  const a = address.trim().toLowerCase();
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

/** The address of the TCP peer; 'local' when the app is called in-process (tests, benchmarks). */
export function peerAddress(c: Context): string {
  try {
    const address = getConnInfo(c).remote.address;
    return address ? normalize(address) : 'local';
  } catch {
    return 'local';
  }
}

/** Trusted reverse proxies (TEAMLLM_TRUSTED_PROXIES): only they may speak for the client. */
export class TrustedProxies {
  private readonly addresses: Set<string>;

  constructor(addresses: Iterable<string> = []) {
    this.addresses = new Set([...addresses].map(normalize).filter(Boolean));
  }

  /** Whether the TCP peer of this request is one of the configured proxies. */
  fromProxy(c: Context): boolean {
    return this.addresses.has(peerAddress(c));
  }

  /**
   * The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
   * `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left were written
   * by the client and prove nothing).
   */
  clientAddress(c: Context): string {
    const peer = peerAddress(c);
    if (!this.addresses.has(peer)) return peer;
    const forwarded = (c.req.header('x-forwarded-for') ?? '').split(',').map(normalize).filter(Boolean);
    for (let i = forwarded.length - 1; i >= 0; i--) if (!this.addresses.has(forwarded[i]!)) return forwarded[i]!;
    return forwarded[0] ?? peer;
  }
}
