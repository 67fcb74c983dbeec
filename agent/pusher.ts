// Pushes the outbox: pending action_log rows in rowid order, in batches, several
// batches in flight (p-queue bounds them), each settled by its ack. Nothing here
// waits on a timer: a wake-up (new local change, ack, reconnect) reads more.
import PQueue from 'p-queue';
import type { AckFrame, PushFrame } from '../shared/protocol.ts';
import type { Logger } from '../shared/log.ts';

export interface PusherDeps {
  /** Pending rows after `afterRowid`, at most `limit`, as push events. */
  readPending(afterRowid: number, limit: number): { events: PushFrame['events']; lastRowid: number };
  /** Send a push; false when the link is not open. */
  send(frame: PushFrame): boolean;
  /** Apply an ack to the outbox (mark synced, quarantine permanent rejections). */
  settle(ack: AckFrame): void;
  log: Logger;
}

export class Pusher {
  private readonly queue: PQueue;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private nextBatch = 1;
  /** Highest rowid handed to a push on this connection. */
  private sentThrough = 0;
  private active = false;
  /** Set while drain() waits for the last acks. */
  private drained: (() => void) | null = null;

  constructor(
    private readonly deps: PusherDeps,
    private readonly batchSize = 500,
    private readonly maxInFlight = 4,
  ) {
    this.queue = new PQueue({ concurrency: maxInFlight });
  }

  /** The link is open (after welcome): start from the first pending row. */
  connected(): void {
    this.active = true;
    this.sentThrough = 0;
    this.wake();
  }

  /** The link went down: every push in flight is unacknowledged and will be re-sent. */
  disconnected(): void {
    this.active = false;
    this.drained?.();
    this.queue.clear();
    for (const w of this.waiting.values()) w.reject(new Error('link down'));
    this.waiting.clear();
  }

  /**
   * Stop sending, and resolve once every push in flight is answered (or after timeoutMs). A stopping
   * agent waits here before it closes its socket: the hub cannot answer after the close, so a push it
   * committed meanwhile would stay unacknowledged here although it is in the log.
   */
  drain(timeoutMs: number): Promise<void> {
    this.active = false;
    this.queue.clear();
    if (this.waiting.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.drained = null;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      this.drained = done;
    });
  }

  get inFlight(): number {
    return this.waiting.size;
  }

  /** Fill the pipeline with pending rows not yet sent on this connection. */
  wake(): void {
    while (this.active && this.queue.size + this.queue.pending < this.maxInFlight) {
      const { events, lastRowid } = this.deps.readPending(this.sentThrough, this.batchSize);
      if (events.length === 0) {
        // A page of rows that were all quarantined moves the cursor on; an empty page ends.
        if (lastRowid <= this.sentThrough) return;
        this.sentThrough = lastRowid;
        continue;
      }
      this.sentThrough = lastRowid;
      const batch = this.nextBatch++;
      const frame: PushFrame = { type: 'push', batch, events };
      void this.queue
        .add(() => this.pushAndWait(frame))
        .catch(() => {
          /* link down: the rows stay pending and go again after reconnect */
        });
    }
  }

  private pushAndWait(frame: PushFrame): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (!this.active || !this.deps.send(frame)) return reject(new Error('link down'));
      this.waiting.set(frame.batch, { resolve, reject });
    });
  }

  onAck(ack: AckFrame): void {
    const w = this.waiting.get(ack.batch);
    this.deps.settle(ack);
    if (!w) return;
    this.waiting.delete(ack.batch);
    w.resolve();
    if (this.drained && this.waiting.size === 0) this.drained();
    // Let p-queue free the slot first (it settles over a few microtasks), then refill.
    setImmediate(() => this.wake());
  }
}
