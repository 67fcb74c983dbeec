// Test kit: a raw wire-protocol v1 client over `ws`, for hub tests, chaos runs and benchmarks.
//
// Exports: SyncClient (connect / open / hello / push / send / nextFrame / waitForSeq /
// waitForClose / pause / resume / close / terminate), closeAllClients (afterEach),
// upgradeRefusal (status of a refused upgrade), makeEvent / makeEvents (valid push
// events), syncUrl, range, seededRandom, delay, eventually.
//
//   const c = await SyncClient.connect(hub.url, 'p1', token);
//   await c.hello('dev-a', 0);                          // -> welcome frame
//   const ack = await c.push(1, [makeEvent(1)]);        // -> ack frame of batch 1
//   await c.waitForSeq(ack.acks[0].serverSeq);          // the stream reached it
//   c.seqs                                              // every streamed seq, in arrival order
//
// Every frame received is parsed with the ServerFrame zod schema. A frame that
// does not parse is recorded in `badFrames` and makes every pending and later
// wait reject; `closeAllClients()` (for afterEach) also throws if any client got one.
// Every wait has a timeout and rejects early when the socket closes first.
import { WebSocket, type RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { PushEvent, SyncEvent } from '../../shared/event.ts';
import { PROTOCOL_VERSION } from '../../shared/limits.ts';
import { ServerFrame, syncPath, type AckFrame, type ErrorFrame, type WelcomeFrame } from '../../shared/protocol.ts';

type FrameType = ServerFrame['type'];
type FrameOf<T extends FrameType> = Extract<ServerFrame, { type: T }>;

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface ClientOptions {
  /**
   * Keep event bodies in `events` and events frames in the inbox (default true).
   * Turn off for bulk tests: then only `seqs` (and arrival times) are kept.
   */
  keepEvents?: boolean;
  /** Extra headers for the upgrade request. */
  headers?: Record<string, string>;
  /** Timeout for the upgrade (default 5000 ms). */
  connectTimeoutMs?: number;
}

interface Waiter {
  check: () => boolean;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const clients = new Set<SyncClient>();

/** The full sync URL for a project: accepts a base URL or one that already ends in the sync path. */
export function syncUrl(url: string, project: string): string {
  return url.includes('/v1/projects/') ? url : url.replace(/\/$/, '') + syncPath(project);
}

export class SyncClient {
  /** Every seq from every events frame, in arrival order (duplicates kept, so tests can see them). */
  readonly seqs: number[] = [];
  /** Event bodies in arrival order (only with keepEvents). */
  readonly events: SyncEvent[] = [];
  /** performance.now() at which each seq first arrived. */
  readonly arrivals = new Map<number, number>();
  /** Acks by batch number. */
  readonly acks = new Map<number, AckFrame>();
  /** Error frames received. */
  readonly errors: ErrorFrame[] = [];
  /** Raw texts of received frames that failed to parse (must stay empty). */
  readonly badFrames: string[] = [];
  /** Frames not yet taken by nextFrame(), in arrival order (events frames only with keepEvents). */
  readonly inbox: ServerFrame[] = [];
  /** Number of events frames received. */
  eventFrames = 0;
  /** Events frames whose headSeq was below their throughSeq (a hub inconsistency; should stay 0). */
  headBehindFrames = 0;
  /** Size in bytes and event count of every events frame received, in arrival order. */
  readonly eventFrameSizes: { bytes: number; events: number }[] = [];
  /** Set once the socket closed. */
  closeInfo: CloseInfo | null = null;
  /** Resolves when the socket closes. */
  readonly closed: Promise<CloseInfo>;
  deviceId = '';

  private waiters = new Set<Waiter>();
  private highest = 0;
  private readonly keepEvents: boolean;

  private constructor(
    readonly ws: WebSocket,
    opts: ClientOptions,
  ) {
    this.keepEvents = opts.keepEvents ?? true;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        clients.delete(this);
        resolve(this.closeInfo);
        this.settle();
      });
    });
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('error', () => {}); // surfaced through closeInfo and rejected waits
    clients.add(this);
  }

  /**
   * Open a socket to `/v1/projects/<project>/sync` with `Authorization: Bearer <token>`.
   * Rejects (with `status` set) when the upgrade is refused.
   */
  static connect(url: string, project: string, token: string | null, opts: ClientOptions = {}): Promise<SyncClient> {
    const headers: Record<string, string> = { ...opts.headers };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const ws = new WebSocket(syncUrl(url, project), { headers, maxPayload: 512 * 1024 * 1024 });
    const client = new SyncClient(ws, opts);
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clients.delete(client);
        reject(err);
      };
      const timer = setTimeout(() => {
        ws.terminate();
        fail(new Error(`connect to ${syncUrl(url, project)} timed out`));
      }, opts.connectTimeoutMs ?? 5000);
      ws.once('open', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(client);
      });
      ws.once('unexpected-response', (req, res: IncomingMessage) => {
        req.destroy();
        fail(Object.assign(new Error(`upgrade refused: HTTP ${res.statusCode}`), { status: res.statusCode }));
      });
      ws.once('error', (err) => fail(err));
    });
  }

  /** Connect and say hello in one step. */
  static async open(url: string, project: string, token: string, deviceId: string, afterSeq = 0, opts: ClientOptions = {}): Promise<SyncClient> {
    const c = await SyncClient.connect(url, project, token, opts);
    await c.hello(deviceId, afterSeq);
    return c;
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    const text = buf.toString();
    let frame: ServerFrame;
    try {
      if (isBinary) throw new Error('binary frame');
      const result = ServerFrame.safeParse(JSON.parse(text));
      if (!result.success) throw new Error(result.error.message);
      frame = result.data;
    } catch (err) {
      this.badFrames.push(`${(err as Error).message}: ${text.slice(0, 300)}`);
      this.settle();
      return;
    }
    if (frame.type === 'events') {
      this.eventFrames++;
      this.eventFrameSizes.push({ bytes: buf.length, events: frame.events.length });
      if (frame.headSeq < frame.throughSeq) this.headBehindFrames++;
      const now = performance.now();
      for (const e of frame.events) {
        this.seqs.push(e.serverSeq);
        if (e.serverSeq > this.highest) this.highest = e.serverSeq;
        if (!this.arrivals.has(e.serverSeq)) this.arrivals.set(e.serverSeq, now);
        if (this.keepEvents) this.events.push(e);
      }
      if (this.keepEvents) this.inbox.push(frame);
    } else {
      if (frame.type === 'ack') this.acks.set(frame.batch, frame);
      if (frame.type === 'error') this.errors.push(frame);
      this.inbox.push(frame);
    }
    this.settle();
  }

  /** Re-check every pending wait. */
  private settle(): void {
    for (const w of [...this.waiters]) {
      if (this.badFrames.length) {
        this.finish(w);
        w.reject(new Error(`received a frame that does not parse: ${this.badFrames[0]}`));
      } else if (w.check()) {
        this.finish(w);
      } else if (this.closeInfo) {
        this.finish(w);
        w.reject(new Error(`socket closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting; errors: ${JSON.stringify(this.errors)}`));
      }
    }
  }

  private finish(w: Waiter): void {
    clearTimeout(w.timer);
    this.waiters.delete(w);
  }

  /**
   * Resolve with `get()` once it returns a value (checked now and after each frame);
   * reject on timeout, on close, or on an unparseable frame.
   */
  private waitUntil<T>(get: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let value: T | undefined;
      const w: Waiter = {
        check: () => {
          value = get();
          if (value === undefined) return false;
          resolve(value);
          return true;
        },
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (max seq ${this.maxSeq()}, errors ${JSON.stringify(this.errors)})`));
        }, timeoutMs),
      };
      this.waiters.add(w);
      this.settle();
    });
  }

  /** Send a frame: an object is JSON-encoded, a string is sent as text, a Buffer as binary. */
  send(frame: object | string | Buffer): void {
    if (Buffer.isBuffer(frame)) this.ws.send(frame, { binary: true });
    else this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Send hello and wait for welcome; rejects with the error frame's code if the hub answers with an error. */
  async hello(deviceId: string, afterSeq = 0, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WelcomeFrame> {
    this.deviceId = deviceId;
    this.send({ type: 'hello', protocol: PROTOCOL_VERSION, deviceId, afterSeq });
    const frame = await this.nextFrame(undefined, timeoutMs, (f) => f.type === 'welcome' || f.type === 'error');
    if (frame.type === 'error') throw Object.assign(new Error(`hello refused: ${frame.code}: ${frame.message}`), { code: frame.code });
    return frame as WelcomeFrame;
  }

  /**
   * Send a push and resolve with its ack (matched by batch). Rejects if the socket
   * closes first. The returned promise never causes an unhandled rejection.
   */
  push(batch: number, events: PushEvent[], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<AckFrame> {
    const p = this.waitUntil(() => this.acks.get(batch), `ack of batch ${batch}`, timeoutMs);
    this.send({ type: 'push', batch, events });
    p.catch(() => {});
    return p;
  }

  /** Like push, for a push frame already encoded (e.g. JSON nested too deep for JSON.stringify). */
  pushText(batch: number, frameText: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<AckFrame> {
    const p = this.waitUntil(() => this.acks.get(batch), `ack of batch ${batch}`, timeoutMs);
    this.send(frameText);
    p.catch(() => {});
    return p;
  }

  /**
   * Take the next frame of `type` (any type when omitted) from the inbox, waiting for it.
   * Frames of other types stay in the inbox. Events frames are only there with keepEvents.
   */
  nextFrame<T extends FrameType>(type: T, timeoutMs?: number): Promise<FrameOf<T>>;
  nextFrame(type?: undefined, timeoutMs?: number, match?: (f: ServerFrame) => boolean): Promise<ServerFrame>;
  nextFrame(type?: FrameType, timeoutMs = DEFAULT_TIMEOUT_MS, match?: (f: ServerFrame) => boolean): Promise<ServerFrame> {
    const test = match ?? ((f: ServerFrame) => type === undefined || f.type === type);
    return this.waitUntil(
      () => {
        const i = this.inbox.findIndex(test);
        return i < 0 ? undefined : this.inbox.splice(i, 1)[0];
      },
      `a ${type ?? 'matching'} frame`,
      timeoutMs,
    );
  }

  /** The highest seq received so far (0 for none). */
  maxSeq(): number {
    return this.highest;
  }

  /** Wait until the stream has delivered seq `n` (or beyond); resolves with the number of seqs received. */
  waitForSeq(n: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<number> {
    return this.waitUntil(() => (this.highest >= n ? this.seqs.length : undefined), `seq ${n}`, timeoutMs);
  }

  /** Wait for the socket to close (without closing it). */
  waitForClose(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<CloseInfo> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
      void this.closed.then((info) => {
        clearTimeout(timer);
        resolve(info);
      });
    });
  }

  /** Stop reading from the socket (the hub's writes back up into its buffers). */
  pause(): void {
    (this.ws as unknown as { _socket: import('node:net').Socket })._socket.pause();
  }

  /** Read again after pause(). */
  resume(): void {
    (this.ws as unknown as { _socket: import('node:net').Socket })._socket.resume();
  }

  /** Close (code 1000) and wait for the close; terminates if the peer does not answer in time. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closeInfo) return;
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    const timer = setTimeout(() => this.ws.terminate(), timeoutMs);
    await this.closed;
    clearTimeout(timer);
  }

  /** Drop the TCP connection without a closing handshake. */
  terminate(): void {
    this.ws.terminate();
  }
}

/**
 * Close every client still open and throw if any client received a frame that
 * does not parse. Use in afterEach.
 */
export async function closeAllClients(): Promise<void> {
  const all = [...clients];
  await Promise.all(all.map((c) => c.close()));
  const bad = all.filter((c) => c.badFrames.length);
  if (bad.length) throw new Error(`clients received unparseable frames: ${bad.map((c) => c.badFrames[0]).join('; ')}`);
}

/** Fails the calling test if `c` got a frame that does not parse. */
export function assertNoBadFrames(c: SyncClient): void {
  if (c.badFrames.length) throw new Error(`unparseable frame: ${c.badFrames[0]}`);
}

/**
 * Attempt an upgrade that the hub should refuse: resolves with the HTTP status
 * (and body) of the `unexpected-response`; rejects if a socket opens.
 */
export function upgradeRefusal(fullUrl: string, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(fullUrl, { headers });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('no answer to the upgrade'));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      ws.terminate();
      reject(new Error('the upgrade was accepted: a socket opened'));
    });
    ws.once('unexpected-response', (req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

const FIXED_TIME = '2025-01-02T03:04:05.678Z';

/** Options of makeEvent besides PushEvent fields. */
export interface MakeEventExtras {
  /** Pad newData with a string field so the payload is about this many bytes (e.g. 300). */
  payloadBytes?: number;
}

/** A valid push event: a `create` of `issues/i-<clientActionId>` in session 's1'. */
export function makeEvent(clientActionId: number, overrides: Partial<PushEvent> & MakeEventExtras = {}): PushEvent {
  const { payloadBytes, ...fields } = overrides;
  const newData: Record<string, unknown> = { id: `i-${clientActionId}`, title: `issue ${clientActionId}` };
  if (payloadBytes) {
    const base = JSON.stringify({ schemaVersion: 1, newData, previousData: null }).length + ',"body":""'.length;
    newData.body = 'x'.repeat(Math.max(0, payloadBytes - base));
  }
  return {
    clientActionId,
    sessionId: 's1',
    actionType: 'create',
    entityType: 'issues',
    entityId: `i-${clientActionId}`,
    payload: { schemaVersion: 1, newData, previousData: null },
    clientTimestamp: FIXED_TIME,
    ...fields,
  };
}

/** `count` events with clientActionIds first, first+1, ... */
export function makeEvents(first: number, count: number, overrides: Partial<PushEvent> & MakeEventExtras = {}): PushEvent[] {
  return Array.from({ length: count }, (_, i) => makeEvent(first + i, overrides));
}

/** [from, from+1, ..., to] (empty when to < from). */
export function range(from: number, to: number): number[] {
  return to < from ? [] : Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A small seeded PRNG (mulberry32): same seed, same sequence. Returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Resolve after `ms` (for pacing load, never as an assertion). */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `cond` every `everyMs` until true; reject after timeoutMs. For state with no event to await (e.g. metrics). */
export async function eventually(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(everyMs);
  }
}
