import type { Vote } from '../../core/index.ts';

/**
 * 👍/👎 typed as a reply. WeCom's own emoji panel sends thumbs up/down as the codes `[强]`/`[弱]`
 * (the Unicode emoji come from the phone keyboard), and skin tones or variation selectors may follow.
 */
export function parseVoteReply(text: string | undefined): Vote | undefined {
  const t = (text ?? '').trim().replace(/[\u{1F3FB}-\u{1F3FF}\uFE0F]/gu, '');
  if (t === '👍' || t === '1' || t === '[强]') return 1;
  if (t === '👎' || t === '0' || t === '[弱]') return -1;
  return undefined;
}

/**
 * "Another answer" typed as a reply (the card's ↻ button as text, for clients that show no cards):
 * `↻`, `换一个`, `换一个答案`, `another` or `another answer`.
 */
export function isAnotherAnswerReply(text: string | undefined): boolean {
  const t = (text ?? '').trim().replace(/\uFE0F/g, '').replace(/[.!。！]+$/u, '').toLowerCase();
  return ['↻', '🔄', '换一个', '换一个答案', '换个答案', 'another', 'another answer', 'another one'].includes(t);
}

/**
 * The answer each member got last, so that a "👍" sent right after it can be counted. "Right
 * after" means: the member's next message, within `windowMs`.
 */
export class LastAnswers {
  private readonly byUser = new Map<string, { answerId: string; at: number }>();

  constructor(
    private readonly windowMs = 30 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  remember(user: string, answerId: string): void {
    // Re-inserting keeps the map ordered oldest first, so trimming drops the stalest entries.
    this.byUser.delete(user);
    this.byUser.set(user, { answerId, at: this.now() });
    if (this.byUser.size > 10_000) this.byUser.delete(this.byUser.keys().next().value!);
  }

  /** The answer a vote reply from `user` refers to, if it is recent enough. */
  current(user: string): string | undefined {
    const entry = this.byUser.get(user);
    if (!entry) return undefined;
    if (this.now() - entry.at > this.windowMs) {
      this.byUser.delete(user);
      return undefined;
    }
    return entry.answerId;
  }

  /** Anything else the member sends moves the conversation on. */
  forget(user: string): void {
    this.byUser.delete(user);
  }
}

/** Ids of recently handled callbacks the Bot does not see (card clicks, vote replies), bounded. */
export class RecentIds {
  private readonly ids = new Set<string>();

  constructor(private readonly capacity = 10_000) {}

  /** True the first time an id is seen. */
  claim(id: string): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.values().next().value!);
    return true;
  }
}
