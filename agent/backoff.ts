// Reconnect delays: exponential with full jitter (AWS architecture blog's
// "full jitter"), so a hub restart is not met by every device at the same instant.

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
}

export class Backoff {
  private attempt = 0;
  constructor(private readonly opts: BackoffOptions, private readonly random: () => number = Math.random) {}

  /** The delay before the next attempt: uniform in [0, min(cap, base * 2^attempt)]. */
  next(): number {
    const ceiling = Math.min(this.opts.capMs, this.opts.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(this.random() * ceiling);
  }

  /** After a connection proved stable. */
  reset(): void {
    this.attempt = 0;
  }
}
