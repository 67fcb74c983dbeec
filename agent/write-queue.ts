// Every write the agent makes to the app's database goes through one queue, in order, one at a time.
//
// The app owns the file and may hold its write lock for seconds. better-sqlite3 waits for a lock
// synchronously, inside SQLite's busy handler, and blocks the whole event loop meanwhile (no socket
// reads, no pings). So the connection's busy timeout is short (AGENT_BUSY_TIMEOUT_MS) and the long
// wait happens here, asynchronously: a job that finds the database locked stays at the head of the
// queue and is tried again with backoff, for as long as the agent runs; jobs behind it wait their
// turn, so writes land in the order they were asked for.
//
// Each job runs in a BEGIN IMMEDIATE transaction: the write lock is taken before anything is read.
// A deferred transaction that reads and then writes must upgrade its read snapshot to a write lock;
// if the app committed in between, SQLite fails it at once with SQLITE_BUSY_SNAPSHOT, which no busy
// timeout helps (nested transactions inside a job become savepoints of that one transaction).
import { EventEmitter } from 'node:events';
import type Database from 'better-sqlite3';
import { silentLogger, type Logger } from '../shared/log.ts';
import { isTransientDbError } from './db-errors.ts';

/** How long one attempt may block the event loop waiting for a lock. */
export const AGENT_BUSY_TIMEOUT_MS = 25;
/** A lock held longer than this is reported (status `waitingForLock`, a log line). */
export const LOCK_REPORT_AFTER_MS = 3_000;
/** While waiting, a log line this often says for how long. */
const LOCK_LOG_EVERY_MS = 10_000;

/** A job rejected because the queue stopped before it could run. */
export class WriteQueueStopped extends Error {
  override name = 'WriteQueueStopped';
  constructor(what: string) {
    super(`stopped before it could ${what}`);
  }
}

export interface WriteQueueOptions {
  log?: Logger;
  /** First retry delay after SQLITE_BUSY; doubles up to retryCapMs. */
  retryBaseMs?: number;
  retryCapMs?: number;
  /** Overridable so tests need not wait seconds to see a lock reported. */
  reportAfterMs?: number;
}

export interface JobOptions {
  /** Run inside BEGIN IMMEDIATE (default). false for statements that cannot run in a transaction (journal_mode). */
  transaction?: boolean;
  /**
   * A later job with the same key replaces a queued one that has not run yet (status updates: only
   * the newest matters). Both callers get the newest job's result.
   */
  key?: string;
}

interface Job {
  what: string;
  fn: () => unknown;
  transaction: boolean;
  key?: string;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  promise: Promise<unknown>;
}

export interface LockWait {
  /** When the first attempt found the database locked (epoch ms). */
  since: number;
  /** How long the lock has been held so far. */
  ms: number;
}

export interface WriteQueueEvents {
  /** The lock was acquired again after `waitedMs`. */
  unblocked: [{ waitedMs: number }];
  /** The wait passed LOCK_REPORT_AFTER_MS (once per wait), or ended after passing it. */
  lockWait: [LockWait | null];
}

export class WriteQueue extends EventEmitter<WriteQueueEvents> {
  private readonly jobs: Job[] = [];
  private readonly inTransaction: Database.Transaction<(fn: () => unknown) => unknown>;
  private readonly log: Logger;
  private readonly o: Required<Omit<WriteQueueOptions, 'log'>>;
  private retryTimer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;
  private blockedSince: number | null = null;
  private attempt = 0;
  private reported = false;
  private lastLogAt = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly db: Database.Database,
    opts: WriteQueueOptions = {},
  ) {
    super();
    this.log = opts.log ?? silentLogger;
    this.o = { retryBaseMs: 10, retryCapMs: 250, reportAfterMs: LOCK_REPORT_AFTER_MS, ...opts } as Required<Omit<WriteQueueOptions, 'log'>>;
    this.inTransaction = db.transaction((fn: () => unknown) => fn());
  }

  /**
   * Queue a write and run it as soon as every write before it is done: at once (synchronously, inside
   * this call) when the queue is idle. Resolves with fn's result; rejects with fn's error when it fails
   * for a reason other than a lock (that job is dropped, the queue goes on), or WriteQueueStopped.
   */
  run<T>(what: string, fn: () => T, opts: JobOptions = {}): Promise<T> {
    if (this.stopped) return Promise.reject(new WriteQueueStopped(what));
    if (opts.key !== undefined) {
      // Replace a queued job of the same kind that is still waiting (never the one being attempted).
      const queued = this.jobs.find((j, i) => i > 0 && j.key === opts.key);
      if (queued) {
        queued.fn = fn;
        queued.what = what;
        return queued.promise as Promise<T>;
      }
    }
    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A caller that only cares that the write happens may drop the promise; its failure is logged here.
    promise.catch(() => {});
    this.jobs.push({ what, fn, transaction: opts.transaction ?? true, key: opts.key, resolve, reject, promise });
    this.drain();
    return promise as Promise<T>;
  }

  /** Jobs not yet done (the one being retried included). */
  get size(): number {
    return this.jobs.length;
  }

  /** The head job is waiting for a lock (however briefly so far). */
  get blocked(): boolean {
    return this.blockedSince !== null;
  }

  /** The current wait for a lock, once it has lasted past the report threshold; null otherwise. */
  lockWait(now = Date.now()): LockWait | null {
    if (this.blockedSince === null || now - this.blockedSince < this.o.reportAfterMs) return null;
    return { since: this.blockedSince, ms: now - this.blockedSince };
  }

  /** Resolves when nothing is queued (at once if nothing is). */
  idle(): Promise<void> {
    if (this.jobs.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stop: wait up to `graceMs` for queued writes (a lock may be released meanwhile), then reject what
   * is left with WriteQueueStopped. Nothing is half-written: a job either committed or never ran.
   */
  async stop(graceMs = 0): Promise<void> {
    if (this.stopped) return;
    if (this.jobs.length > 0 && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    for (const job of this.jobs.splice(0)) job.reject(new WriteQueueStopped(job.what));
    this.settleIdle();
  }

  private drain(): void {
    // A retry is scheduled (the head job waits for the lock), or we are inside a job already.
    if (this.retryTimer || this.running || this.stopped) return;
    this.running = true;
    try {
      while (this.jobs.length > 0 && !this.stopped) {
        const job = this.jobs[0]!;
        let value: unknown;
        try {
          value = job.transaction ? this.inTransaction.immediate(job.fn) : job.fn();
        } catch (err) {
          if (isTransientDbError(err)) return this.waitForLock(job);
          this.jobs.shift();
          this.acquired();
          this.log.debug({ err: String(err), what: job.what }, 'write failed');
          job.reject(err);
          continue;
        }
        this.jobs.shift();
        this.acquired();
        job.resolve(value);
      }
    } finally {
      this.running = false;
    }
    this.settleIdle();
  }

  /** The head job found the database locked: try again later, without blocking the event loop. */
  private waitForLock(job: Job): void {
    const now = Date.now();
    if (this.blockedSince === null) {
      this.blockedSince = now;
      this.attempt = 0;
    }
    const held = now - this.blockedSince;
    if (held >= this.o.reportAfterMs && (!this.reported || now - this.lastLogAt >= LOCK_LOG_EVERY_MS)) {
      this.log.warn({ heldMs: held, waitingTo: job.what }, `the app has held the database's write lock for ${Math.round(held / 1000)} s; sync is paused until it lets go`);
      this.lastLogAt = now;
      if (!this.reported) {
        this.reported = true;
        this.emit('lockWait', { since: this.blockedSince, ms: held });
      }
    }
    const delay = Math.min(this.o.retryCapMs, this.o.retryBaseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 20);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.drain();
    }, delay);
  }

  /** A job got the lock (or failed for another reason): any wait is over. */
  private acquired(): void {
    if (this.blockedSince === null) return;
    const waitedMs = Date.now() - this.blockedSince;
    this.blockedSince = null;
    if (this.reported) {
      this.log.info({ waitedMs }, `write lock acquired after ${Math.round(waitedMs / 100) / 10} s; sync resumes`);
      this.reported = false;
      this.emit('lockWait', null);
    }
    this.emit('unblocked', { waitedMs });
  }

  private settleIdle(): void {
    if (this.jobs.length > 0) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
