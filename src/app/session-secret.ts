import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The key that signs anonymous web session cookies: random, made once per data folder and kept
 * there (owner-only), so sessions survive a restart and no configuration is needed.
 */
export function sessionSecret(home: string): string {
  const file = join(home, 'web-session.key');
  try {
    const key = readFileSync(file, 'utf8').trim();
    if (key.length >= 32) return key;
  } catch {
    // not made yet
  }
  mkdirSync(home, { recursive: true });
  const key = randomBytes(32).toString('base64url');
  writeFileSync(file, key, { mode: 0o600 });
  return key;
}
