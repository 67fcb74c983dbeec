// Fan-out: per project, the head seq, an in-memory tail of recent events and the
// set of connections to wake when something commits. Connections pull from here
// at their own cursor; nothing is pushed into per-connection queues, so a slow
// reader costs the hub nothing but its cursor.
import type { StoredEvent } from './store/event-store.ts';

/** A ready-to-send events frame and the seq range it covers. */
export interface Frame {
  data: Buffer;
  firstSeq: number;
  throughSeq: number;
}

export interface Subscriber {
  /** New events were committed: send what your cursor has not seen yet. */
  wake(): void;
}

/** Envelope of an events frame around its events, with room for two seqs. */
const FRAME_OVERHEAD = 100;

/**
 * Build an events frame from events' JSON texts (no re-serialisation of the events).
 * The frame holds the longest prefix of `events` that fits in `maxChars` (always at
 * least one event): frames are bounded in size, not only in count, so large events
 * never make a frame past a client's maxPayload or V8's string limit. Callers send
 * what the frame covers (`throughSeq`), not the whole list.
 */
export function buildFrame(events: StoredEvent[], headSeq: number, maxChars = Infinity): Frame {
  const first = events[0]!.seq;
  let n = 1;
  let size = FRAME_OVERHEAD + events[0]!.json.length;
  while (n < events.length && size + 1 + events[n]!.json.length <= maxChars) size += 1 + events[n++]!.json.length;
  const through = events[n - 1]!.seq;
  let body = '{"type":"events","events":[';
  for (let i = 0; i < n; i++) body += (i ? ',' : '') + events[i]!.json;
  // A page read from a store other nodes write may run past this node's head.
  body += `],"throughSeq":${through},"headSeq":${Math.max(headSeq, through)}}`;
  return { data: Buffer.from(body), firstSeq: first, throughSeq: through };
}

/** The store, as a channel reads it to catch up with commits of other hub nodes. */
export interface ChannelSource {
  read(afterSeq: number, limit: number): Promise<StoredEvent[]>;
  onError(err: unknown): void;
}

export class ProjectChannel {
  readonly subscribers = new Set<Subscriber>();
  /** Recent events, tail[i].seq === tailStart + i. */
  private tail: StoredEvent[] = [];
  /**
   * Frames of recent commits by first seq, oldest first: every reader whose cursor sits
   * right before one sends that same buffer, so a commit is framed and encoded once, not
   * once per connection (which cost ~15% of the hub's CPU at 10 connections).
   */
  private frames = new Map<number, Frame>();
  private frameBytes = 0;
  /** Characters of event JSON in `tail`. */
  private tailChars = 0;
  /** The highest head some node reported; the channel reads up to it (sync). */
  private target = 0;
  private syncing = false;
  /** Where sync() reads from: the store (unset in unit tests of a single writer). */
  source: ChannelSource | null = null;

  constructor(
    readonly project: string,
    public head: number,
    private readonly tailMax: number,
    private readonly pageEvents: number,
    /** Size bound of one frame (see buildFrame). */
    private readonly maxFrameChars = Infinity,
    /** Bytes of recent frames kept for sharing; readers further behind build their own. */
    private readonly frameBudget = 4 * 1024 * 1024,
    /** Bytes of event JSON the tail may hold (the oldest go first; at least one event stays). */
    private readonly tailBytes = Infinity,
  ) {}

  /**
   * Record a commit's events (in seq order) and wake every subscriber. With a store that other
   * hub nodes write too, a local commit can land past a gap (another node's commit not read yet):
   * then the channel reads the gap and these events from the store, so its head only ever moves
   * through contiguous seqs and readers never skip one.
   */
  publish(events: StoredEvent[]): void {
    const fresh = events[0] && events[0].seq <= this.head ? events.filter((e) => e.seq > this.head) : events;
    if (fresh.length === 0) return;
    if (fresh[0]!.seq !== this.head + 1 || this.syncing) return this.sync(fresh[fresh.length - 1]!.seq);
    this.append(fresh);
  }

  /**
   * Some node committed up to `head`: read what this channel has not seen from the store, in
   * order, and publish it. One read loop at a time; a failed read is retried (the store may be
   * down: the next commit or resync also retries).
   */
  sync(head: number): void {
    if (head > this.target) this.target = head;
    if (this.syncing || this.target <= this.head || !this.source) return;
    this.syncing = true;
    const source = this.source;
    void (async () => {
      try {
        while (this.head < this.target) {
          const page = await source.read(this.head, this.pageEvents);
          const fresh = page.filter((e) => e.seq > this.head);
          if (fresh.length === 0 || fresh[0]!.seq !== this.head + 1) break;
          this.append(fresh);
        }
      } catch (err) {
        source.onError(err);
        setTimeout(() => this.sync(this.target), 500).unref();
      } finally {
        this.syncing = false;
      }
    })();
  }

  private append(events: StoredEvent[]): void {
    this.tail.push(...events);
    for (const e of events) this.tailChars += e.json.length;
    // Trim in chunks so the array is not shifted on every commit.
    if (this.tail.length > this.tailMax * 1.5) this.trimTo(this.tail.length - this.tailMax);
    if (this.tailChars > this.tailBytes) {
      let drop = 0;
      let chars = this.tailChars;
      while (chars > this.tailBytes && drop < this.tail.length - 1) chars -= this.tail[drop++]!.json.length;
      this.trimTo(drop);
    }
    this.head = events[events.length - 1]!.seq;
    // Cut the commit into page-sized frames (buildFrame also bounds each by bytes).
    for (let i = 0; i < events.length; ) {
      const frame = buildFrame(events.slice(i, i + this.pageEvents), this.head, this.maxFrameChars);
      this.remember(frame);
      i += frame.throughSeq - frame.firstSeq + 1;
    }
    for (const s of this.subscribers) s.wake();
  }

  /** Drop the `drop` oldest events of the tail. */
  private trimTo(drop: number): void {
    for (let i = 0; i < drop; i++) this.tailChars -= this.tail[i]!.json.length;
    this.tail = this.tail.slice(drop);
  }

  /** Size of the tail in characters of event JSON (bytes for ASCII; tests read it). */
  get tailSize(): number {
    return this.tailChars;
  }

  /** Keep a frame, dropping the oldest ones past the byte budget. */
  private remember(frame: Frame): void {
    this.frames.set(frame.firstSeq, frame);
    this.frameBytes += frame.data.length;
    for (const [seq, old] of this.frames) {
      if (this.frameBytes <= this.frameBudget || this.frames.size === 1) break;
      this.frames.delete(seq);
      this.frameBytes -= old.data.length;
    }
  }

  /**
   * The next frame for a reader at `cursor`, from memory, of at most `maxChars` (the reader's
   * frame size; a single event may exceed it); null when the reader is behind the tail and must
   * read the store. A shared frame is used whenever it fits, which for readers keeping up is always.
   */
  frameAfter(cursor: number, maxChars = Infinity): Frame | null {
    const shared = this.frames.get(cursor + 1);
    if (shared && (shared.data.length <= maxChars || shared.firstSeq === shared.throughSeq)) return shared;
    const start = this.tail.length ? this.tail[0]!.seq : this.head + 1;
    if (cursor + 1 < start) return null;
    const from = cursor + 1 - start;
    const events = this.tail.slice(from, from + this.pageEvents);
    return events.length ? buildFrame(events, this.head, Math.min(maxChars, this.maxFrameChars)) : null;
  }
}
