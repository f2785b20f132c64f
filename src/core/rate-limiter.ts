/**
 * A rate limit as the Bot asks it: takes one token for the key; 0 when allowed, else the seconds
 * until the next token. In-process (RateLimiter) or shared by every process (PgStore.rateLimiter).
 */
export interface RateLimit {
  take(key: string): number | Promise<number>;
}

/** Per-key token bucket in this process: `burst` requests at once, refilled at `perMinute`. */
export class RateLimiter implements RateLimit {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly burst: number,
    // Read Date.now at each call (not a reference taken once), so a test's moved clock is seen.
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Takes one token; returns 0 when allowed, else the seconds until the next token. */
  take(key: string): number {
    const now = this.now();
    const refillPerMs = this.perMinute / 60_000;
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) * refillPerMs);
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    this.evictIdle(now);
    return Math.ceil((1 - bucket.tokens) / refillPerMs / 1000);
  }

  /** Full buckets carry no information; drop them so a busy workspace does not grow the map forever. */
  private evictIdle(now: number): void {
    if (this.buckets.size < 10_000) return;
    const fullAfterMs = (this.burst * 60_000) / this.perMinute;
    for (const [key, b] of this.buckets) if (now - b.at > fullAfterMs) this.buckets.delete(key);
  }
}
