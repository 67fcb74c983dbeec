// The agent's write policy (write-queue.ts) against a real SQLite file and a second connection
// playing the app: a held write lock is waited out asynchronously, in order, without blocking the
// event loop; the write lock is taken before a job reads; only lock errors are retried.
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAppDb, type Db } from '../../agent/app-db.ts';
import { AGENT_BUSY_TIMEOUT_MS, WriteQueue, WriteQueueStopped } from '../../agent/write-queue.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';

let tmp: TempDir;
let db: Db;
let app: Database.Database;
let queue: WriteQueue;

beforeEach(() => {
  tmp = tempDir('synchub-writes-');
  db = openAppDb(tmp.path('app.db'), { busyTimeoutMs: AGENT_BUSY_TIMEOUT_MS });
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  app = new Database(tmp.path('app.db'));
  app.pragma('busy_timeout = 0');
  queue = new WriteQueue(db, { retryBaseMs: 5, retryCapMs: 20, reportAfterMs: 200 });
});

afterEach(async () => {
  if (app.inTransaction) app.exec('ROLLBACK');
  await queue.stop();
  app.close();
  db.close();
  tmp.cleanup();
});

const values = () => db.prepare('SELECT v FROM t ORDER BY id').pluck().all();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('WriteQueue', () => {
  it('runs a job at once when nothing holds the lock', async () => {
    const p = queue.run('insert', () => db.prepare("INSERT INTO t (v) VALUES ('a')").run().changes);
    // Synchronously: the row is there before the promise is even awaited.
    expect(values()).toEqual(['a']);
    await expect(p).resolves.toBe(1);
  });

  it('waits out a held write lock asynchronously, keeps order, and never blocks the event loop for long', async () => {
    app.exec("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES ('app')");
    const done = [queue.run('first', () => db.prepare("INSERT INTO t (v) VALUES ('1')").run()), queue.run('second', () => db.prepare("INSERT INTO t (v) VALUES ('2')").run())];
    expect(queue.blocked).toBe(true);
    expect(queue.size).toBe(2);
    // The loop keeps turning while the queue waits: the largest gap between ticks stays small.
    let last = Date.now();
    let maxGap = 0;
    const ticker = setInterval(() => {
      maxGap = Math.max(maxGap, Date.now() - last);
      last = Date.now();
    }, 5);
    await sleep(600);
    clearInterval(ticker);
    expect(maxGap).toBeLessThan(400);
    // Past the report threshold, the wait is visible.
    expect(queue.lockWait()).toMatchObject({ ms: expect.any(Number) });
    expect(queue.lockWait()!.ms).toBeGreaterThanOrEqual(200);
    app.exec('COMMIT');
    await Promise.all(done);
    expect(values()).toEqual(['app', '1', '2']);
    expect(queue.blocked).toBe(false);
    expect(queue.lockWait()).toBeNull();
  });

  it('takes the write lock before the job reads (BEGIN IMMEDIATE), so a read-then-write job never hits BUSY_SNAPSHOT', async () => {
    db.prepare("INSERT INTO t (v) VALUES ('x')").run();
    await queue.run('read then write', () => {
      const n = db.prepare('SELECT COUNT(*) FROM t').pluck().get() as number;
      // The app cannot slip a commit in between our read and our write: we hold the lock already.
      expect(() => app.exec("INSERT INTO t (v) VALUES ('app')")).toThrow(/locked|busy/i);
      db.prepare('INSERT INTO t (v) VALUES (?)').run(String(n));
    });
    expect(values()).toEqual(['x', '1']);
  });

  it('rolls back a job that throws, rejects it, and goes on with the next', async () => {
    const bad = queue.run('bad', () => {
      db.prepare("INSERT INTO t (v) VALUES ('half')").run();
      throw new Error('not a lock problem');
    });
    const good = queue.run('good', () => db.prepare("INSERT INTO t (v) VALUES ('good')").run());
    await expect(bad).rejects.toThrow('not a lock problem');
    await good;
    expect(values()).toEqual(['good']);
  });

  it('replaces a queued job with the same key (only the newest status matters)', async () => {
    app.exec('BEGIN IMMEDIATE');
    const head = queue.run('head', () => db.prepare("INSERT INTO t (v) VALUES ('head')").run());
    const a = queue.run('status a', () => db.prepare("INSERT INTO t (v) VALUES ('a')").run(), { key: 'status' });
    const b = queue.run('status b', () => db.prepare("INSERT INTO t (v) VALUES ('b')").run(), { key: 'status' });
    expect(queue.size).toBe(2);
    app.exec('COMMIT');
    await Promise.all([head, a, b]);
    expect(values()).toEqual(['head', 'b']);
  });

  it('stop() gives queued writes a grace period, then rejects the rest with WriteQueueStopped', async () => {
    app.exec('BEGIN IMMEDIATE');
    const p = queue.run('blocked', () => db.prepare("INSERT INTO t (v) VALUES ('never')").run());
    await queue.stop(100);
    await expect(p).rejects.toBeInstanceOf(WriteQueueStopped);
    await expect(queue.run('after stop', () => 1)).rejects.toBeInstanceOf(WriteQueueStopped);
    app.exec('COMMIT');
    expect(values()).toEqual([]);
  });
});
