// FlowControl on a simulated link (no sockets, a virtual clock): a reader that reads at a fixed rate
// and answers each probe once it has read everything before it, as a WebSocket client does.
import { describe, expect, it } from 'vitest';
import { FlowControl, type Wire } from '../../hub/flow-control.ts';
import { seededRandom } from '../kit/ws-client.ts';

const MAX_FRAME = 4 * 1024 * 1024;
const HIGH_WATER = 1024 * 1024;
/** What the socket and the kernel hold before the hub's writes back up (the high-water mark, for the hub). */
const SOCKET_BYTES = 4 * 1024 * 1024;
/** Largest frame the hub has at hand (a page of events, or a shared live frame). */
const PAGE = 400_000;
const TICK_MS = 10;
const WELCOME = JSON.stringify({ type: 'welcome', project: 'p1', deviceId: 'd', headSeq: 1_000_000 });
/** What a device uploading a push batch (3 KB/s) sends in a tick. */
const UPLOAD_PER_TICK = 30;
const ACK = JSON.stringify({ type: 'ack', acks: 'x'.repeat(3000) });

type Item = { kind: 'data'; bytes: number; fin: boolean } | { kind: 'ping'; payload: Buffer };

/**
 * A link of `rate` bytes/s, a hub with `pending` bytes to send (an endless backlog by default)
 * pumping frames into it as a Connection does (until the flow or the socket's buffer holds it,
 * resuming when a pong or reading makes room), and a stall sweep.
 */
class SimLink implements Wire {
  readonly flow = new FlowControl(MAX_FRAME, HIGH_WATER);
  /** Sent, not yet read. */
  private queue: Item[] = [];
  now = 0;
  read = 0;
  /** Frame sizes the hub chose, in order. */
  readonly frames: number[] = [];
  /** Most bytes sent but not yet read. */
  maxUnread = 0;
  stalledAt: number | null = null;
  /** False: the device's uplink is busy (its own uploads), its answers wait. */
  uplinkOpen = true;
  /** The device is uploading (bytes from it reach the hub), and the hub acks it every tick, outside the window. */
  uploading = false;
  /** The device pings the hub this often (0: never), whether or not it reads. */
  pingEveryMs = 0;
  /** Most answers the device had waiting to be sent. */
  maxHeld = 0;
  private held: Buffer[] = [];
  private sent = 0;
  private blocked = false;

  constructor(
    public rate: number,
    private readonly stallMs = 3000,
    private pending = Infinity,
  ) {}

  /** Commits arrive: `bytes` more to send. */
  burst(bytes: number): void {
    this.pending += bytes;
    if (!this.blocked) this.pump();
  }

  send(data: Buffer | string, { fin }: { fin: boolean }): void {
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.queue.push({ kind: 'data', bytes, fin });
    this.sent += bytes;
  }

  ping(payload: Buffer): void {
    this.queue.push({ kind: 'ping', payload });
  }

  /** Run for `ms`: each tick the reader reads its share. */
  run(ms: number): void {
    if (this.frames.length === 0) {
      this.flow.transmit(WELCOME, this, this.now);
      this.pump();
    }
    for (const end = this.now + ms; this.now < end; this.now += TICK_MS) {
      if (this.pingEveryMs && this.now % this.pingEveryMs === 0) this.flow.heard(14, this.now);
      if (this.uploading) {
        this.flow.heard(UPLOAD_PER_TICK, this.now);
        this.flow.transmit(ACK, this, this.now);
      }
      if (this.uplinkOpen) for (const p of this.held.splice(0)) this.answer(p);
      this.readFor(TICK_MS);
      this.unblock();
      if (this.now % Math.floor(this.stallMs / 4) === 0 && this.stalledAt === null && this.flow.stalled(this.now, this.stallMs)) this.stalledAt = this.now;
    }
  }

  private pump(): void {
    while (this.pending > 0 && this.flow.canSend() && this.sent - this.read < SOCKET_BYTES) {
      const size = Math.min(this.flow.frameBytes, this.pending, PAGE);
      this.pending -= size;
      this.frames.push(size);
      this.flow.transmit(Buffer.alloc(size), this, this.now);
    }
    this.maxUnread = Math.max(this.maxUnread, this.sent - this.read);
    if (this.pending === 0) return; // caught up
    this.blocked = true;
    this.flow.hold(this, this.now);
  }

  private answer(payload: Buffer): void {
    if (this.flow.onPong(payload, this, this.now)) this.unblock();
  }

  private unblock(): void {
    if (!this.blocked || !this.flow.canSend() || this.sent - this.read > SOCKET_BYTES / 2) return;
    this.blocked = false;
    this.flow.resume();
    this.pump();
  }

  private readFor(ms: number): void {
    let budget = (this.rate * ms) / 1000;
    while (this.queue.length && budget > 0) {
      const item = this.queue[0]!;
      if (item.kind === 'ping') {
        this.queue.shift();
        if (this.uplinkOpen) this.answer(item.payload);
        else this.maxHeld = Math.max(this.maxHeld, this.held.push(item.payload));
        continue;
      }
      const n = Math.min(item.bytes, budget);
      item.bytes -= n;
      this.read += n;
      budget -= n;
      if (item.bytes === 0) this.queue.shift();
    }
  }
}

describe('flow control', () => {
  it('sizes frames and the bytes in flight to a 3 KB/s reader, and never calls it stalled', () => {
    const link = new SimLink(3000);
    link.run(120_000);
    // Slow start: the first frames are small (16 KiB and what the welcome's answer adds), and no
    // more than two are in flight before a rate is known; then about a second of reading each, at the 8 KiB floor.
    expect(Math.max(...link.frames)).toBeLessThan(17 * 1024);
    expect(link.maxUnread).toBeLessThan(2 * 17 * 1024);
    expect(link.frames.at(-1)).toBe(8 * 1024);
    // It read steadily: close to 3 KB/s over the two minutes.
    expect(link.read).toBeGreaterThan(0.95 * 3000 * 120);
    expect(link.stalledAt).toBeNull();
  });

  it('is not stalled at 300 bytes/s either, with frames far longer than the stall timeout', () => {
    const link = new SimLink(300, 20_000);
    link.run(120_000);
    expect(link.read).toBeGreaterThan(0.9 * 300 * 120);
    expect(link.stalledAt).toBeNull();
  });

  it('gives a fast reader whole pages within its first round trips', () => {
    const link = new SimLink(200 * 1024 * 1024);
    link.run(100);
    expect(link.frames[0]).toBe(16 * 1024);
    expect(link.frames.indexOf(PAGE)).toBeGreaterThan(0);
    expect(link.frames.indexOf(PAGE)).toBeLessThan(10);
    link.run(1000);
    expect(link.flow.frameBytes).toBe(MAX_FRAME);
    expect(link.stalledAt).toBeNull();
  });

  it('follows a reader that slows down fiftyfold, and one that speeds up', () => {
    const link = new SimLink(1024 * 1024, 60_000);
    link.run(5000);
    expect(link.flow.frameBytes).toBeGreaterThan(512 * 1024);
    // A fast reader is left to the socket's buffer: what was in flight takes minutes at the new rate.
    link.rate = 20_000;
    link.run(400_000);
    expect(link.frames.at(-1)).toBeLessThan(40_000);
    expect(link.stalledAt).toBeNull();
    link.rate = 1024 * 1024;
    link.run(10_000);
    expect(link.flow.frameBytes).toBeGreaterThan(512 * 1024);
  });

  it('calls a reader that stops reading stalled after the stall timeout, not before, though it still pings', () => {
    const link = new SimLink(50_000, 2000);
    link.pingEveryMs = 500;
    link.run(3000);
    link.rate = 0;
    const stoppedAt = link.now;
    link.run(10_000);
    expect(link.stalledAt).not.toBeNull();
    expect(link.stalledAt! - stoppedAt).toBeGreaterThanOrEqual(2000 - 500); // its last answer may predate the stop
    expect(link.stalledAt! - stoppedAt).toBeLessThanOrEqual(2000 + 2 * 500);
  });

  it('sends whole frames to a device that keeps up, and sizes them to it once a burst outruns it', () => {
    // A fast device at the head (nothing to send but the welcome): a burst goes out in whole pages.
    const fast = new SimLink(50 * 1024 * 1024, 60_000, 0);
    fast.run(1000);
    fast.burst(20 * PAGE);
    fast.run(1000);
    expect(fast.frames).toEqual(Array(20).fill(PAGE));
    // A slower one too, as before flow control: up to what the socket holds. Once the stream
    // outruns it, its rate is measured and the rest comes in frames sized to it.
    const slow = new SimLink(30_000, 60_000, 0);
    slow.run(1000);
    slow.burst(6 * 1024 * 1024);
    slow.run(400_000);
    expect(slow.frames[0]).toBe(PAGE);
    expect(slow.maxUnread).toBeLessThanOrEqual(SOCKET_BYTES + PAGE);
    expect(slow.frames.at(-1)).toBeLessThan(40_000);
    expect(slow.stalledAt).toBeNull();
  });

  it('leaves a device whose uplink is busy few answers to send, and does not call it stalled while it uploads', () => {
    const link = new SimLink(1024 * 1024, 2000);
    link.run(1000);
    // The device reads on, but its answers wait behind its own uploads (acked as they arrive) for 10 s.
    link.uplinkOpen = false;
    link.uploading = true;
    link.run(10_000);
    // `ws` clients drop a peer that leaves them more than 60 pongs to send.
    expect(link.maxHeld).toBeGreaterThan(0);
    expect(link.maxHeld).toBeLessThanOrEqual(32);
    expect(link.stalledAt).toBeNull();
    // Answers through again: the stream flows again.
    link.uplinkOpen = true;
    link.uploading = false;
    const before = link.read;
    link.run(1000);
    expect(link.read - before).toBeGreaterThan(512 * 1024);
    expect(link.stalledAt).toBeNull();
  });

  it('does not judge a reader on one late sweep: an answer read in between counts', () => {
    const sent: Buffer[] = [];
    const wire: Wire = { send: () => {}, ping: (p) => sent.push(p) };
    const flow = new FlowControl(MAX_FRAME, HIGH_WATER);
    flow.transmit(Buffer.alloc(1000), wire, 0);
    expect(sent).toHaveLength(1);
    // The event loop was blocked past the timeout: the first sweep after it only takes note...
    expect(flow.stalled(5000, 1000)).toBe(false);
    // ...and the answer that waited behind the block is read before the next sweep.
    expect(flow.onPong(sent[0]!, wire, 5001)).toBe(true);
    expect(flow.stalled(5250, 1000)).toBe(false);
    // Nothing owed: never stalled, however long.
    expect(flow.stalled(99_000, 1000)).toBe(false);
    expect(flow.stalled(99_500, 1000)).toBe(false);
  });

  it('splits a large frame with probes between fragments, and ignores pongs that prove nothing', () => {
    const parts: { data: Buffer; fin: boolean }[] = [];
    const pings: Buffer[] = [];
    const wire: Wire = { send: (data, { fin }) => parts.push({ data: data as Buffer, fin }), ping: (p) => pings.push(p) };
    const flow = new FlowControl(MAX_FRAME, HIGH_WATER);
    const frame = Buffer.from('x'.repeat(16 * 1024));
    let done = 0;
    flow.transmit(frame, wire, 0, () => done++);
    // Fragments of the one message, only the last with fin, in order, nothing lost.
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.map((p) => p.fin)).toEqual([...parts.slice(1).map(() => false), true]);
    expect(Buffer.concat(parts.map((p) => p.data)).equals(frame)).toBe(true);
    // A probe at every cut, carrying the offset of the stream there.
    const cuts = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).reduce((n, p) => n + p.data.length, 0));
    expect(pings.slice(0, cuts.length).map((p) => p.readDoubleBE(0))).toEqual(cuts);
    // Liveness pongs (no payload), made-up offsets past the stream, and old offsets prove nothing new.
    expect(flow.onPong(Buffer.alloc(0), wire, 1)).toBe(false);
    const far = Buffer.alloc(8);
    far.writeDoubleBE(1e12);
    expect(flow.onPong(far, wire, 2)).toBe(true); // counts only up to the last probe
    expect(flow.onPong(pings[0]!, wire, 3)).toBe(false);
    expect(flow.canSend()).toBe(true);
  });

  it('keeps every message whole and every probe at its offset, whatever the sizes and answer timing (seeded)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rnd = seededRandom(seed);
      // The stream as the device reads it: messages reassembled from fragments, and each probe's offset against the bytes before it.
      const messages: Buffer[] = [];
      let open: Buffer[] = [];
      let offset = 0;
      let emptyFragments = 0;
      let misplacedProbes = 0;
      const pending: Buffer[] = [];
      let maxPending = 0;
      const wire: Wire = {
        send: (data, { fin }) => {
          const b = Buffer.from(data);
          if (b.length === 0) emptyFragments++;
          open.push(b);
          offset += b.length;
          if (fin) messages.push(Buffer.concat(open.splice(0)));
        },
        ping: (p) => {
          if (p.readDoubleBE(0) !== offset) misplacedProbes++;
          maxPending = Math.max(maxPending, pending.push(p));
        },
      };
      const flow = new FlowControl(MAX_FRAME, HIGH_WATER);
      const sent: Buffer[] = [];
      let now = 0;
      for (let i = 0; i < 300; i++) {
        now += Math.floor(rnd() * 100);
        const msg = Buffer.alloc(1 + Math.floor(rnd() * (rnd() < 0.2 ? 100_000 : 5000)), 97 + (i % 26));
        flow.transmit(rnd() < 0.3 ? msg.toString() : msg, wire, now);
        sent.push(msg);
        // Answers come in order, sometimes several at once, sometimes none for a long while.
        const answers = rnd() < 0.3 ? 0 : Math.floor(rnd() * 4);
        for (let a = 0; a < answers && pending.length; a++) flow.onPong(pending.shift()!, wire, now);
        if (rnd() < 0.1) flow.hold(wire, now);
      }
      expect({ seed, open: open.length, emptyFragments, misplacedProbes }).toEqual({ seed, open: 0, emptyFragments: 0, misplacedProbes: 0 });
      expect(messages.length).toBe(sent.length);
      expect(messages.every((m, i) => m.equals(sent[i]!))).toBe(true);
      expect(maxPending).toBeLessThanOrEqual(32);
    }
  });
});
