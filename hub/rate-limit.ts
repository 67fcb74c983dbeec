// Events per second for one connection, as a token bucket. Over the rate the hub stops reading
// that socket until the bucket has refilled (TCP pushes back on the client: nothing is dropped,
// and nobody else waits); a client that stays over the rate for floodMs is closed (rate_limited).

export class EventBucket {
  private tokens: number;
  private at: number;
  /** Since when the client has been held back without the bucket refilling to full (null: not limited). */
  private limitedSince: number | null = null;

  constructor(
    private readonly perSecond: number,
    /** Burst: what the bucket holds; at least one full push. */
    private readonly capacity: number,
    private readonly floodMs: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.at = now;
  }

  /**
   * Take `n` events. Returns how long to stop reading (0: keep reading), or -1 when the client has
   * been over its rate for floodMs and should be closed.
   */
  take(n: number, now: number): number {
    this.refill(now);
    this.tokens -= n;
    if (this.tokens >= 0) return 0;
    this.limitedSince ??= now;
    if (now - this.limitedSince >= this.floodMs) return -1;
    return Math.ceil((-this.tokens / this.perSecond) * 1000);
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.at) / 1000) * this.perSecond);
    this.at = now;
    // Back to a full bucket: the client slowed down by itself.
    if (this.tokens >= this.capacity) this.limitedSince = null;
  }
}
