import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';

const COOKIE = 'teamllm_session';
const MAX_AGE_S = 30 * 24 * 3600;

/**
 * Anonymous web sessions: a random id in a cookie signed with a server secret (HttpOnly so page
 * scripts cannot read it, SameSite=Lax so other sites' pages do not send it on their POSTs). The
 * signature only proves the server minted the id; it says nothing about who holds it, so these
 * sessions never gain rights and share their client address's rate limit.
 */
export class WebSessions {
  constructor(private readonly secret: string) {}

  /** The caller's session id, minting one (and setting the cookie) when it has none or a forged one. */
  sessionId(c: Context): string {
    const cookie = getCookie(c, COOKIE);
    const dot = cookie?.lastIndexOf('.') ?? -1;
    if (cookie && dot > 0) {
      const id = cookie.slice(0, dot);
      const given = Buffer.from(cookie.slice(dot + 1));
      const want = Buffer.from(this.sign(id));
      if (given.length === want.length && timingSafeEqual(given, want)) return id;
    }
    const id = randomBytes(16).toString('base64url');
    setCookie(c, COOKIE, `${id}.${this.sign(id)}`, {
      httpOnly: true,
      sameSite: 'Lax',
      path: '/',
      secure: new URL(c.req.url).protocol === 'https:',
      maxAge: MAX_AGE_S,
    });
    return id;
  }

  private sign(id: string): string {
    return createHmac('sha256', this.secret).update(`teamllm web session v1:${id}`).digest('base64url');
  }
}
