// --retain-events on serve: every project's log is compacted to its newest N events now and then,
// off the commit path. Compaction keeps the state and the dedup keys (see EventStore.compact).
import type { Logger } from '../shared/log.ts';
import type { EventStore } from './store/event-store.ts';

export class Retention {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly store: EventStore,
    private readonly keepEvents: number,
    private readonly everyMs: number,
    private readonly log: Logger,
  ) {}

  /** False for a store that cannot compact (the hub then keeps every event and says so). */
  static supported(store: EventStore): boolean {
    return typeof store.compact === 'function';
  }

  start(): void {
    this.timer = setInterval(() => void this.runOnce(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Compact every project once; a failure is logged and tried again next time. */
  async runOnce(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (const p of await this.store.listProjects()) {
        const r = await this.store.compact!(p.name, this.keepEvents);
        if (r.dropped > 0) this.log.info({ project: p.name, dropped: r.dropped, baseSeq: r.baseSeq }, 'compacted the log');
      }
    } catch (err) {
      this.log.error({ err: String(err) }, 'compaction failed; trying again later');
    } finally {
      this.running = false;
    }
  }
}
