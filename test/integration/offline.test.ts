// Offline work and rebase: changes made while an agent is down arrive exactly once;
// a remote change never wipes out a local edit waiting to be pushed.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHub, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { checkConverged, makeDevices, quiesce, type Device } from '../kit/devices.ts';
import { eventually } from '../kit/ws-client.ts';

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-int-');
});

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

describe('offline replay', () => {
  it('1,000 changes written while an agent is stopped, and others meanwhile, converge exactly once', async () => {
    devices = makeDevices(tmp.dir, hub, ['a', 'b', 'c']);
    const [a, b, c] = devices as [Device, Device, Device];
    for (const d of devices) await d.start();
    a.writer.create('issues', { id: 'shared', title: 'shared', status: 'open', priority: 0 });
    await quiesce(hub, devices);

    await a.stop();
    for (let i = 0; i < 1000; i++) {
      if (i % 4 === 0) a.writer.create('issues', { id: `a-${i}`, title: `a ${i}`, status: 'open', priority: i });
      else if (i % 4 === 1) a.writer.update('issues', `a-${i - 1}`, { status: 'done' });
      else if (i % 4 === 2) a.writer.create('comments', { id: `ac-${i}`, issue_id: 'shared', body: `c${i}` });
      else a.writer.update('issues', 'shared', { priority: i });
    }
    // The others keep working meanwhile.
    for (let i = 0; i < 200; i++) {
      b.writer.create('issues', { id: `b-${i}`, title: `b ${i}` });
      if (i % 10 === 0) c.writer.update('issues', 'shared', { title: `title from c ${i}` });
    }
    expect(a.status().pending).toBe(1000);

    await a.start();
    await quiesce(hub, devices, 60_000);
    const log = await checkConverged(hub, devices, tmp.dir);
    expect(log.filter((e) => e.deviceId === a.status().deviceId)).toHaveLength(1001);
    expect(b.writer.row('issues', 'a-996')).toMatchObject({ status: 'done' });
  });
});

describe('rebase over pending local edits', () => {
  it('keeps a pending local edit against a remote update of the same field, records the conflict, and the local edit wins everywhere', async () => {
    devices = makeDevices(tmp.dir, hub, ['a', 'b']);
    const [a, b] = devices as [Device, Device];
    for (const d of devices) await d.start();
    a.writer.create('issues', { id: 'i1', title: 'original', status: 'open' });
    await quiesce(hub, devices);

    // b edits the title offline: the edit is pending.
    await b.stop();
    b.writer.update('issues', 'i1', { title: 'from b (offline)' });
    // a edits the same field and it is committed at the hub first.
    a.writer.update('issues', 'i1', { title: 'from a', status: 'doing' });
    await eventually(async () => (await hub.store.headSeq(hub.project)) === 2, 'a\'s update at the hub');

    // b comes back. Hold its pushes for a moment? No need: the remote update arrives in the
    // stream at seq 2 before b's own edit is delivered back (seq 3), so it meets a pending edit.
    await b.start();
    await quiesce(hub, devices);
    await checkConverged(hub, devices, tmp.dir);
    for (const d of devices) expect(d.writer.row('issues', 'i1')).toMatchObject({ title: 'from b (offline)', status: 'doing' });

    const conflicts = b.status().conflicts;
    expect(conflicts).toBeGreaterThanOrEqual(1);
  });
});
