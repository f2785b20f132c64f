/**
 * The order in which a trainer sees its examples: seeded shuffles, one epoch after another. The
 * order is a function of (seed, salt, epoch), so a resumed run that restores its position sees
 * the same examples as an uninterrupted one.
 */
import { Random, mixSeed } from '../model/random.ts';

/** The seeded shuffle of one epoch: `salt` keeps the orders of different data streams apart. */
export function epochPermutation(n: number, seed: number, salt: number, epoch: number): number[] {
  return new Random(mixSeed(seed, salt, epoch)).permutation(n);
}

/** A position in an EpochOrder (as saved in a checkpoint). */
export interface OrderPosition {
  epoch: number;
  at: number;
}

/** Endless seeded shuffles of 0..n-1, epoch after epoch; its position can be saved, restored or set. */
export class EpochOrder {
  private epoch = 0;
  private at = 0;
  private perm: number[];
  private permEpoch = 0;

  constructor(
    private readonly n: number,
    private readonly seed: number,
    private readonly salt: number,
  ) {
    this.perm = n ? epochPermutation(n, seed, salt, 0) : [];
  }

  /** The next k indices (none when n is 0). */
  next(k: number): number[] {
    const out: number[] = [];
    if (this.n === 0) return out;
    while (out.length < k) {
      if (this.at >= this.n) {
        this.epoch += 1;
        this.at = 0;
      }
      out.push(this.permutationOf(this.epoch)[this.at++]!);
    }
    return out;
  }

  get position(): OrderPosition {
    return { epoch: this.epoch, at: this.at };
  }

  restore(to: OrderPosition): void {
    this.epoch = to.epoch;
    this.at = to.at;
  }

  /** Moves to the i-th index of the endless sequence. */
  seek(i: number): void {
    this.restore({ epoch: Math.floor(i / this.n), at: i % this.n });
  }

  private permutationOf(epoch: number): number[] {
    if (epoch !== this.permEpoch) {
      this.perm = epochPermutation(this.n, this.seed, this.salt, epoch);
      this.permEpoch = epoch;
    }
    return this.perm;
  }
}
