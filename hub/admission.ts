// Who may open a socket, decided before one exists: caps on connections (in total and per token)
// and on failed authentications per remote address. Every refusal is an HTTP status (429 for a
// limit), so a flood of upgrades costs the hub a header parse each, never a socket.
import type { Role } from './store/event-store.ts';

/** Failed authentications per address within a sliding minute; past the limit, refused at once. */
export class AuthFailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly maxPerWindow: number,
    private readonly windowMs = 60_000,
    /** Addresses remembered at most (a spread-out attack must not grow the map without bound). */
    private readonly maxAddresses = 100_000,
  ) {}

  /** True while this address has failed too often recently. */
  blocked(address: string, now: number): boolean {
    const times = this.failures.get(address);
    if (!times) return false;
    while (times.length && times[0]! <= now - this.windowMs) times.shift();
    if (times.length === 0) this.failures.delete(address);
    return times.length >= this.maxPerWindow;
  }

  record(address: string, now: number): void {
    let times = this.failures.get(address);
    if (!times) {
      if (this.failures.size >= this.maxAddresses) this.sweep(now);
      times = [];
      this.failures.set(address, times);
    }
    times.push(now);
    // Only the last maxPerWindow failures matter.
    if (times.length > this.maxPerWindow) times.shift();
  }

  private sweep(now: number): void {
    for (const [address, times] of this.failures) if (!times.length || times[times.length - 1]! <= now - this.windowMs) this.failures.delete(address);
    // Still full: forget the oldest half rather than grow (they were counted; they may try again).
    if (this.failures.size >= this.maxAddresses) {
      let n = Math.floor(this.maxAddresses / 2);
      for (const address of this.failures.keys()) {
        if (n-- <= 0) break;
        this.failures.delete(address);
      }
    }
  }
}

/** What a connection keeps of its token: the id (device binding, revocation) and the role. */
export interface ConnectionToken {
  readonly id: string;
  readonly role: Role;
}

/**
 * Open connections per token, counted from the moment one is admitted. The token's sockets share
 * one record of it (an id and a role per socket would be read from the store for each one).
 */
export class TokenConnections {
  private readonly open = new Map<string, { token: ConnectionToken; count: number }>();

  /** Count one more for the token unless it is at `max`: its shared record, or null when refused. */
  admit(token: ConnectionToken, max: number): ConnectionToken | null {
    const entry = this.open.get(token.id) ?? { token: { id: token.id, role: token.role }, count: 0 };
    if (entry.count >= max) return null;
    entry.count++;
    this.open.set(token.id, entry);
    return entry.token;
  }

  release(tokenId: string): void {
    const entry = this.open.get(tokenId);
    if (!entry) return;
    if (--entry.count <= 0) this.open.delete(tokenId);
  }
}
