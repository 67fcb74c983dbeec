// One device's socket: waits for hello, then streams the project's log from the
// device's own cursor (backlog from the store, then live from the in-memory tail)
// while accepting pushes, at the pace the device reads (see flow-control.ts).
// Protocol errors get an `error` frame and a close.
import type { Duplex } from 'node:stream';
import type { WebSocket, RawData } from 'ws';
import { CloseCode, ErrorCode, RejectReason } from '../shared/errors.ts';
import { PROTOCOL_VERSION } from '../shared/limits.ts';
import type { Logger } from '../shared/log.ts';
import { ClientFrame, parseFrame, type HelloFrame, type PushFrame, type Rejection, type Ack } from '../shared/protocol.ts';
import type { ConnectionToken } from './admission.ts';
import type { HubOptions } from './config.ts';
import { buildFrame, type Frame, type ProjectChannel, type Subscriber } from './fanout.ts';
import { FlowControl } from './flow-control.ts';
import { PushCancelled, type GroupCommitter } from './commit.ts';
import type { HubMetrics } from './metrics.ts';
import type { EventStore, SnapshotReader } from './store/event-store.ts';
import type { PushEvent } from '../shared/event.ts';
import { EventBucket } from './rate-limit.ts';
import { decideResume } from './resume-check.ts';
import { snapshotFrame } from './snapshot-frame.ts';
import { checkEvent } from './validate-event.ts';
import { fastPushFrame } from '../shared/push-fast-path.ts';

export const ConnState = {
  AwaitingHello: 'awaiting_hello',
  /** hello received, welcome not yet sent: pushes wait in `early`. */
  Greeting: 'greeting',
  Streaming: 'streaming',
  Closed: 'closed',
} as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];

export interface ConnectionDeps {
  options: HubOptions;
  store: EventStore;
  committer: GroupCommitter;
  metrics: HubMetrics;
  log: Logger;
  channel: (project: string) => Promise<ProjectChannel>;
  /** True once the hub is shutting down: new frames are ignored (unacked pushes are re-sent by clients). */
  stopping: () => boolean;
  /** A connection is being closed with an error frame (for the dashboard's recent errors). */
  onError?: (e: { code: string; message: string; project: string; deviceId: string }) => void;
  /** The socket has closed (after the connection's own clean-up): the hub forgets it. */
  closed?: (conn: Connection) => void;
}

/**
 * Every socket's listeners are the same few functions, not closures per socket: with tens of
 * thousands of idle sockets, a closure per event and socket costs more than the rest of the
 * connection. `this` is the emitter; its connection is found under this key.
 */
const CONN = Symbol('synchub.connection');
type Owned = { [CONN]: Connection };

export class Connection implements Subscriber {
  state: ConnState = ConnState.AwaitingHello;
  deviceId = '';
  /** Last seq sent to this socket. */
  private cursor = 0;
  private channel: ProjectChannel | null = null;
  /** A snapshot being sent before the stream (hello.bootstrap); the cursor is its throughSeq. */
  private snapshot: SnapshotReader | null = null;
  private pumping = false;
  private pumpAgain = false;
  /** Held back by the flow window or the high-water mark: waiting for the device to read. */
  private blocked = false;
  private readonly flow: FlowControl;
  /** Bytes per event in the last backlog frame: how many events to read for a frame of a given size. */
  private eventBytes = 512;
  /** Set by the ping sweep; cleared by a pong. */
  awaitingPong = false;
  /** Log lines carry the device id from here on (hello accepted). */
  private logDevice = false;
  /** Pushes that arrived between hello and welcome (made on the first). */
  private early: { push: PushFrame; bytes: number }[] | null = null;
  /** Made on the first push: a socket that only reads never needs one. */
  private bucket: EventBucket | null = null;
  /** Set while over the events/s rate: reading waits for it. */
  private resumeTimer: NodeJS.Timeout | null = null;
  /** Bytes of this socket's pushes read but not yet answered (waiting for hello, or for their commit). */
  private pendingBytes = 0;
  private readPaused = false;
  /** Until hello (then dropped, with what it holds). */
  private helloTimer: NodeJS.Timeout | null;
  /** For the admin listener's status (connectedSince), as a number until asked for. */
  private readonly connectedAt = Date.now();

  constructor(
    private readonly ws: WebSocket,
    /**
     * The socket under `ws`: bytes of an upload still arriving count as a sign of life, not only
     * whole messages; and reading it stops while the client is over its rate.
     */
    private readonly socket: Duplex,
    readonly project: string,
    /** The token this socket was opened with: its role, and its id (device binding, revocation). */
    readonly token: ConnectionToken,
    private readonly deps: ConnectionDeps,
  ) {
    this.flow = new FlowControl(deps.options.maxFrameBytes, deps.options.highWaterBytes);
    (ws as WebSocket & Owned)[CONN] = this;
    (socket as Duplex & Owned)[CONN] = this;
    socket.on('data', Connection.onData);
    ws.on('message', Connection.onWsMessage);
    ws.on('pong', Connection.onPong);
    ws.on('ping', Connection.onPing);
    ws.on('close', Connection.onWsClose);
    ws.on('error', Connection.onWsError);
    // A socket that never says hello holds a file descriptor for nothing.
    this.helloTimer = setTimeout(Connection.onHelloTimeout, deps.options.helloTimeoutMs, this);
  }

  private static onData(this: Duplex, chunk: Buffer): void {
    (this as Duplex & Owned)[CONN].flow.heard(chunk.length, performance.now());
  }

  private static onWsMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
    (this as WebSocket & Owned)[CONN].onMessage(data, isBinary);
  }

  private static onPong(this: WebSocket, data: Buffer): void {
    const conn = (this as WebSocket & Owned)[CONN];
    conn.awaitingPong = false;
    if (conn.flow.onPong(data, conn.ws, performance.now())) conn.unblock();
  }

  /**
   * Any frame from the device proves it alive, as a pong does: a slow reader's pong waits behind
   * the stream it is still reading, while its own pings and pushes get through.
   */
  private static onPing(this: WebSocket): void {
    (this as WebSocket & Owned)[CONN].awaitingPong = false;
  }

  private static onWsClose(this: WebSocket): void {
    (this as WebSocket & Owned)[CONN].onClose();
  }

  private static onWsError(this: WebSocket, err: Error): void {
    (this as WebSocket & Owned)[CONN].log.debug({ err: err.message }, 'socket error');
  }

  private static onHelloTimeout(conn: Connection): void {
    if (conn.state === ConnState.AwaitingHello) conn.fail(ErrorCode.HelloRequired, 'no hello received in time');
  }

  /**
   * This connection's logger: lines carry the project, and the device id once hello is accepted.
   * Made per line rather than kept per socket (a line per connection event; an idle socket logs nothing).
   */
  private get log(): Logger {
    return this.deps.log.child(this.logDevice ? { project: this.project, deviceId: this.deviceId } : { project: this.project });
  }

  /** For the admin listener's status: the device's address and port. */
  get address(): string {
    const remote = this.socket as Duplex & { remoteAddress?: string; remotePort?: number };
    return remote.remoteAddress?.includes(':') ? `[${remote.remoteAddress}]:${remote.remotePort}` : `${remote.remoteAddress}:${remote.remotePort}`;
  }

  get connectedSince(): string {
    return new Date(this.connectedAt).toISOString();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.awaitingPong = false;
    if (this.state === ConnState.Closed || this.deps.stopping()) return;
    const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    if (bytes > this.deps.options.maxFrameBytes) {
      return this.fail(ErrorCode.FrameTooLarge, `frame of ${bytes} bytes exceeds the limit of ${this.deps.options.maxFrameBytes}`);
    }
    if (isBinary) return this.fail(ErrorCode.InvalidFrame, 'frames must be JSON text, not binary');
    const parsed = parseFrame(ClientFrame, data.toString(), fastPushFrame);
    if (!parsed.ok) return this.fail(parsed.code, parsed.message);
    const frame = parsed.frame;
    if (frame.type === 'hello') {
      if (this.state !== ConnState.AwaitingHello) return this.fail(ErrorCode.DuplicateHello, 'hello was already received on this connection');
      void this.onHello(frame).catch((err) => this.internal(err));
    } else {
      if (this.state === ConnState.AwaitingHello) return this.fail(ErrorCode.HelloRequired, 'the first frame must be hello');
      this.hold(bytes);
      if (this.state === ConnState.Greeting) (this.early ??= []).push({ push: frame, bytes });
      else this.onPush(frame, bytes);
    }
  }

  private async onHello(hello: HelloFrame): Promise<void> {
    if (hello.protocol !== PROTOCOL_VERSION) {
      return this.fail(ErrorCode.UnsupportedProtocol, `protocol ${hello.protocol} is not supported; this hub speaks ${PROTOCOL_VERSION}`);
    }
    clearTimeout(this.helloTimer!);
    this.helloTimer = null;
    this.state = ConnState.Greeting;
    this.deviceId = hello.deviceId;
    // Device ids are visible in the stream: without this, any member could push under another
    // device's id, take the dedup keys it will use, and have its real changes answered `duplicate`.
    if (!(await this.deps.store.bindDevice(this.project, hello.deviceId, this.token.id, new Date().toISOString()))) {
      return this.fail(ErrorCode.Forbidden, `device id ${hello.deviceId} belongs to another token in this project`);
    }
    if (this.isClosed()) return;
    const channel = await this.deps.channel(this.project);
    if (this.isClosed()) return;
    // With several hub nodes this node may not have heard of the latest commits yet: ask the store.
    const head = hello.afterSeq > channel.head ? await this.deps.store.headSeq(this.project) : channel.head;
    if (this.isClosed()) return;
    const decision = await decideResume(this.deps.store, this.project, hello, head);
    if (this.isClosed()) return;
    if (decision.kind === 'refuse') return this.fail(decision.code, decision.message);
    this.state = ConnState.Streaming;
    this.logDevice = true;
    this.cursor = hello.afterSeq;
    if (decision.kind === 'snapshot') {
      // Opened before any early push of this device is committed: its pushes all land after the snapshot.
      this.snapshot = await this.deps.store.openSnapshot!(this.project);
      this.cursor = this.snapshot.throughSeq;
      if (this.isClosed()) return this.closeSnapshot();
      this.log.info({ throughSeq: this.snapshot.throughSeq }, 'sending a snapshot');
    }
    this.channel = channel;
    // Subscribe before sending anything: every commit from here on wakes us, and the
    // cursor decides what is sent, so the backlog-to-live switch has no gap or duplicate.
    channel.subscribers.add(this);
    channel.sync(head);
    const headSeq = Math.max(head, channel.head);
    this.send(JSON.stringify({ type: 'welcome', project: this.project, deviceId: hello.deviceId, headSeq }));
    this.log.info({ afterSeq: hello.afterSeq, headSeq }, 'device connected');
    const early = this.early ?? [];
    this.early = null;
    for (const { push, bytes } of early) this.onPush(push, bytes);
    this.wake();
  }

  private onPush(push: PushFrame, bytes: number): void {
    if (this.token.role === 'read') return this.fail(ErrorCode.Forbidden, 'this token is read-only and cannot push');
    const max = this.deps.options.maxBatchEvents;
    if (push.events.length > max) return this.fail(ErrorCode.BatchTooLarge, `push of ${push.events.length} events exceeds the limit of ${max}`);

    this.limitRate(push.events.length);
    if (this.isClosed()) return;
    const rejected: Rejection[] = [];
    const accepted: PushEvent[] = [];
    const payloadJson: string[] = [];
    for (const e of push.events) {
      const check = checkEvent(e, this.deps.options.maxEventBytes);
      if (!check.ok) {
        rejected.push({ clientActionId: e.clientActionId, reason: check.reason });
      } else {
        accepted.push(e);
        payloadJson.push(check.payloadJson);
      }
    }
    this.deps.metrics.pushes.inc();
    if (accepted.length === 0) {
      this.release(bytes);
      return this.sendAck(push.batch, [], rejected);
    }

    this.deps.committer.submit({ project: this.project, deviceId: this.deviceId, events: accepted, payloadJson }, () => this.isClosed()).then(
      (outcomes) => {
        this.release(bytes);
        const acks: Ack[] = [];
        outcomes.forEach((o, i) => {
          const clientActionId = accepted[i]!.clientActionId;
          if (o.stored) acks.push({ clientActionId, serverSeq: o.seq });
          else rejected.push({ clientActionId, reason: RejectReason.Duplicate, serverSeq: o.seq });
        });
        this.sendAck(push.batch, acks, rejected);
      },
      (err: unknown) => {
        // Dropped because this connection closed first: there is no one to answer.
        if (err instanceof PushCancelled) return;
        this.log.error({ err: String(err) }, 'commit failed');
        // Nothing of this push was stored; the device keeps it pending and retries.
        this.fail(ErrorCode.StoreUnavailable, 'the hub could not store this push; retry later', CloseCode.Internal);
      },
    );
  }

  /** Over its events/s: stop reading this socket until the bucket refills (or close a client that keeps at it). */
  private limitRate(events: number): void {
    const now = performance.now();
    // Made full on the first push, as one made with the socket would be by then.
    if (!this.bucket) {
      const { maxEventsPerSecond, maxBatchEvents, floodMs } = this.deps.options;
      this.bucket = new EventBucket(maxEventsPerSecond, Math.max(maxEventsPerSecond, maxBatchEvents), floodMs, now);
    }
    const waitMs = this.bucket.take(events, now);
    if (waitMs === 0) return;
    this.deps.metrics.rateLimited.inc();
    if (waitMs < 0) {
      const { maxEventsPerSecond, floodMs } = this.deps.options;
      return this.fail(ErrorCode.RateLimited, `over ${maxEventsPerSecond} events/s for ${floodMs} ms`);
    }
    if (this.resumeTimer) return;
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = null;
      this.updateReading();
    }, waitMs);
    this.updateReading();
  }

  /**
   * A push was read: past maxFrameBytes of pushes waiting for their commit, stop reading this socket.
   * A client that pipelines pushes faster than the store commits them then waits in TCP, not in
   * hub memory; one frame always fits, so a client is never stuck.
   */
  private hold(bytes: number): void {
    this.pendingBytes += bytes;
    this.updateReading();
  }

  /** A push was answered. */
  private release(bytes: number): void {
    this.pendingBytes -= bytes;
    this.updateReading();
  }

  private updateReading(): void {
    const pause = !this.isClosed() && (this.resumeTimer !== null || this.pendingBytes > this.deps.options.maxFrameBytes);
    if (pause === this.readPaused) return;
    this.readPaused = pause;
    if (pause) this.socket.pause();
    else this.socket.resume();
  }

  private sendAck(batch: number, acks: Ack[], rejected: Rejection[]): void {
    if (rejected.length) this.deps.metrics.rejected.inc(rejected.length);
    this.send(JSON.stringify({ type: 'ack', batch, acks, rejected }));
  }

  /** For the admin listener: the last seq sent, and the bytes queued in the socket; null before welcome. */
  streamState(): { cursor: number; bytesBuffered: number } | null {
    if (this.state !== ConnState.Streaming) return null;
    return { cursor: this.cursor, bytesBuffered: this.ws.bufferedAmount };
  }

  /** Send what the cursor has not seen, until caught up or the device is as far behind as it may be. */
  wake(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void this.pump().catch((err) => this.internal(err));
  }

  private async pump(): Promise<void> {
    try {
      do {
        this.pumpAgain = false;
        await this.sendUntilHeld();
      } while (this.pumpAgain && !this.isClosed());
    } finally {
      // In the same tick as the last check: a wake() from a send callback or a pong is never lost.
      this.pumping = false;
    }
  }

  private async sendUntilHeld(): Promise<void> {
    const channel = this.channel!;
    const { highWaterBytes, pageEvents } = this.deps.options;
    // A snapshot goes first, paced like the stream: pages of about a second of the device's reading.
    while (this.snapshot && !this.isClosed()) {
      if (!this.flow.canSend() || this.ws.bufferedAmount > highWaterBytes) {
        this.block();
        return;
      }
      const snapshot = this.snapshot;
      const page = await snapshot.next(this.flow.frameBytes);
      if (this.isClosed()) return;
      if (page.done) this.closeSnapshot();
      this.send(snapshotFrame(page.rows, snapshot.throughSeq, page.done ? snapshot.throughDigest : null));
    }
    while (this.cursor < channel.head && !this.isClosed()) {
      if (!this.flow.canSend() || this.ws.bufferedAmount > highWaterBytes) {
        this.block();
        return;
      }
      // Sized in bytes to about a second of this device's reading.
      const frameBytes = this.flow.frameBytes;
      let frame: Frame | null = channel.frameAfter(this.cursor, frameBytes);
      if (!frame) {
        // Read about as many events as the frame holds, not a whole page for a slow reader's few.
        const limit = Math.min(pageEvents, Math.ceil((frameBytes * 1.25) / this.eventBytes));
        const page = await this.deps.store.readAfter(this.project, this.cursor, limit);
        if (page.length === 0 || this.isClosed()) return;
        if (page[0]!.seq !== this.cursor + 1) {
          // Compacted while this device was reading its backlog.
          return this.fail(ErrorCode.CursorTooOld, `the log after seq ${this.cursor} was compacted; reconnect with bootstrap: true`);
        }
        // Bounded in size too: with large events the frame covers only a prefix of the page.
        frame = buildFrame(page, channel.head, frameBytes);
        this.eventBytes = Math.max(1, frame.data.length / (frame.throughSeq - frame.firstSeq + 1));
        this.deps.metrics.backlogReads.inc();
        this.deps.metrics.backlogFrameBytes.observe(frame.data.length);
      }
      this.cursor = frame.throughSeq;
      this.send(frame.data);
    }
  }

  /** The device is as far behind as it may be: wait until it reads (checkStall closes it if it never does). */
  private block(): void {
    this.blocked = true;
    this.flow.hold(this.ws, performance.now());
  }

  /** Resume once the device has read enough and the socket's buffer is down to half the mark. */
  private unblock(): void {
    if (!this.blocked || !this.flow.canSend()) return;
    if (this.ws.bufferedAmount > this.deps.options.highWaterBytes / 2) return;
    this.blocked = false;
    this.flow.resume();
    this.wake();
  }

  /** Stall sweep: close a connection whose device has read nothing for stallTimeoutMs. */
  checkStall(): void {
    const { stallTimeoutMs } = this.deps.options;
    if (this.isClosed() || !this.flow.stalled(performance.now(), stallTimeoutMs)) return;
    this.deps.metrics.slowConsumers.inc();
    this.fail(ErrorCode.SlowConsumer, `nothing of the stream read for ${stallTimeoutMs} ms`, CloseCode.PolicyViolation, true);
  }

  private send(data: string | Buffer): void {
    if (this.isClosed()) return;
    this.deps.metrics.framesSent.inc();
    // The callback runs once the message is handed to the kernel: one way to resume a blocked stream.
    this.flow.transmit(data, this.ws, performance.now(), () => this.unblock());
  }

  /** Send an error frame and close. `terminate` skips the closing handshake (the peer is not reading). */
  fail(code: string, message: string, closeCode: number = CloseCode.PolicyViolation, terminate = false): void {
    if (this.isClosed()) return;
    this.deps.metrics.errors.inc({ code });
    this.deps.onError?.({ code, message, project: this.project, deviceId: this.deviceId });
    this.log.warn({ code, message }, 'closing connection');
    if (!terminate) this.send(JSON.stringify({ type: 'error', code, message }));
    this.detach();
    if (terminate) this.ws.terminate();
    else this.ws.close(closeCode, code);
  }

  private internal(err: unknown): void {
    this.log.error({ err: err instanceof Error ? err.stack : String(err) }, 'internal error');
    this.fail(ErrorCode.Internal, 'internal error', CloseCode.Internal);
  }

  /** Close as part of hub shutdown. */
  shutdown(): void {
    if (this.isClosed()) return;
    this.send(JSON.stringify({ type: 'error', code: ErrorCode.ShuttingDown, message: 'hub is shutting down' }));
    this.detach();
    this.ws.close(CloseCode.GoingAway, ErrorCode.ShuttingDown);
  }

  /** Cut the socket without a closing handshake (the end of a hub shutdown). */
  terminate(): void {
    this.ws.terminate();
  }

  private onClose(): void {
    if (this.state !== ConnState.Closed) this.log.info('device disconnected');
    this.detach();
    this.deps.closed?.(this);
  }

  private closeSnapshot(): void {
    this.snapshot?.close();
    this.snapshot = null;
  }

  private detach(): void {
    this.closeSnapshot();
    this.state = ConnState.Closed;
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    // Read again: the peer's close frame is behind whatever it sent meanwhile (frames of a closed
    // connection are ignored), and the closing handshake needs it.
    this.updateReading();
    this.channel?.subscribers.delete(this);
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
  }

  private isClosed(): boolean {
    return this.state === ConnState.Closed;
  }

  /** Ping sweep: terminate a socket that did not answer the previous ping. */
  ping(): void {
    if (this.awaitingPong) {
      this.log.warn('no pong: terminating dead connection');
      this.detach();
      this.ws.terminate();
      return;
    }
    this.awaitingPong = true;
    this.ws.ping();
  }
}
