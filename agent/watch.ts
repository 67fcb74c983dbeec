// Notices commits made to the app DB by other connections (the app itself)
// within milliseconds: PRAGMA data_version changes exactly when another
// connection has committed, and reading it costs microseconds.
import type Database from 'better-sqlite3';

export class DataVersionWatcher {
  private timer: NodeJS.Timeout | null = null;
  private last: number;
  private readonly stmt: Database.Statement;

  constructor(
    db: Database.Database,
    private readonly onChange: () => void,
    private readonly intervalMs = 5,
    /** A failed read (rare in WAL: another connection recovering the file); the next tick tries again. */
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    this.stmt = db.prepare('PRAGMA data_version').pluck();
    this.last = this.stmt.get() as number;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.check(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private check(): void {
    let v: number;
    try {
      v = this.stmt.get() as number;
    } catch (err) {
      return this.onError(err);
    }
    if (v !== this.last) {
      this.last = v;
      this.onChange();
    }
  }
}
