// Group commit: every push that arrives while the store is busy (or in the same
// turn of the event loop) is committed in one transaction, and each push is
// answered only after that transaction is durable. One fsync then pays for many pushes.
import type { AppendGroup, AppendOutcome, EventStore } from './store/event-store.ts';

interface Waiting {
  group: AppendGroup;
  /** True once the pushing connection is gone: its push is not committed any more. */
  cancelled: () => boolean;
  resolve: (outcomes: AppendOutcome[]) => void;
  reject: (err: unknown) => void;
}

/** A push that was not committed because its connection closed first (it is re-sent on the next one). */
export class PushCancelled extends Error {
  constructor() {
    super('the connection closed before this push was committed');
  }
}

/** A push that was not committed because an earlier push of the same device failed: storing it would reorder the device's changes. */
export class EarlierPushFailed extends Error {
  constructor(readonly earlier: unknown) {
    super(`an earlier push of this device failed: ${String(earlier)}`);
  }
}

export interface CommitListener {
  /** Called after each durable commit with the newly stored events per project (duplicates excluded). */
  (committed: Map<string, { seq: number; json: string }[]>, durationMs: number, eventCount: number): void;
}

export class GroupCommitter {
  private waiting: Waiting[] = [];
  private running = false;
  private scheduled = false;
  private idle: (() => void)[] = [];

  constructor(
    private readonly store: EventStore,
    private readonly maxEvents: number,
    private readonly onCommit: CommitListener,
  ) {}

  /**
   * Commit one push. `cancelled` says its connection is gone: a push still waiting then is dropped,
   * so that nothing of a device lands after a push of it that failed (the device re-sends both, in
   * order, on its next connection, possibly to another hub node).
   */
  submit(group: AppendGroup, cancelled: () => boolean = () => false): Promise<AppendOutcome[]> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ group, cancelled, resolve, reject });
      this.schedule();
    });
  }

  /** Resolves once nothing is waiting or being committed. */
  drain(): Promise<void> {
    if (!this.running && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private schedule(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    // setImmediate, not a timer: pushes already read from sockets in this turn join
    // the batch, and nothing waits for a clock.
    setImmediate(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.waiting.length > 0) {
      const batch = this.take().filter((w) => {
        if (w.cancelled()) w.reject(new PushCancelled());
        return !w.cancelled();
      });
      if (batch.length === 0) continue;
      try {
        await this.commit(batch);
      } catch (err) {
        if (batch.length === 1) {
          batch[0]!.reject(err);
          continue;
        }
        // The transaction is shared, so one push that the store cannot take would fail every push
        // in it, of every project, on every retry. Commit them one by one: only that one fails, and
        // the later pushes of its device with it (committing those would reorder its changes).
        const failed = new Map<string, unknown>();
        for (const w of batch) {
          const device = `${w.group.project}\u0000${w.group.deviceId}`;
          if (failed.has(device)) {
            w.reject(new EarlierPushFailed(failed.get(device)));
            continue;
          }
          if (w.cancelled()) {
            w.reject(new PushCancelled());
            continue;
          }
          await this.commit([w]).catch((e: unknown) => {
            failed.set(device, e);
            w.reject(e);
          });
        }
      }
    }
    this.running = false;
    for (const resolve of this.idle.splice(0)) resolve();
  }

  /** One transaction for the batch; resolves each push's promise once it is durable. Throws having stored nothing. */
  private async commit(batch: Waiting[]): Promise<void> {
    const started = performance.now();
    const outcomes = await this.store.append(
      batch.map((w) => w.group),
      new Date().toISOString(),
    );
    const committed = new Map<string, { seq: number; json: string }[]>();
    let count = 0;
    batch.forEach((w, i) => {
      const list = committed.get(w.group.project) ?? [];
      for (const o of outcomes[i]!) {
        if (!o.stored) continue;
        list.push({ seq: o.seq, json: o.json });
        count++;
      }
      committed.set(w.group.project, list);
    });
    this.onCommit(committed, performance.now() - started, count);
    batch.forEach((w, i) => w.resolve(outcomes[i]!));
  }

  /** Takes waiting pushes up to maxEvents (always at least one). */
  private take(): Waiting[] {
    let events = 0;
    let n = 0;
    while (n < this.waiting.length && (n === 0 || events + this.waiting[n]!.group.events.length <= this.maxEvents)) {
      events += this.waiting[n]!.group.events.length;
      n++;
    }
    return this.waiting.splice(0, n);
  }
}
