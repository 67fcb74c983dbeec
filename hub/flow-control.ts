// Flow control for one socket: how fast the device reads, measured by what it has read.
//
// What the hub hands to its socket says little about what the device has read: the kernel
// buffers on the way swallow megabytes (4 MB and more on loopback) and hide how fast a slow link
// drains them, and they wake the writer only in large steps. So the hub asks the device. It
// pings with the stream offset as payload, and every client answers a ping with the same payload
// (RFC 6455 5.5.3) once it has read everything before it. The echoed offsets give:
//   - a smoothed read rate, to which frames (about a second of reading) and the bytes allowed
//     in flight (about two seconds) are sized: a slow device gets small frames, soon whole, and
//     frames sized to its latest rate; a fast one, or one keeping up at the live edge, whole
//     pages and the shared live frames, left to the socket's high-water mark as before;
//   - progress: a reader is stalled only when it has read nothing at all for the stall timeout
//     (and sent nothing either: its answers may wait behind its own uploads). Probes sit inside
//     large messages too (split into fragments), so a frame that takes a minute to trickle in
//     still shows progress every fraction of a second of reading.
// A fast reader costs a probe a second; a send costs a few comparisons.

/**
 * Where the bytes go: the socket's `ws` itself in the hub (these are the calls of its API used
 * here), a recorder in tests.
 */
export interface Wire {
  /** Send a text message, or a fragment of one (`fin` false: more of the same message follows). */
  send(data: Buffer | string, options: { binary: false; fin: boolean }, done?: () => void): void;
  ping(payload: Buffer): void;
}

/** The options of a fragment and of a message's last (or only) part. */
const MORE = { binary: false, fin: false } as const;
const LAST = { binary: false, fin: true } as const;

/**
 * First frame size: small, so a slow reader soon has a whole one. Until a read rate is measured,
 * a frame grows by four times what the device has read (slow start: the window, two frames,
 * grows ninefold per round trip), so a fast reader has whole pages within a few round trips.
 */
const INITIAL_FRAME_BYTES = 16 * 1024;
const SLOW_START_GROWTH = 4;
/** A frame is about this much reading time. */
const FRAME_SECONDS = 1;
/** Unread bytes allowed in flight, in reading time (at least two frames, so the reader never waits for the next). */
const WINDOW_SECONDS = 2;
/** Smallest frame (a frame always holds at least one event): below this, envelopes and transactions dominate. */
const MIN_FRAME_BYTES = 8 * 1024;
/** Probes per window (well under the cap on unanswered ones), so answers come every quarter second of reading... */
const PROBES_PER_WINDOW = 8;
/** ...but at least this far: 10 bytes of ping per this many bytes of data... */
const MIN_PROBE_BYTES = 2 * 1024;
/**
 * ...and at most this far: a reader whose rate collapses (fast wifi to a poor cell) still answers
 * within the stall timeout down to a few KB/s.
 */
const MAX_PROBE_BYTES = 256 * 1024;
/** A busy stream is probed at least this often, to keep a fast reader's rate current. */
const PROBE_INTERVAL_MS = 1000;
/**
 * Probes awaiting an answer, at most: a client whose uplink is busy cannot send its answers yet,
 * and `ws` clients drop a peer that leaves them more than 60 pongs to send. Enough to cover what
 * the kernel's buffers and the high-water mark hold for a fast reader (some 8 MB) at the widest spacing.
 */
const MAX_UNANSWERED = 32;
/** A rate sample spans at least this long, so echoes that arrive in one lump do not look like a fast link. */
const SAMPLE_MS = 100;
/** Weight of a new sample: rises are believed faster than falls. */
const RISE = 0.5;
const FALL = 0.25;

export class FlowControl {
  /** Payload bytes handed to the socket (the stream offset). */
  private sent = 0;
  /** Offset of the last probe. */
  private probed = 0;
  /** Highest offset the device has echoed: it has read this much. */
  private confirmed = 0;
  /** The offset at which the next probe is due (the first message is probed by time). */
  private nextProbe = MIN_PROBE_BYTES;
  private probeAt = -Infinity;
  private unanswered = 0;
  /** Bytes/s the device reads, or null until measured. */
  private rate: number | null = null;
  /**
   * Before a rate was measured, the device had read everything it was sent: it keeps up, and is
   * sent whole frames (live ones as they are shared) until the stream outruns it and the rate it
   * then reads at is measured.
   */
  private keptUp = false;
  /** Sizes from the rate (see resize). */
  private frame = 0;
  private window = 0;
  private probeSpacing = 0;
  /**
   * The current rate sample: since which answer, how many bytes read since. It runs from answer
   * to answer (null: from the next one), so the wait for a first answer, which says more about
   * latency and a busy event loop than about reading, is not counted as reading time.
   */
  private sampleStart: number | null = null;
  private sampleBytes = 0;
  /**
   * The window or the socket buffer held the stream back during this sample, or more was left
   * unread than was read: the reader, not the hub, set the pace, so a low sample is its real rate
   * (otherwise it only says the hub sent little).
   */
  private limited = false;
  /** Between hold() and resume(): the stream is held back. */
  private held = false;
  /** When the device last read or sent something, or began to owe an answer to a probe. */
  private progressAt = 0;
  private sweptProgressAt = -1;
  private quietSweeps = 0;
  /** Bytes from the device not yet counted as progress (see heard). */
  private heardBytes = 0;

  constructor(
    /** Largest frame (maxFrameBytes). */
    private readonly maxFrameBytes: number,
    /** What the socket may queue (highWaterBytes): a window this large is left to that mark. */
    private readonly highWaterBytes: number,
  ) {
    this.resize();
  }

  /** Target size of the next frame. */
  get frameBytes(): number {
    return this.frame;
  }

  /** Room for another frame: with it, no more than the window would be unread. */
  canSend(): boolean {
    return this.sent - this.confirmed + this.frame <= this.window;
  }

  /**
   * The stream is held back (window full, or socket buffer over its mark): count the reader as the
   * limit, and make sure the last bytes sent are probed, or their reading could never reopen it.
   */
  hold(wire: Wire, now: number): void {
    this.held = true;
    this.limited = true;
    // With answers overdue (the cap), the last of them probes the rest (onPong).
    if (this.sent > this.probed && this.unanswered < MAX_UNANSWERED) this.probe(wire, now);
  }

  /** The stream flows again after hold(). */
  resume(): void {
    this.held = false;
  }

  /** Send one message, with a probe wherever one falls due in it. `done` runs once the whole message is written. */
  transmit(data: Buffer | string, wire: Wire, now: number, done?: () => void): void {
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    // A pipe idle because the hub had nothing to send teaches nothing about the rate: the sample
    // starts again once bytes flow. (Idle because the window held it back is part of the rate.)
    if (this.sent === this.confirmed && !this.limited) this.sampleStart = null;
    let at = 0;
    // Only frames (Buffers) are long enough to split; control messages are sent whole. A probe
    // left overdue by the cap on unanswered ones goes out before the message.
    if (typeof data !== 'string') {
      while (this.sent + size - at > this.nextProbe && this.unanswered < MAX_UNANSWERED) {
        const n = Math.max(0, this.nextProbe - this.sent);
        if (n > 0) wire.send(data.subarray(at, at + n), MORE);
        at += n;
        this.sent += n;
        this.probe(wire, now);
      }
    }
    wire.send(at === 0 ? data : (data as Buffer).subarray(at), LAST, done);
    this.sent += size - at;
    const due = this.sent >= this.nextProbe || now - this.probeAt >= PROBE_INTERVAL_MS;
    if (due && this.unanswered < MAX_UNANSWERED) this.probe(wire, now);
  }

  /**
   * Bytes arrived from the device. An upload under way counts as progress: the answers to probes
   * may be queued behind it. The odd ping of a device that reads nothing does not.
   */
  heard(bytes: number, now: number): void {
    this.heardBytes += bytes;
    if (this.heardBytes < MIN_PROBE_BYTES) return;
    this.heardBytes = 0;
    this.progressAt = now;
  }

  /** A pong: returns true when it shows the device read more (the stream may resume). */
  onPong(payload: Buffer, wire: Wire, now: number): boolean {
    if (payload.length !== 8) return false; // the hub's liveness pings carry no payload
    if (this.unanswered > 0) this.unanswered--;
    // Never past the last probe: a made-up pong cannot make the hub send without bound.
    const offset = Math.min(payload.readDoubleBE(0), this.probed);
    if (!(offset > this.confirmed)) return false;
    const read = offset - this.confirmed;
    this.confirmed = offset;
    this.progressAt = now;
    if (this.sampleStart === null) {
      this.sampleStart = now;
      this.sampleBytes = 0;
    } else {
      this.sampleBytes += read;
      const elapsed = now - this.sampleStart;
      if (elapsed >= SAMPLE_MS) {
        // More left unread than was read in the sample: the device, not the hub, set the pace.
        if (this.sent - this.confirmed > this.sampleBytes) this.limited = true;
        this.learn((this.sampleBytes * 1000) / elapsed);
        this.sampleStart = now;
        this.sampleBytes = 0;
        this.limited = this.held;
      }
    }
    if (this.rate === null && this.confirmed === this.sent) this.keptUp = true;
    this.resize();
    // Every probe answered and still a window behind (bytes went out unprobed while answers
    // were overdue): the rest needs a probe, or its reading could never make room.
    if (this.confirmed === this.probed && !this.canSend()) this.probe(wire, now);
    return true;
  }

  /**
   * Called by the stall sweep: true when the device owes an answer to a probe and has read nothing
   * for `stallMs`. Two sweeps in a row must agree, so an answer that waited behind a busy event
   * loop is read (I/O runs between timer runs) before a reader is judged.
   */
  stalled(now: number, stallMs: number): boolean {
    if (this.confirmed >= this.probed || this.progressAt !== this.sweptProgressAt) {
      this.sweptProgressAt = this.progressAt;
      this.quietSweeps = 0;
      if (this.confirmed >= this.probed) return false;
    }
    this.quietSweeps++;
    return this.quietSweeps >= 2 && now - this.progressAt >= stallMs;
  }

  private probe(wire: Wire, now: number): void {
    // Nothing was owed: the wait for an answer starts now.
    if (this.confirmed >= this.probed) this.progressAt = now;
    this.probed = this.sent;
    this.probeAt = now;
    this.unanswered++;
    this.nextProbe = this.sent + this.probeSpacing;
    const payload = Buffer.allocUnsafe(8);
    payload.writeDoubleBE(this.sent);
    wire.ping(payload);
  }

  private learn(sample: number): void {
    // While a device keeps up, a sample only says how much the hub had to send.
    if (this.rate === null) {
      if (this.limited || !this.keptUp) this.rate = sample;
    } else if (sample > this.rate) this.rate += (sample - this.rate) * RISE;
    else if (this.limited) this.rate += (sample - this.rate) * FALL;
  }

  /** Frame, window and probe spacing from the rate (until one is measured: slow start, or keeping up). */
  private resize(): void {
    let frame: number;
    let window: number;
    if (this.rate !== null) {
      frame = this.rate * FRAME_SECONDS;
      window = this.rate * WINDOW_SECONDS;
    } else if (this.keptUp) {
      frame = Infinity;
      window = Infinity;
    } else {
      frame = INITIAL_FRAME_BYTES + SLOW_START_GROWTH * this.confirmed;
      window = 0;
    }
    this.frame = Math.max(MIN_FRAME_BYTES, Math.min(this.maxFrameBytes, Math.floor(frame)));
    window = Math.max(window, 2 * this.frame);
    // A reader measured fast enough to read the socket's high-water mark within the window is left
    // to that mark, as before flow control: the kernel's buffers hold only seconds of its reading,
    // and the hub does no extra work for it under load.
    this.window = window >= this.highWaterBytes ? Infinity : window;
    // Enough probes in the window that the device always owes an answer for what it is reading.
    this.probeSpacing = Math.max(MIN_PROBE_BYTES, Math.min(MAX_PROBE_BYTES, Math.floor(window / PROBES_PER_WINDOW)));
  }

}
