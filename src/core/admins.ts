import type { Platform } from './types.ts';

/**
 * Admin rights come from TEAMLLM_ADMINS (`platform:userId`, comma separated). The identities
 * must be ones the platform vouches for: adapters only put verified user ids in messages.
 */
export class AdminList {
  private readonly ids: Set<string>;

  constructor(entries: Iterable<string>) {
    this.ids = new Set([...entries].map((e) => e.trim()).filter(Boolean));
  }

  static parse(list: string | undefined): AdminList {
    return new AdminList((list ?? '').split(','));
  }

  isAdmin(platform: Platform, userId: string): boolean {
    return this.ids.has(`${platform}:${userId}`);
  }

  get size(): number {
    return this.ids.size;
  }
}
