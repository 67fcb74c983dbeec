// A stopping agent waits for the answers to the pushes it has in flight before it closes its socket:
// the hub commits a push it has taken whether or not the device is still there, and cannot answer
// after the close. Without the wait, such a change is in the log but pending on the device, and a
// device that then bootstraps from a snapshot (a new one, cursor 0) applies it a second time on top.
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { metricValue, startHub, usingPostgres, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { makeDevices, type Device } from '../kit/devices.ts';
import { eventually } from '../kit/ws-client.ts';

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-drain-');
});

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

/** A started device whose id the hub has bound already (its first push is acked), and the hub's push count. */
async function startedDevice(): Promise<{ a: Device; pushes: number }> {
  devices = makeDevices(tmp.dir, hub, ['a']);
  const [a] = devices as [Device];
  await a.start();
  a.writer.create('issues', { id: 'first', title: 'first', status: 'open', priority: 0 });
  await eventually(() => a.status().pending === 0, 'the first change to sync');
  return { a, pushes: await metricValue(hub.hub, 'synchub_pushes_total') };
}

/** Hold the hub file's write lock (SQLite), as a slow disk would hold a commit. */
function holdHubWriteLock(path: string): () => void {
  const other = new Database(path);
  other.exec('BEGIN IMMEDIATE');
  return () => {
    other.exec('ROLLBACK');
    other.close();
  };
}

describe.skipIf(usingPostgres())('stopping an agent with pushes in flight', () => {
  it('waits for their acks: every change the hub stored is synced on the device', async () => {
    const { a, pushes } = await startedDevice();
    const release = holdHubWriteLock(hub.dbPath);
    for (let i = 0; i < 5; i++) a.writer.create('issues', { id: `i${i}`, title: `t${i}`, status: 'open', priority: i });
    // The pushes reach the hub and wait in its commit.
    await eventually(async () => (await metricValue(hub.hub, 'synchub_pushes_total')) > pushes, 'a push to reach the hub');
    const stopped = a.stop();
    setTimeout(release, 300);
    await stopped;
    await eventually(async () => (await hub.store.headSeq('p1')) === 6, 'the hub to store all six');
    expect(a.status().pending).toBe(0);
  });

  it('waits a bounded time when the hub does not answer', async () => {
    const { a, pushes } = await startedDevice();
    const release = holdHubWriteLock(hub.dbPath);
    try {
      a.writer.create('issues', { id: 'i1', title: 't', status: 'open', priority: 1 });
      await eventually(async () => (await metricValue(hub.hub, 'synchub_pushes_total')) > pushes, 'a push to reach the hub');
      const started = performance.now();
      await a.stop();
      expect(performance.now() - started).toBeLessThan(4_000);
    } finally {
      release();
    }
  });
});
