// Group commit: every push that arrives while the store is busy (or in the same
// turn of the event loop) is committed in one transaction, and each push is
// answered only after that transaction is durable. One fsync then pays for many pushes.
import type { AppendGroup, AppendOutcome, EventStore, StoredEvent } from './store/event-store.ts';

interface Waiting {
  group: AppendGroup;
  resolve: (outcomes: AppendOutcome[]) => void;
  reject: (err: unknown) => void;
}

export interface CommitListener {
  /** Called after each durable commit with the newly stored events per project (duplicates excluded). */
  (committed: Map<string, StoredEvent[]>, durationMs: number, eventCount: number): void;
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

  submit(group: AppendGroup): Promise<AppendOutcome[]> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ group, resolve, reject });
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
      const batch = this.take();
      try {
        await this.commit(batch);
      } catch (err) {
        if (batch.length === 1) {
          batch[0]!.reject(err);
          continue;
        }
        // The transaction is shared, so one push that the store cannot take would fail every push
        // in it, of every project, on every retry. Commit them one by one: only that one fails.
        for (const w of batch) await this.commit([w]).catch((e: unknown) => w.reject(e));
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
    const committed = new Map<string, StoredEvent[]>();
    let count = 0;
    batch.forEach((w, i) => {
      const list = committed.get(w.group.project) ?? [];
      for (const o of outcomes[i]!) {
        if (!o.stored) continue;
        list.push({ seq: o.seq, json: o.json, digest: o.digest });
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
