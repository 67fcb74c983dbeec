// Notices commits made to the app DB by other connections (the app itself).
// PRAGMA data_version changes exactly when another connection has committed, and
// reading it costs microseconds: it is polled every few milliseconds, and checked
// at once when the file system says the app wrote its WAL (or its database file),
// so that a change starts on its way without waiting for the next poll.
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type Database from 'better-sqlite3';

/**
 * After a write to the WAL, how long to keep checking every millisecond: the write the
 * file system reports comes before SQLite syncs the WAL and publishes the commit in its
 * index, and only then does data_version move.
 */
const FOLLOW_UP_MS = 25;

export class DataVersionWatcher {
  private timer: NodeJS.Timeout | null = null;
  private last: number;
  private readonly stmt: Database.Statement;
  private fsWatcher: FSWatcher | null = null;
  private followUp: NodeJS.Timeout | null = null;
  private followUntil = 0;

  constructor(
    db: Database.Database,
    private readonly onChange: () => void,
    private readonly intervalMs = 5,
    /** A failed read (rare in WAL: another connection recovering the file); the next tick tries again. */
    private readonly onError: (err: unknown) => void = () => {},
    /** The database file to watch for writes (null: poll only, e.g. an in-memory database). */
    private readonly path: string | null = null,
  ) {
    this.stmt = db.prepare('PRAGMA data_version').pluck();
    this.last = this.stmt.get() as number;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.watchFiles();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.followUp) clearTimeout(this.followUp);
    this.followUp = null;
    this.fsWatcher?.close();
    this.fsWatcher = null;
  }

  /** The directory, not the file: the WAL is created and removed by SQLite as it goes. */
  private watchFiles(): void {
    if (this.path === null || this.path === ':memory:') return;
    const names = new Set([basename(this.path), `${basename(this.path)}-wal`]);
    try {
      this.fsWatcher = watch(dirname(this.path), { persistent: false }, (_event, name) => {
        if (name !== null && names.has(String(name))) this.onWrite();
      });
      // Out of inotify watches, an unsupported file system...: the poll alone carries on.
      this.fsWatcher.on('error', () => {
        this.fsWatcher?.close();
        this.fsWatcher = null;
      });
    } catch {
      this.fsWatcher = null;
    }
  }

  private onWrite(): void {
    if (!this.timer) return;
    this.followUntil = performance.now() + FOLLOW_UP_MS;
    if (this.check() || this.followUp) return;
    const next = () => {
      this.followUp = null;
      if (!this.timer || this.check() || performance.now() > this.followUntil) return;
      this.followUp = setTimeout(next, 1);
    };
    this.followUp = setTimeout(next, 1);
  }

  /** True when the version moved (and onChange ran). */
  private check(): boolean {
    let v: number;
    try {
      v = this.stmt.get() as number;
    } catch (err) {
      this.onError(err);
      return false;
    }
    if (v === this.last) return false;
    this.last = v;
    this.onChange();
    return true;
  }
}
