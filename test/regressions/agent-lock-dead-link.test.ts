// Regression (found by the chaos suite: an app_lock overlapping a link_stall): while the app held its
// database's write lock, the agent stopped reading its socket, and with it stopped seeing whether the
// link was alive; a link black-holed during the lock was kept for as long as the lock lasted. Now the
// agent keeps reading (frames wait in memory, up to a bound) and notices a dead link as usual.
import { afterEach, describe, expect, it } from 'vitest';
import { startHub, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { Device, makeDevices, quiesce, checkConverged } from '../kit/devices.ts';
import { delay, eventually } from '../kit/ws-client.ts';
import { FaultProxy } from '../chaos/proxy.ts';

let hub: TestHub | undefined;
let proxy: FaultProxy | undefined;
let tmp: TempDir | undefined;
let devices: Device[] = [];

afterEach(async () => {
  for (const d of devices) if (d.writer.db.inTransaction) d.writer.db.exec('ROLLBACK');
  for (const d of devices) await d.close();
  devices = [];
  await proxy?.close();
  await hub?.close();
  tmp?.cleanup();
  hub = proxy = tmp = undefined;
});

describe('a link that dies while the app holds the database', () => {
  it('is dropped within the dead-link bound and re-established, lock or no lock; the device then converges', async () => {
    hub = await startHub();
    proxy = new FaultProxy(hub.port);
    await proxy.listen();
    tmp = tempDir('synchub-lock-dead-link-');
    const ref = { url: proxy.url, project: hub.project, token: hub.token, store: hub.store };
    devices = [...makeDevices(tmp.dir, ref, ['locked']), ...makeDevices(tmp.dir, { ...ref, url: hub.url }, ['remote'])];
    const [locked, remote] = devices as [Device, Device];
    await locked.start();
    await remote.start();
    await eventually(() => locked.status().connected, 'first connection', 10_000);

    // The app takes its lock; remote changes keep arriving, so frames wait to be applied.
    locked.writer.db.exec('BEGIN IMMEDIATE');
    remote.writer.create('issues', { id: 'r-1', title: 'during the lock' });
    await delay(500);
    const stalledAt = Date.now();
    proxy.stall();
    // FAST_AGENT: dead after 3 s without traffic, backoff capped at 300 ms.
    await eventually(() => proxy!.stats.connections >= 2, 'a reconnect attempt while the lock is still held', 8_000, 20);
    expect(Date.now() - stalledAt).toBeLessThan(3_000 + 1_000 + 1_000);
    expect(locked.writer.db.inTransaction).toBe(true);

    proxy.heal();
    locked.writer.create('issues', { id: 'l-1', title: 'written under the lock' });
    locked.writer.db.exec('COMMIT');
    await quiesce(hub, devices, 20_000);
    await checkConverged(hub, devices, tmp.dir);
  }, 40_000);
});
