// A hub restored from an older backup by copying the file back must never make a device silently skip
// or lose events: devices notice (cursor_diverged, cursor_ahead, a head below an acked seq, another
// event at an acked seq), bootstrap again and re-push what the hub lost. Real hub, real agents, real files.
import { copyFileSync, rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAppDb } from '../../agent/app-db.ts';
import { startHub, runCli, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { checkConverged, Device, hubLog, makeDevices, quiesce, type HubRef } from '../kit/devices.ts';
import { eventually, makeEvents, SyncClient } from '../kit/ws-client.ts';

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];
/** What the devices connect to; its store is swapped when the hub restarts. */
let ref: HubRef;

beforeEach(async () => {
  tmp = tempDir('synchub-restore-');
  hub = await startHub({ dbPath: tmp.path('hub.db') });
  ref = { url: hub.url, project: hub.project, token: hub.token, store: hub.store };
});

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

/** Stop the hub, put `backup` in place of its file by a plain copy, start it again on the same port. */
async function restoreFrom(backup: string): Promise<void> {
  const port = hub.port;
  await hub.close();
  const db = tmp.path('hub.db');
  for (const suffix of ['-wal', '-shm']) rmSync(db + suffix, { force: true });
  copyFileSync(backup, db);
  hub = await startHub({ dbPath: db, project: null, options: { port } });
  ref.store = hub.store;
}

/** A few changes on shared and own entities, so lost events matter for every device. */
function writeSome(d: Device, tag: string, n: number): void {
  for (let i = 0; i < n; i++) {
    const id = `${tag}-${i}`;
    d.writer.create('issues', { id, title: `${tag} ${i}`, status: 'open', priority: i });
    if (i % 3 === 0) d.writer.update('issues', 'shared', { title: `${tag} says ${i}` });
    if (i % 5 === 0) d.writer.update('issues', id, { status: 'done' });
    if (i % 7 === 0) d.writer.softDelete('issues', id);
  }
  d.writer.create('comments', { id: `c-${tag}`, issue_id: 'shared', body: tag });
}

/** Every change any device logged, by device: the rows the hub log must hold exactly once. */
function resyncsOf(d: Device): number {
  return d.status().resyncs;
}

describe('hub restored from an older backup', () => {
  it('plain file copy: every device converges and every change is in the log exactly once', async () => {
    // c recovers by replaying the whole log instead of a snapshot (--no-snapshot): both ways must work.
    devices = [...makeDevices(tmp.dir, ref, ['a', 'b']), ...makeDevices(tmp.dir, ref, ['c'], { snapshot: false })];
    const [a, b, c] = devices as [Device, Device, Device];
    for (const d of devices) await d.start();
    a.writer.create('issues', { id: 'shared', title: 'start', status: 'open', priority: 0 });
    for (const d of devices) writeSome(d, `${d.name}0`, 20);
    await quiesce(ref, devices);

    // The backup, taken while the hub serves.
    const backup = tmp.path('backup.db');
    const made = await runCli(['hub', 'backup', '--to', backup, '--db', tmp.path('hub.db')]);
    expect(made.code, made.stderr).toBe(0);
    const backupHead = await ref.store.headSeq(ref.project);

    // More syncing after the backup: these are the events the restore loses from the hub.
    for (const d of devices) writeSome(d, `${d.name}1`, 40);
    await quiesce(ref, devices);
    const headBefore = await ref.store.headSeq(ref.project);
    expect(headBefore).toBeGreaterThan(backupHead + 100);

    for (const d of devices) await d.stop();
    await restoreFrom(backup);
    expect(await ref.store.headSeq(ref.project)).toBe(backupHead);

    // One device comes back first and pushes new events past the others' cursors.
    await a.start();
    writeSome(a, 'a2', 150);
    await quiesce(ref, [a], 60_000);
    expect(await ref.store.headSeq(ref.project)).toBeGreaterThan(headBefore);

    await b.start();
    await c.start();
    await quiesce(ref, devices, 60_000);
    await checkConverged(ref, devices, tmp.dir);
    for (const d of devices) {
      expect(resyncsOf(d), d.name).toBeGreaterThanOrEqual(1);
      expect(d.status().pending).toBe(0);
    }
    // Written after the backup on b and c, lost by the hub, back everywhere.
    expect(a.writer.row('issues', 'b1-39')).toMatchObject({ title: 'b1 39' });
    expect(b.writer.row('issues', 'c1-10')).toMatchObject({ status: 'done' });
    expect(c.writer.row('comments', 'c-a1')).toMatchObject({ body: 'a1' });
    expect(b.status().lastResync?.reason).toBe('cursor_diverged');
    expect(c.status().lastResync?.reason).toBe('cursor_diverged');
  });

  for (const order of ['others push past it first', 'it comes back first'] as const) {
    it(`a device with a cursor behind the restored head but acked events past it (${order})`, async () => {
      devices = makeDevices(tmp.dir, ref, ['x', 'd']);
      const [x, d] = devices as [Device, Device];
      for (const dev of devices) await dev.start();
      writeSome(x, 'x0', 10);
      writeSome(d, 'd0', 10);
      await quiesce(ref, devices);
      await d.stop();
      const cursor = d.status().cursor;

      // D stays behind at its cursor while the others move on...
      writeSome(x, 'x1', 30);
      await quiesce(ref, [x]);
      const backup = tmp.path('backup.db');
      expect((await runCli(['hub', 'backup', '--to', backup, '--db', tmp.path('hub.db')])).code).toBe(0);
      const backupHead = await ref.store.headSeq(ref.project);
      expect(backupHead).toBeGreaterThan(cursor);
      writeSome(x, 'x2', 20);
      await quiesce(ref, [x]);

      // ...and pushes its own changes without pulling (a device whose stream lags its pushes): acked past
      // the backup's head, recorded as the agent records acks, cursor unchanged.
      const own = [1, 2, 3, 4, 5].map((i) => d.writer.create('issues', { id: `d-late-${i}`, title: `late ${i}`, status: 'open', priority: i }));
      const raw = await SyncClient.connect(hub.url, ref.project, ref.token);
      const headNow = await ref.store.headSeq(ref.project);
      await raw.hello(d.status().deviceId, headNow);
      const ack = await raw.push(1, own.map((rowid) => pushEventOf(d, rowid)));
      await raw.close();
      expect(ack.acks.map((a) => a.serverSeq).every((s) => s > backupHead)).toBe(true);
      const db = openAppDb(d.path);
      const mark = db.prepare("UPDATE action_log SET synced_at = datetime('now'), server_seq = ? WHERE rowid = ?");
      for (const a of ack.acks) mark.run(a.serverSeq, a.clientActionId);
      db.close();
      expect(d.status()).toMatchObject({ cursor, pending: 0 });

      await x.stop();
      await restoreFrom(backup);
      if (order === 'others push past it first') {
        await x.start();
        writeSome(x, 'x3', 60);
        await quiesce(ref, [x], 60_000);
        await d.start();
      } else {
        await d.start();
        await quiesce(ref, [d], 60_000);
        await x.start();
      }
      await quiesce(ref, devices, 60_000);
      const log = await checkConverged(ref, devices, tmp.dir);
      const deviceId = d.status().deviceId;
      for (const rowid of own) expect(log.filter((e) => e.deviceId === deviceId && e.clientActionId === rowid)).toHaveLength(1);
      expect(x.writer.row('issues', 'd-late-3')).toMatchObject({ title: 'late 3' });
      expect(d.writer.row('issues', 'x2-19')).toMatchObject({ title: 'x2 19' });
      expect(d.status().resyncs).toBeGreaterThanOrEqual(1);
      expect(d.status().lastResync?.reason).toBe(order === 'others push past it first' ? 'acked_event_missing' : 'acked_past_head');
      expect((await hubLog(ref.store, ref.project)).length).toBe(log.length);
    });
  }
});

describe('frames received from a hub that is then restored', () => {
  it('are not applied after the link drops: the device streams the restored log instead', async () => {
    devices = makeDevices(tmp.dir, ref, ['x', 'd']);
    const [x, d] = devices as [Device, Device];
    for (const dev of devices) await dev.start();
    writeSome(x, 'x0', 10);
    await quiesce(ref, devices);
    const backup = tmp.path('backup.db');
    expect((await runCli(['hub', 'backup', '--to', backup, '--db', tmp.path('hub.db')])).code).toBe(0);

    // d's app holds its write lock: d keeps reading its socket, and x's next changes wait in its memory.
    d.writer.db.exec('BEGIN IMMEDIATE');
    writeSome(x, 'x1', 40);
    await quiesce(ref, [x]);
    const inbox = () => (d.agent as unknown as { inboxBytes: number }).inboxBytes;
    await eventually(() => inbox() > 0, "d to hold frames it cannot apply yet", 10_000);
    await x.stop();
    await restoreFrom(backup);

    // The restored hub's log goes on differently: another device's changes take the lost seqs.
    const z = await SyncClient.connect(hub.url, ref.project, ref.token);
    await z.hello('device-z', await ref.store.headSeq(ref.project));
    await z.push(1, makeEvents(1, 60).map((e) => ({ ...e, entityId: `z-${e.clientActionId}`, payload: { ...e.payload, newData: { id: `z-${e.clientActionId}`, title: 'from z' } } })));
    await z.close();
    d.writer.db.exec('COMMIT');
    await x.start();
    await quiesce(ref, devices, 60_000);
    await checkConverged(ref, devices, tmp.dir);
    expect(d.writer.row('issues', 'z-60')).toMatchObject({ title: 'from z' });
  });
});

/** The push event the agent would make of one of D's outbox rows. */
function pushEventOf(d: Device, rowid: number) {
  const row = d.writer.db.prepare('SELECT rowid, session_id, action_type, entity_type, entity_id, new_data, previous_data, timestamp FROM action_log WHERE rowid = ?').get(rowid) as Record<string, string>;
  return {
    clientActionId: rowid,
    sessionId: row.session_id!,
    actionType: row.action_type!,
    entityType: row.entity_type!,
    entityId: row.entity_id!,
    payload: { schemaVersion: 1 as const, newData: JSON.parse(row.new_data!), previousData: row.previous_data ? JSON.parse(row.previous_data) : null },
    clientTimestamp: row.timestamp!,
  };
}
