// The agent's connection to the hub: one WebSocket at a time, hello with the
// cursor, frames parsed and handed up, liveness checked, reconnect with backoff.
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { MAX_FRAME_BYTES, PROTOCOL_VERSION, PING_INTERVAL_MS } from '../shared/limits.ts';

/** Largest frame the agent reads from a hub. */
export const MAX_AGENT_FRAME_BYTES = 2 * MAX_FRAME_BYTES;
import { silentLogger, type Logger } from '../shared/log.ts';
import { fastEventsFrame } from '../shared/events-fast-path.ts';
import { parseFrame, ServerFrame, type AckFrame, type EventsFrame, type PushFrame, type SnapshotFrame, type WelcomeFrame } from '../shared/protocol.ts';
import { Backoff } from './backoff.ts';

export const LinkState = {
  Connecting: 'connecting',
  /** Socket open and welcomed: streaming. */
  Open: 'open',
  /** Waiting before the next attempt. */
  Waiting: 'waiting',
  Stopped: 'stopped',
} as const;
export type LinkState = (typeof LinkState)[keyof typeof LinkState];

export interface LinkOptions {
  /**
   * Full sync URL (…/v1/projects/<p>/sync), or several separated by commas: hub nodes on one
   * store, tried in turn (the next one after every failed attempt or lost connection).
   */
  url: string;
  token: string;
  deviceId: string;
  /** Read at each connect: the hello's afterSeq. */
  afterSeq: () => number;
  /** Read at each connect, when given: the hello's afterDigest and bootstrap (see docs/protocol.md). */
  resume?: () => { afterDigest?: string; bootstrap?: boolean };
  log?: Logger;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** A connection stable this long resets the backoff. */
  stableAfterMs?: number;
  pingIntervalMs?: number;
  /** No frame, ping or pong for this long: the link is dead and is dropped. */
  deadAfterMs?: number;
}

export interface LinkEvents {
  welcome: [WelcomeFrame];
  /** An events frame and the size of its text (for the receiver's memory bound). */
  events: [EventsFrame, number];
  /** A snapshot page and the size of its text. */
  snapshot: [SnapshotFrame, number];
  ack: [AckFrame];
  /** The hub sent an error frame (a close follows). */
  hubError: [{ code: string; message: string }];
  /** The connection went away (or an attempt failed); a reconnect is scheduled. */
  down: [{ reason: string; retryInMs: number }];
  state: [LinkState];
}

export class Link extends EventEmitter<LinkEvents> {
  state: LinkState = LinkState.Stopped;
  private ws: WebSocket | null = null;
  private readonly backoff: Backoff;
  private retryTimer: NodeJS.Timeout | null = null;
  private liveTimer: NodeJS.Timeout | null = null;
  private stableTimer: NodeJS.Timeout | null = null;
  private lastTraffic = 0;
  /** We stopped reading (the app DB is locked): silence from the hub is ours, not a dead link. */
  private paused = false;
  private readonly log: Logger;
  private readonly o: Required<Omit<LinkOptions, 'log' | 'resume'>>;
  private readonly resumeFields: LinkOptions['resume'];
  private readonly urls: string[];
  /** Index in `urls` of the node to try next. */
  private node = 0;

  constructor(opts: LinkOptions) {
    super();
    this.log = opts.log ?? silentLogger;
    const pingIntervalMs = opts.pingIntervalMs ?? PING_INTERVAL_MS;
    // An option passed as undefined (Agent forwards its unset ones) keeps its default: spreading it
    // as is would replace e.g. the dead-link bound with undefined and disable the check.
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
    this.o = {
      backoffBaseMs: 250,
      backoffCapMs: 30_000,
      stableAfterMs: 10_000,
      deadAfterMs: pingIntervalMs * 2 + 1000,
      ...given,
      pingIntervalMs,
    } as Required<Omit<LinkOptions, 'log' | 'resume'>>;
    this.resumeFields = opts.resume;
    this.backoff = new Backoff({ baseMs: this.o.backoffBaseMs, capMs: this.o.backoffCapMs });
    this.urls = this.o.url.split(',').filter(Boolean);
  }

  start(): void {
    if (this.state !== LinkState.Stopped) return;
    this.connect();
  }

  /** True when a push can be sent now. */
  get open(): boolean {
    return this.state === LinkState.Open;
  }

  send(frame: PushFrame): boolean {
    if (!this.open || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Stop reading frames (backpressure while the app DB is locked); the hub then stops sending. Our
   * pings still go out, so the hub knows we are alive; the dead-link check waits until we read again.
   * Applies to the connections that follow too, until resume().
   */
  pause(): void {
    this.paused = true;
    this.ws?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.touch();
    this.ws?.resume();
  }

  /** Drop the current connection and reconnect (after backoff). */
  reconnect(reason: string): void {
    if (this.ws) this.drop(reason);
  }

  async stop(): Promise<void> {
    this.setState(LinkState.Stopped);
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      const closed = new Promise((resolve) => ws.once('close', resolve));
      ws.close(1000, 'agent stopping');
      await Promise.race([closed, new Promise((r) => setTimeout(r, 1000).unref())]);
      ws.terminate();
    }
  }

  private connect(): void {
    this.setState(LinkState.Connecting);
    const ws = new WebSocket(this.urls[this.node]!, {
      headers: { authorization: `Bearer ${this.o.token}` },
      handshakeTimeout: 10_000,
      // The hub is not trusted: its frames are bounded by the protocol's frame limit (events are
      // bounded below it), so anything past twice that is refused unread (close 1009) and retried.
      maxPayload: MAX_AGENT_FRAME_BYTES,
    });
    this.ws = ws;
    ws.on('unexpected-response', (_req, res) => {
      // 401/403: the token is missing, revoked or for another project. Keep retrying
      // slowly (an operator may fix it) but say so loudly.
      const reason = `hub refused the connection: HTTP ${res.statusCode}`;
      this.log.error({ status: res.statusCode }, reason);
      res.resume();
      this.drop(reason);
    });
    // Liveness counts bytes, not whole messages: a large frame trickling in over a slow link is
    // traffic too, and dropping that link mid-frame would fetch the same frame again, forever.
    let socket: import('node:net').Socket | null = null;
    ws.on('upgrade', (res) => (socket = res.socket));
    ws.on('open', () => {
      this.touch();
      socket?.on('data', () => this.touch());
      ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, deviceId: this.o.deviceId, afterSeq: this.o.afterSeq(), ...this.resumeFields?.() }));
      if (this.paused) ws.pause(); // paused while connecting (ws ignores pause() before open)
      this.liveTimer = setInterval(() => this.checkLive(), Math.max(50, Math.floor(this.o.pingIntervalMs / 2)));
    });
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('ping', () => this.touch());
    ws.on('pong', () => this.touch());
    ws.on('close', (code, reason) => this.drop(`closed ${code}${reason.length ? ` ${reason}` : ''}`));
    ws.on('error', (err) => this.drop(err.message));
  }

  private onMessage(text: string): void {
    this.touch();
    // Events frames (nearly all of a catch-up) take the hand-written check; zod decides the rest.
    const parsed = parseFrame(ServerFrame, text, fastEventsFrame);
    if (!parsed.ok) {
      this.log.error({ code: parsed.code, message: parsed.message }, 'bad frame from hub');
      return this.drop(`bad frame from hub: ${parsed.message}`);
    }
    const frame = parsed.frame;
    switch (frame.type) {
      case 'welcome':
        this.setState(LinkState.Open);
        this.stableTimer = setTimeout(() => this.backoff.reset(), this.o.stableAfterMs);
        this.emit('welcome', frame);
        break;
      case 'events':
        this.emit('events', frame, text.length);
        break;
      case 'snapshot':
        this.emit('snapshot', frame, text.length);
        break;
      case 'ack':
        this.emit('ack', frame);
        break;
      case 'error':
        this.log.warn({ code: frame.code, message: frame.message }, 'hub error');
        this.emit('hubError', frame);
        break;
    }
  }

  private touch(): void {
    this.lastTraffic = Date.now();
  }

  /**
   * Drop a link that has been silent too long (a dead hub or a cut cable never sends a close), and
   * ping on every tick, also while bytes are arriving: the ping is the hub's proof that this device
   * is alive when the hub's own ping waits behind a slowly delivered stream.
   */
  private checkLive(): void {
    if (this.paused) this.touch();
    else if (Date.now() - this.lastTraffic > this.o.deadAfterMs) return this.drop('no traffic from hub: connection presumed dead');
    this.ws?.ping();
  }

  private drop(reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    this.clearTimers();
    ws.removeAllListeners();
    ws.on('error', () => {});
    ws.terminate();
    if (this.state === LinkState.Stopped) return;
    const retryInMs = this.backoff.next();
    // With several hub nodes, the next attempt goes to the next one: this one may be down.
    this.node = (this.node + 1) % this.urls.length;
    this.log.info({ reason, retryInMs, ...(this.urls.length > 1 ? { next: this.urls[this.node] } : {}) }, 'link down');
    this.setState(LinkState.Waiting);
    this.emit('down', { reason, retryInMs });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.state === LinkState.Waiting) this.connect();
    }, retryInMs);
  }

  private clearTimers(): void {
    for (const t of [this.retryTimer, this.stableTimer]) if (t) clearTimeout(t);
    if (this.liveTimer) clearInterval(this.liveTimer);
    this.retryTimer = this.stableTimer = this.liveTimer = null;
  }

  private setState(state: LinkState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }
}

/**
 * The sync URL for a hub base URL; a URL that already ends in the sync path is kept. Several
 * base URLs separated by commas (hub nodes) give their sync URLs, separated by commas.
 */
export function syncUrl(hub: string, project: string): string {
  if (hub.includes(',')) return hub.split(',').map((h) => syncUrl(h.trim(), project)).join(',');
  const url = new URL(hub);
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new Error(`hub URL must start with ws:// or wss://, got ${hub}`);
  if (/\/v1\/projects\/[^/]+\/sync$/.test(url.pathname)) return url.toString();
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/projects/${encodeURIComponent(project)}/sync`;
  return url.toString();
}
