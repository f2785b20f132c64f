/**
 * Simulated users with a known, learnable taste: the proof that the feedback loop works.
 *
 * Real thumbs are noisy and their cause is unknown, so a test cannot tell whether a reward model
 * learned "what users like" or something else. Simulated users vote by a rule we wrote down
 * (plus a little noise, as people are not consistent), so we can measure both the reward model
 * (does it predict the rule on held-out answers?) and a policy after RLHF (does it follow the
 * rule more often than before, at bounded KL?).
 */
import type { AnswerRecord, BotStore, Platform, Vote } from '../core/index.ts';
import { Random, mixSeed } from '../model/random.ts';
import { CJK } from '../model/text/cjk.ts';

/** What a user sees when rating: the question, the passages the bot retrieved, the answer. */
export interface RatedExample {
  question: string;
  passages: readonly { text: string }[];
  answer: string;
}

/** A rule that decides whether a user likes an answer. */
export interface Taste {
  name: string;
  /** One line for reports. */
  description: string;
  likes(example: RatedExample): boolean;
}


/** Words for Latin text, single characters for CJK (so a quote is measured the same in both). */
function units(text: string): string[] {
  const out: string[] = [];
  for (const m of text.normalize('NFKC').toLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) {
    const w = m[0];
    if (CJK.test(w)) for (const ch of w) out.push(ch);
    else out.push(w);
  }
  return out;
}

/**
 * True when `answer` repeats a run of at least `minWords` consecutive words of one passage
 * (CJK characters count as words; a Chinese quote needs twice as many, as characters carry less).
 */
export function quotesPassage(answer: string, passages: readonly { text: string }[], minWords = 5): boolean {
  const a = units(answer);
  if (a.length === 0) return false;
  for (const p of passages) {
    const u = units(p.text);
    const cjk = u.some((x) => CJK.test(x));
    const n = cjk ? minWords * 2 : minWords;
    if (a.length < n || u.length < n) continue;
    const grams = new Set<string>();
    for (let i = 0; i + n <= u.length; i++) grams.add(u.slice(i, i + n).join('\u0001'));
    for (let i = 0; i + n <= a.length; i++) if (grams.has(a.slice(i, i + n).join('\u0001'))) return true;
  }
  return false;
}

/** The taste the issue names: users like answers that quote the source passage, dislike the rest. */
export const QUOTES_SOURCE: Taste = {
  name: 'quotes-source',
  description: 'likes answers that quote a retrieved passage (≥5 consecutive words), dislikes answers that do not',
  likes: (ex) => quotesPassage(ex.answer, ex.passages),
};

export interface SimulatedUsersOptions {
  taste?: Taste;
  /** How many distinct users vote (each answer gets one vote, from one of them). */
  users?: number;
  /** Chance that a user votes against the taste. */
  noise?: number;
  seed?: number;
  platform?: Platform;
}

/** A crowd of users sharing one taste, voting with some noise; deterministic for a seed. */
export class SimulatedUsers {
  readonly taste: Taste;
  private readonly rng: Random;
  private readonly users: number;
  private readonly noise: number;
  private readonly platform: Platform;

  constructor(options: SimulatedUsersOptions = {}) {
    this.taste = options.taste ?? QUOTES_SOURCE;
    this.users = options.users ?? 7;
    this.noise = options.noise ?? 0.1;
    this.rng = new Random(mixSeed(options.seed ?? 1, 0x5eed));
    this.platform = options.platform ?? 'web';
  }

  /** The vote one user gives: the taste, flipped with probability `noise`. */
  vote(example: RatedExample): { userId: string; value: Vote } {
    const liked = this.taste.likes(example);
    const flip = this.rng.uniform() < this.noise;
    return { userId: `sim-${this.rng.int(this.users)}`, value: liked !== flip ? 1 : -1 };
  }

  /**
   * Rates answers the bot saved, through the store's own feedback path (so datasets are built
   * exactly as from real users). Returns how many were liked and disliked.
   */
  async rate(store: BotStore, answers: readonly AnswerRecord[]): Promise<{ rated: number; up: number; down: number }> {
    let up = 0;
    for (const a of answers) {
      const v = this.vote({ question: a.question, passages: a.passages, answer: a.output });
      await store.recordFeedback({ answerId: a.id, platform: this.platform, userId: v.userId, value: v.value });
      if (v.value === 1) up++;
    }
    return { rated: answers.length, up, down: answers.length - up };
  }
}

/** Share of answers the taste likes (no noise): the number RLHF should raise. */
export function preferredRate(taste: Taste, examples: readonly RatedExample[]): number {
  if (examples.length === 0) return 0;
  return examples.filter((e) => taste.likes(e)).length / examples.length;
}
