// Compaction while devices sync: a device whose cursor is older than the retained log is told
// cursor_too_old, bootstraps again on its own and keeps its pending local edits, which still reach
// everyone; a new device joins from a snapshot. `hub compact` runs on the file the hub serves.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteEventStore } from '../../hub/store/sqlite.ts';
import { runCli, startHub, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { makeDevices, quiesce, type Device } from '../kit/devices.ts';

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-compact-');
});

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

describe('compaction', () => {
  it('an old cursor gets cursor_too_old, re-bootstraps, and its pending edits still reach everyone', async () => {
    devices = makeDevices(tmp.dir, hub, ['a', 'b']);
    const [a, b] = devices as [Device, Device];
    for (const d of devices) await d.start();
    for (let i = 0; i < 30; i++) a.writer.create('issues', { id: `i${i}`, title: `t${i}`, status: 'open', priority: i });
    await quiesce(hub, devices);
    await b.stop();
    const oldCursor = b.status().cursor;

    // b edits offline; a moves on; the log is compacted past b's cursor.
    b.writer.update('issues', 'i3', { title: 'b offline edit' });
    b.writer.create('issues', { id: 'b-new', title: 'made offline', status: 'open', priority: 1 });
    b.writer.softDelete('issues', 'i4');
    for (let i = 0; i < 200; i++) a.writer.update('issues', `i${i % 30}`, { status: i % 2 ? 'doing' : 'done', priority: i });
    a.writer.hardDelete('issues', 'i9');
    await quiesce(hub, [a]);
    const r = await runCli(['hub', 'compact', '--project', hub.project, '--keep-events', '20', '--db', hub.dbPath]);
    expect(r.code, r.stderr).toBe(0);
    const info = await (hub.store as SqliteEventStore).logInfo(hub.project);
    expect(info.baseSeq).toBeGreaterThan(oldCursor);

    const problems: string[] = [];
    const bootstraps: boolean[] = [];
    const agent = await b.start();
    agent.on('problem', (p) => problems.push(p.code));
    agent.on('bootstrap', (x) => bootstraps.push(x.done));
    await quiesce(hub, devices, 60_000);
    expect(problems).toContain('cursor_too_old');
    expect(bootstraps).toContain(true);
    expect(b.status()).toMatchObject({ pending: 0, resyncs: 1, lastResync: { reason: 'cursor_too_old' } });

    // b's offline edits are on a, a's changes on b, and both hold the same rows.
    expect(a.writer.row('issues', 'i3')).toMatchObject({ title: 'b offline edit' });
    expect(a.writer.row('issues', 'b-new')).toMatchObject({ title: 'made offline' });
    expect(a.writer.row('issues', 'i4')!.deleted_at).not.toBeNull();
    expect(b.writer.row('issues', 'i9')).toBeUndefined();
    expect(b.tables()).toEqual(a.tables());

    // A device that joins now starts from a snapshot (the log before the compaction point is gone).
    const [c] = makeDevices(tmp.dir, hub, ['c']) as [Device];
    devices.push(c);
    await c.start();
    await quiesce(hub, devices, 60_000);
    expect(c.tables()).toEqual(a.tables());
  });

  it('a re-push of compacted events is answered as duplicates with their original seqs, nothing stored twice', async () => {
    devices = makeDevices(tmp.dir, hub, ['a']);
    const [a] = devices as [Device];
    await a.start();
    for (let i = 0; i < 50; i++) a.writer.create('issues', { id: `i${i}`, title: `t${i}`, status: 'open', priority: i });
    await quiesce(hub, devices);
    await a.stop();
    await (hub.store as SqliteEventStore).compact(hub.project, 10);
    // The agent lost its acks (say, a restored app database): every row is pending again.
    a.writer.db.prepare('UPDATE action_log SET synced_at = NULL, server_seq = NULL').run();
    await a.start();
    await quiesce(hub, devices, 60_000);
    expect(await hub.store.headSeq(hub.project)).toBe(50);
    const seqs = a.writer.db.prepare('SELECT server_seq FROM action_log ORDER BY rowid').pluck().all();
    expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });
});
