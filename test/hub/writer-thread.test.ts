// The SQLite store's writer thread: commits run off the event loop, a thread that dies fails the
// hub loudly (no push left hanging), and closing the store finishes every commit already asked for.
import Database from 'better-sqlite3';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../shared/errors.ts';
import type { EventStore } from '../../hub/store/event-store.ts';
import { SqliteEventStore } from '../../hub/store/sqlite.ts';
import { makeTempDir, removeTempDirs, startHub, usingPostgres, type TestHub } from '../kit/hub.ts';
import { closeAllClients, delay, eventually, makeEvents, range, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
  removeTempDirs();
});

/** Test-only: the store's thread, to kill it as a crash would. */
const threadOf = (store: EventStore) => (store as unknown as { writer: { worker: Worker } }).writer.worker;

/** Take the file's write lock from another connection, as another process would. */
function holdWriteLock(path: string): () => void {
  const other = new Database(path);
  other.exec('BEGIN IMMEDIATE');
  return () => {
    other.exec('ROLLBACK');
    other.close();
  };
}

describe.skipIf(usingPostgres())('the SQLite writer thread', () => {
  it('keeps the event loop free while a commit waits on the disk', async () => {
    h = await startHub();
    const writer = await SyncClient.open(h.url, 'p1', h.token, 'dev-w', 0);
    await writer.push(1, makeEvents(1, 1));
    // The commit below waits ~600 ms for the lock. Had it run on this thread, no timer would fire meanwhile.
    const release = holdWriteLock(h.dbPath);
    const pushed = writer.push(2, makeEvents(2, 1), 10_000);
    const ticks: number[] = [];
    const timer = setInterval(() => ticks.push(performance.now()), 20);
    await delay(600);
    clearInterval(timer);
    release();
    const ack = await pushed;
    expect(ack.acks).toEqual([{ clientActionId: 2, serverSeq: 2 }]);
    expect(ticks.length).toBeGreaterThan(15);
    const gaps = ticks.slice(1).map((t, i) => t - ticks[i]!);
    expect(Math.max(...gaps)).toBeLessThan(250);
  });

  // Killed while idle: a thread terminated inside a native SQLite call aborts the whole process
  // (better-sqlite3 cannot raise its error then), which is a crash no handler could catch anyway.
  it('a thread that dies fails the hub loudly: the next push gets store_unavailable, sockets close, the hub stops', async () => {
    h = await startHub();
    const reader = await SyncClient.open(h.url, 'p1', h.token, 'dev-r', 0);
    const writer = await SyncClient.open(h.url, 'p1', h.token, 'dev-w', 0);
    await writer.push(1, makeEvents(1, 3));
    await reader.waitForSeq(3);
    await threadOf(h.store).terminate();
    const failure = await Promise.race([h.hub.failed, delay(5000).then(() => null)]);
    expect(failure?.message).toMatch(/writer thread died/);
    const closes = await Promise.all([writer.waitForClose(5000), reader.waitForClose(5000)]);
    for (const c of closes) expect(c.code).toBe(CloseCode.GoingAway);
    // Every later call answers at once with the same stable code instead of hanging.
    await expect(h.store.append([{ project: 'p1', deviceId: 'dev-w', events: makeEvents(9, 1) }], new Date().toISOString())).rejects.toMatchObject({
      code: 'store_unavailable',
    });
    await expect(h.store.bindDevice('p1', 'dev-x', 'tok', new Date().toISOString())).rejects.toMatchObject({ code: 'store_unavailable' });
    await expect(h.store.ping!()).rejects.toMatchObject({ code: 'store_unavailable' });
  });

  it('calls waiting on a thread that dies are answered store_unavailable, and the store says so once', async () => {
    const path = `${makeTempDir()}/hub.db`;
    const setup = new SqliteEventStore(path);
    await setup.createProject('p1');
    await setup.close();
    const store = new SqliteEventStore(path);
    const fatal: Error[] = [];
    store.onFatal((err) => fatal.push(err));
    const at = new Date().toISOString();
    // Posted while the thread still starts (it reads them once it is up): killed before it gets to them.
    const appends = range(1, 5).map((i) => store.append([{ project: 'p1', deviceId: 'dev-a', events: makeEvents(i, 1) }], at).catch((e: unknown) => e));
    await threadOf(store).terminate();
    for (const outcome of await Promise.all(appends)) expect(outcome).toMatchObject({ code: 'store_unavailable', message: expect.stringMatching(/writer thread died/) });
    expect(fatal).toHaveLength(1);
    await store.close();
    const check = new SqliteEventStore(path);
    expect(await check.headSeq('p1')).toBe(0);
    await check.close();
  });

  it('close() finishes every commit already asked for, also one waiting on the disk', async () => {
    const path = `${makeTempDir()}/hub.db`;
    const store = new SqliteEventStore(path);
    await store.createProject('p1');
    const release = holdWriteLock(path);
    const at = new Date().toISOString();
    const appends = range(1, 20).map((i) => store.append([{ project: 'p1', deviceId: 'dev-a', events: makeEvents(i * 10, 10) }], at));
    const closed = store.close();
    setTimeout(release, 300);
    const outcomes = await Promise.all(appends);
    await closed;
    expect(outcomes.flat(2).filter((o) => o.stored)).toHaveLength(200);
    await expect(store.headSeq('p1')).resolves.toBe(200);
    const reopened = new SqliteEventStore(path);
    expect(await reopened.headSeq('p1')).toBe(200);
    expect((await reopened.readAfter('p1', 0, 1000)).map((e) => e.seq)).toEqual(range(1, 200));
    // A call after close is refused with a stable code, not queued forever.
    await expect(store.createProject('p2')).rejects.toMatchObject({ code: 'store_unavailable' });
    await reopened.close();
  });

  it("the thread's errors keep their stable codes", async () => {
    const store = new SqliteEventStore(`${makeTempDir()}/hub.db`);
    await store.createProject('p1');
    await expect(store.createProject('p1')).rejects.toMatchObject({ code: 'project_exists' });
    await expect(store.append([{ project: 'nope', deviceId: 'd', events: makeEvents(1, 1) }], new Date().toISOString())).rejects.toMatchObject({
      code: 'unknown_project',
    });
    await store.close();
  });
});
