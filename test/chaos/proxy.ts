// A TCP fault proxy on loopback, one per device, between the agent and the hub.
//
//   up      bytes flow both ways
//   cut     every connection is reset (RST) and new ones are reset on accept (a pulled cable
//           that the OS notices, or a hub-side firewall that rejects)
//   stall   nothing is read from either side any more (a black hole: no FIN, no RST, no bytes);
//           bytes already sent sit in the kernel buffers and are delivered on heal, even when
//           the peer has given up on the connection by then (late, duplicated pushes)
//   reset() resets the connections open now, once; new ones are accepted
//   slow(n) bytes from the hub to the agent are delivered at n bytes/s (a device that reads its
//           socket at a trickle); the hub sees the backpressure
//
// Modes change at any time and apply to open connections too. Only 127.0.0.1. With several
// hub nodes the proxy is also a load balancer: each new connection goes to the next node in
// turn (no health checks: a connection to a node that is down is reset, and the agent retries).
import net from 'node:net';

export type LinkMode = 'up' | 'cut' | 'stall';

interface Pair {
  id: number;
  client: net.Socket;
  upstream: net.Socket;
  /** Hub -> agent bytes waiting for the trickle (slow mode). */
  down: Buffer[];
  downBytes: number;
  closed: boolean;
}

export interface ProxyStats {
  connections: number;
  /** Connections refused or reset by a fault. */
  resets: number;
  bytesUp: number;
  bytesDown: number;
}

const QUEUE_LIMIT = 64 * 1024;
const TICK_MS = 25;

export class FaultProxy {
  mode: LinkMode = 'up';
  /** Hub -> agent rate limit in bytes/s, or null for full speed. */
  rate: number | null = null;
  port = 0;
  readonly stats: ProxyStats = { connections: 0, resets: 0, bytesUp: 0, bytesDown: 0 };
  private readonly server: net.Server;
  private readonly pairs = new Set<Pair>();
  private readonly targetPorts: number[];
  /** Agents' connections accepted but not yet joined to a node. */
  private readonly connecting = new Set<net.Socket>();
  private nextId = 1;
  private timer: NodeJS.Timeout | null = null;

  /** Index of the node the next connection goes to. */
  private nextTarget = 0;

  constructor(
    /** The hub's port, or its nodes' ports (fixed for the life of the proxy: a hub restarts on the same one). */
    target: number | number[],
    readonly name = 'proxy',
  ) {
    this.targetPorts = Array.isArray(target) ? [...target] : [target];
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.on('error', () => {});
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
    return this.port;
  }

  /** Base URL for an agent (`ws://127.0.0.1:PORT`). */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get openConnections(): number {
    return this.pairs.size;
  }

  cut(): void {
    this.mode = 'cut';
    this.resetAll();
  }

  stall(): void {
    this.mode = 'stall';
    for (const p of this.pairs) {
      p.client.pause();
      p.upstream.pause();
    }
  }

  /** Back to `up` (a slow rate stays until slow(null)). */
  heal(): void {
    this.mode = 'up';
    for (const p of this.pairs) {
      p.client.resume();
      this.resumeUpstream(p);
    }
  }

  /** Reset (RST) every open connection once. */
  reset(): void {
    this.resetAll();
  }

  slow(bytesPerSecond: number | null): void {
    this.rate = bytesPerSecond;
    if (bytesPerSecond === null) for (const p of this.pairs) this.flushDown(p, Infinity);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.resetAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    this.stats.connections++;
    client.on('error', () => {});
    if (this.mode === 'cut') {
      this.stats.resets++;
      client.resetAndDestroy();
      return;
    }
    client.setNoDelay(true);
    // Nothing is read from the agent until a node took the connection.
    client.pause();
    this.connecting.add(client);
    client.once('close', () => this.connecting.delete(client));
    this.connectUpstream(client, this.targetPorts.length);
  }

  /**
   * Connect to the next node; a node that refuses (down) passes the connection to the next one,
   * as a load balancer retries the next upstream on a connect error. None left: reset the agent.
   */
  private connectUpstream(client: net.Socket, tries: number): void {
    const port = this.targetPorts[this.nextTarget++ % this.targetPorts.length]!;
    const upstream = net.connect({ port, host: '127.0.0.1' });
    const refused = () => {
      upstream.destroy();
      if (client.destroyed) return;
      if (tries > 1 && this.mode !== 'cut') return this.connectUpstream(client, tries - 1);
      this.stats.resets++;
      client.resetAndDestroy();
    };
    upstream.once('error', refused);
    upstream.once('connect', () => {
      upstream.off('error', refused);
      upstream.on('error', () => {});
      this.connecting.delete(client);
      if (client.destroyed) return void upstream.destroy();
      this.join(client, upstream);
    });
  }

  /** Forward between an agent's connection and the node's, subject to the mode. */
  private join(client: net.Socket, upstream: net.Socket): void {
    upstream.setNoDelay(true);
    const pair: Pair = { id: this.nextId++, client, upstream, down: [], downBytes: 0, closed: false };
    this.pairs.add(pair);
    if (this.mode === 'stall') upstream.pause();
    else client.resume();

    client.on('data', (chunk: Buffer) => {
      this.stats.bytesUp += chunk.length;
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => {
          if (this.mode !== 'stall') client.resume();
        });
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.rate === null && pair.downBytes === 0) {
        this.stats.bytesDown += chunk.length;
        if (!client.write(chunk)) {
          upstream.pause();
          client.once('drain', () => this.resumeUpstream(pair));
        }
        return;
      }
      pair.down.push(chunk);
      pair.downBytes += chunk.length;
      if (pair.downBytes > QUEUE_LIMIT) upstream.pause();
    });
    // A half-close is passed on (after queued bytes); a reset or error ends both sides.
    client.on('end', () => upstream.end());
    upstream.on('end', () => {
      if (pair.downBytes === 0) client.end();
    });
    // A side that closed with an error (reset, refused: the hub is down) resets the other one.
    client.on('close', (hadError) => this.drop(pair, hadError));
    upstream.on('close', (hadError) => {
      // Queued trickle bytes are lost with the connection, as unread bytes are with a real reset.
      pair.down = [];
      pair.downBytes = 0;
      this.drop(pair, hadError);
    });
  }

  private resumeUpstream(p: Pair): void {
    if (this.mode === 'stall' || p.closed) return;
    if (p.downBytes > QUEUE_LIMIT) return;
    p.upstream.resume();
  }

  /** Move up to `budget` queued hub->agent bytes to the agent. */
  private flushDown(p: Pair, budget: number): void {
    while (p.down.length > 0 && budget > 0 && !p.closed) {
      const head = p.down[0]!;
      const n = Math.min(head.length, budget);
      const part = n === head.length ? head : head.subarray(0, n);
      if (n === head.length) p.down.shift();
      else p.down[0] = head.subarray(n);
      p.downBytes -= n;
      budget -= n;
      this.stats.bytesDown += n;
      p.client.write(part);
    }
    if (p.downBytes <= QUEUE_LIMIT / 2) this.resumeUpstream(p);
    if (p.downBytes === 0 && p.upstream.readableEnded) p.client.end();
  }

  private tick(): void {
    if (this.mode === 'stall') return;
    for (const p of this.pairs) {
      if (p.downBytes === 0) continue;
      this.flushDown(p, this.rate === null ? Infinity : Math.max(1, Math.floor((this.rate * TICK_MS) / 1000)));
    }
  }

  private drop(p: Pair, reset: boolean): void {
    if (p.closed) return;
    p.closed = true;
    this.pairs.delete(p);
    if (reset) {
      p.client.resetAndDestroy();
      p.upstream.resetAndDestroy();
    } else {
      // Let written bytes go out, then close; a socket that is gone already ignores this.
      p.client.end();
      p.upstream.end();
      setTimeout(() => {
        p.client.destroy();
        p.upstream.destroy();
      }, 2000).unref();
    }
  }

  private resetAll(): void {
    for (const p of [...this.pairs]) {
      this.stats.resets++;
      this.drop(p, true);
    }
    // Connections still waiting for a node count as open too.
    for (const c of [...this.connecting]) {
      this.stats.resets++;
      c.resetAndDestroy();
    }
    this.connecting.clear();
  }
}
