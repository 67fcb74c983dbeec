// A stopping agent waits for the answers to the pushes it has in flight before it closes its socket.
// The hub commits a push it has taken whether or not the device is still there, and cannot answer
// after the close: without the wait, such a change is in the log but pending on the device, and a
// device that then bootstraps from a snapshot (a new one, cursor 0) applies it a second time on top.
// On PostgreSQL the commit is asynchronous, so the hub reads the device's close while it waits:
// the case where the answer is lost. (On SQLite the commit holds the hub's event loop, and the ack
// goes out before the close is read.) Runs in the "postgres" project.
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHub, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { makeDevices, type Device } from '../kit/devices.ts';
import { eventually } from '../kit/ws-client.ts';

let hub: TestHub;
let tmp: TempDir;
let a: Device;
let locker: pg.Client;

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-drain-');
  [a] = makeDevices(tmp.dir, hub, ['a']) as [Device];
  locker = new pg.Client({ connectionString: hub.dbPath });
  locker.on('error', () => {});
  await locker.connect();
  await a.start();
  // The device id is bound and the first change synced: what follows only waits on the commit.
  a.writer.create('issues', { id: 'first', title: 'first', status: 'open', priority: 0 });
  await eventually(() => a.status().pending === 0, 'the first change to sync');
});

afterEach(async () => {
  await locker.query('ROLLBACK').catch(() => {});
  await locker.end();
  await a.close();
  await hub.close();
  tmp.cleanup();
});

/** Test-only peek: pushes the device has sent and not seen answered yet. */
const pushesInFlight = (d: Device) => (d.agent as unknown as { pusher: { inFlight: number } }).pusher.inFlight;

/** Hold the project's row lock, which every commit to it takes: the hub's commit waits. */
async function holdProjectLock(): Promise<void> {
  await locker.query('BEGIN');
  await locker.query("SELECT 1 FROM projects WHERE name = 'p1' FOR UPDATE");
}

describe('stopping an agent with pushes in flight', () => {
  it('waits for their acks: every change the hub stored is synced on the device', async () => {
    await holdProjectLock();
    for (let i = 0; i < 5; i++) a.writer.create('issues', { id: `i${i}`, title: `t${i}`, status: 'open', priority: i });
    await eventually(() => pushesInFlight(a) > 0, 'a push to be sent');
    const stopped = a.stop();
    setTimeout(() => void locker.query('COMMIT'), 300);
    await stopped;
    await eventually(async () => (await hub.store.headSeq('p1')) === 6, 'the hub to store all six');
    expect(a.status().pending).toBe(0);
  });

  it('waits a bounded time when the hub does not answer', async () => {
    await holdProjectLock();
    a.writer.create('issues', { id: 'i1', title: 't', status: 'open', priority: 1 });
    await eventually(() => pushesInFlight(a) > 0, 'a push to be sent');
    const started = performance.now();
    await a.stop();
    expect(performance.now() - started).toBeLessThan(4_000);
  });
});
