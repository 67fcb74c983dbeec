// Two and three live devices: every action type travels, field-level updates merge.
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

const row = (d: Device, id: string) => d.writer.row('issues', id);

describe('live sync between devices', () => {
  it('create, update, soft_delete, restore and delete on one device appear on the others', async () => {
    devices = makeDevices(tmp.dir, hub, ['a', 'b', 'c']);
    const [a, b, c] = devices as [Device, Device, Device];
    for (const d of devices) await d.start();

    a.writer.create('issues', { id: 'i1', title: 'first', status: 'open', priority: 2, labels: JSON.stringify(['x']) });
    await eventually(() => row(b, 'i1')?.title === 'first' && row(c, 'i1')?.title === 'first', 'create to reach b and c');
    expect(row(c, 'i1')).toMatchObject({ status: 'open', priority: 2, labels: '["x"]' });

    b.writer.update('issues', 'i1', { status: 'doing' });
    await eventually(() => row(a, 'i1')?.status === 'doing' && row(c, 'i1')?.status === 'doing', 'update to reach a and c');

    c.writer.softDelete('issues', 'i1', '2026-02-03T04:05:06.000Z');
    await eventually(() => row(a, 'i1')?.deleted_at === '2026-02-03T04:05:06.000Z' && row(b, 'i1')?.deleted_at != null, 'soft delete');

    a.writer.restore('issues', 'i1');
    await eventually(() => row(b, 'i1')?.deleted_at === null && row(c, 'i1')?.deleted_at === null, 'restore');

    b.writer.create('comments', { id: 'c1', issue_id: 'i1', body: 'hello' });
    await eventually(() => a.writer.row('comments', 'c1')?.body === 'hello', 'comment');
    c.writer.hardDelete('comments', 'c1');
    await eventually(() => a.writer.row('comments', 'c1') === undefined && b.writer.row('comments', 'c1') === undefined, 'hard delete');

    await quiesce(hub, devices);
    const log = await checkConverged(hub, devices, tmp.dir);
    expect(log.map((e) => e.actionType)).toEqual(['create', 'update', 'soft_delete', 'restore', 'create', 'delete']);
    // Remote applies wrote no action_log rows: each device logged only its own changes.
    expect(devices.map((d) => d.loggedRows().length)).toEqual([2, 2, 2]);
  });

  it('updates of different fields on two devices both survive', async () => {
    devices = makeDevices(tmp.dir, hub, ['a', 'b']);
    const [a, b] = devices as [Device, Device];
    for (const d of devices) await d.start();
    a.writer.create('issues', { id: 'i1', title: 'old title', status: 'open', priority: 1 });
    await eventually(() => row(b, 'i1') !== undefined, 'create to reach b');

    // Both edit while offline, different fields.
    await a.stop();
    await b.stop();
    a.writer.update('issues', 'i1', { title: 'new title' });
    b.writer.update('issues', 'i1', { priority: 5 });
    await a.start();
    await b.start();
    await quiesce(hub, devices);
    await checkConverged(hub, devices, tmp.dir);
    for (const d of devices) expect(row(d, 'i1')).toMatchObject({ title: 'new title', priority: 5, status: 'open' });
  });

  it('a change is noticed and delivered without any polling interval', async () => {
    devices = makeDevices(tmp.dir, hub, ['a', 'b']);
    const [a, b] = devices as [Device, Device];
    for (const d of devices) await d.start();
    await eventually(() => a.status().connected && b.status().connected, 'both connected');
    const started = Date.now();
    a.writer.create('issues', { id: 'fast', title: 't' });
    await eventually(() => row(b, 'fast') !== undefined, 'delivery', 5000, 1);
    // Generous bound: a timer-driven agent (td polls every few seconds) could not make it.
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
