import type { Platform, Vote } from './types.ts';

export type AnswerOutcome = 'answered' | 'no_answer' | 'error' | 'cancelled';

/** Hooks for metrics; the composition root backs them with Prometheus counters. */
export interface BotObserver {
  answer(platform: Platform, outcome: AnswerOutcome, seconds: number): void;
  feedback(platform: Platform, vote: Vote | 0): void;
  duplicate(platform: Platform): void;
  rateLimited(platform: Platform): void;
  command(platform: Platform, name: string, allowed: boolean): void;
}

export const nullObserver: BotObserver = {
  answer() {},
  feedback() {},
  duplicate() {},
  rateLimited() {},
  command() {},
};
