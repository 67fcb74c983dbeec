// Adopting real databases: backfill of existing rows, undone rows, td-style
// action_log rows, capture triggers from `agent init`, poison events, and the
// status/conflicts commands reading a DB while its agent runs.
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAppDb } from '../../agent/app-db.ts';
import { listConflicts } from '../../agent/status.ts';
import { runCli, startHub, type TestHub } from '../kit/hub.ts';
import { makeAppDb, tempDir, type TempDir } from '../kit/app-db.ts';
import { checkConverged, Device, hubLog, makeDevices, quiesce } from '../kit/devices.ts';
import { SyncClient, eventually, makeEvent } from '../kit/ws-client.ts';

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-adopt-');
});

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

describe('adopting an existing database', () => {
  it('backfills rows that have no action_log entry and pushes them', async () => {
    const path = tmp.path('legacy.db');
    makeAppDb(path, { actionLog: false });
    const app = new Database(path);
    const insert = app.prepare('INSERT INTO issues (id, title, status) VALUES (?, ?, ?)');
    for (let i = 0; i < 250; i++) insert.run(`old-${i}`, `legacy ${i}`, 'open');
    app.prepare("INSERT INTO comments (id, issue_id, body) VALUES ('oc', 'old-1', 'legacy comment')").run();
    app.close();

    const legacy = new Device('legacy', path, hub);
    devices = [legacy, ...makeDevices(tmp.dir, hub, ['fresh'])];
    for (const d of devices) await d.start();
    await quiesce(hub, devices);
    await checkConverged(hub, devices, tmp.dir);
    expect(devices[1]!.tables().issues).toHaveLength(250);
    expect(devices[1]!.writer.row('comments', 'oc')).toMatchObject({ body: 'legacy comment' });
    // A restart does not backfill again (the cursor is no longer 0).
    await legacy.stop();
    await legacy.start();
    await quiesce(hub, devices);
    expect(await hub.store.headSeq(hub.project)).toBe(251);
  });

  it('never pushes undone rows', async () => {
    devices = makeDevices(tmp.dir, hub, ['a', 'b']);
    const [a, b] = devices as [Device, Device];
    a.writer.create('issues', { id: 'kept', title: 'kept' });
    const undone = a.writer.create('issues', { id: 'undone', title: 'undone' });
    a.writer.db.prepare('UPDATE action_log SET undone = 1 WHERE rowid = ?').run(undone);
    a.writer.db.prepare("DELETE FROM issues WHERE id = 'undone'").run();
    for (const d of devices) await d.start();
    await quiesce(hub, devices);
    const log = await hubLog(hub.store, hub.project);
    expect(log.map((e) => e.entityId)).toEqual(['kept']);
    expect(b.writer.row('issues', 'undone')).toBeUndefined();
  });

  it('syncs a td-style action_log (td action and entity names, empty previous_data, Go timestamps)', async () => {
    devices = makeDevices(tmp.dir, hub, ['td', 'peer']);
    const [td, peer] = devices as [Device, Device];
    const w = td.writer;
    w.db.prepare("INSERT INTO issues (id, title, status) VALUES ('td-1', 'from td', 'open')").run();
    w.rawLog({ id: 'al1', session_id: 'ses_td', action_type: 'handoff', entity_type: 'issue', entity_id: 'td-1',
      previous_data: '', new_data: JSON.stringify({ id: 'td-1', title: 'from td', status: 'open' }), timestamp: '2026-01-02 03:04:05.123456789 +0000 UTC', undone: 0 });
    w.db.prepare("UPDATE issues SET deleted_at = '2026-01-02T03:05:00Z' WHERE id = 'td-1'").run();
    w.rawLog({ id: 'al2', session_id: 'ses_td', action_type: 'delete', entity_type: 'issues', entity_id: 'td-1',
      previous_data: '', new_data: '', timestamp: '2026-01-02 03:05:00', undone: 0 });
    w.db.prepare("INSERT INTO comments (id, issue_id, body) VALUES ('tc', 'td-1', 'note')").run();
    w.rawLog({ id: 'al3', session_id: 'ses_td', action_type: 'create', entity_type: 'comment', entity_id: 'tc',
      previous_data: '', new_data: JSON.stringify({ id: 'tc', issue_id: 'td-1', body: 'note' }), timestamp: '2026-01-02T03:06:00Z', undone: 0 });
    for (const d of devices) await d.start();
    await quiesce(hub, devices);
    const log = await hubLog(hub.store, hub.project);
    expect(log.map((e) => [e.actionType, e.entityType])).toEqual([['create', 'issues'], ['soft_delete', 'issues'], ['create', 'comments']]);
    expect(log[0]!.clientTimestamp).toBe('2026-01-02T03:04:05.123Z');
    expect(peer.writer.row('issues', 'td-1')).toMatchObject({ title: 'from td', deleted_at: '2026-01-02T03:05:00.000Z' });
    expect(peer.writer.row('comments', 'tc')).toMatchObject({ body: 'note' });
  });

  it('`agent init` triggers capture app writes, and remote applies do not echo', async () => {
    const paths = ['t1', 't2'].map((n) => tmp.path(`${n}.db`));
    for (const p of paths) {
      makeAppDb(p, { actionLog: false });
      const r = await runCli(['agent', 'init', '--db', p, '--tables', 'issues,comments']);
      expect(r.code, r.stderr).toBe(0);
    }
    devices = paths.map((p, i) => new Device(`t${i + 1}`, p, hub));
    const [t1, t2] = devices as [Device, Device];
    for (const d of devices) await d.start();
    // The app writes plain SQL: no action_log code at all.
    t1.writer.db.prepare("INSERT INTO issues (id, title, status) VALUES ('x', 'plain sql', 'open')").run();
    await eventually(() => t2.writer.row('issues', 'x')?.title === 'plain sql', 'insert to travel');
    t2.writer.db.prepare("UPDATE issues SET status = 'done' WHERE id = 'x'").run();
    await eventually(() => t1.writer.row('issues', 'x')?.status === 'done', 'update to travel');
    t1.writer.db.prepare("DELETE FROM issues WHERE id = 'x'").run();
    await eventually(() => t2.writer.row('issues', 'x') === undefined, 'delete to travel');
    await quiesce(hub, devices);
    await checkConverged(hub, devices, tmp.dir);
    expect((await hubLog(hub.store, hub.project)).map((e) => e.actionType)).toEqual(['create', 'update', 'delete']);
    // Each device logged only its own writes.
    expect(devices.map((d) => d.loggedRows().length)).toEqual([2, 1]);
  });
});

describe('`agent init` on td\'s own action_log schema', () => {
  it('fills an INTEGER id and a NOT NULL session_id', async () => {
    const path = tmp.path('td.db');
    makeAppDb(path, { actionLog: false });
    const app = new Database(path);
    app.exec(`CREATE TABLE action_log (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, action_type TEXT NOT NULL,
      entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, previous_data TEXT DEFAULT '', new_data TEXT DEFAULT '',
      timestamp DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)`);
    app.close();
    const r = await runCli(['agent', 'init', '--db', path, '--tables', 'issues']);
    expect(r.code, r.stderr).toBe(0);
    devices = [new Device('td', path, hub), ...makeDevices(tmp.dir, hub, ['peer'])];
    const [td, peer] = devices as [Device, Device];
    for (const d of devices) await d.start();
    td.writer.db.prepare("INSERT INTO issues (id, title) VALUES ('t1', 'captured')").run();
    await eventually(() => peer.writer.row('issues', 't1')?.title === 'captured', 'captured insert to travel');
    const logged = td.writer.db.prepare('SELECT id, session_id FROM action_log').all() as { id: number; session_id: string }[];
    expect(logged).toHaveLength(1);
    expect(typeof logged[0]!.id).toBe('number');
    expect(logged[0]!.session_id).toMatch(/^ses-/);
  });
});

describe('poison events', () => {
  it('an event for an unknown table or with a malformed payload is quarantined and the stream moves on', async () => {
    // A full replay (a snapshot holds the state, not the events: see the next test).
    devices = makeDevices(tmp.dir, hub, ['a'], { snapshot: false });
    const [a] = devices as [Device];
    const raw = await SyncClient.connect(hub.url, hub.project, hub.token);
    await raw.hello('raw-device', 0);
    await raw.push(1, [
      makeEvent(1, { entityType: 'no_such_table', entityId: 'n1' }),
      makeEvent(2, { actionType: 'create', entityId: 'bad', payload: { schemaVersion: 1, newData: null, previousData: null } }),
      makeEvent(3, { entityId: 'bad-col', payload: { schemaVersion: 1, newData: { id: 'bad-col', 'title"; DROP TABLE issues; --': 'x' }, previousData: null } }),
      makeEvent(4, { entityId: 'good', payload: { schemaVersion: 1, newData: { id: 'good', title: 'after the poison' }, previousData: null } }),
    ]);
    await raw.close();
    await a.start();
    await quiesce(hub, devices);
    expect(a.writer.row('issues', 'good')).toMatchObject({ title: 'after the poison' });
    const status = a.status();
    expect(status.cursor).toBe(4);
    const db = openAppDb(a.path);
    const failed = db.prepare("SELECT server_seq, error FROM sync_failed_events WHERE direction = 'inbound' ORDER BY server_seq").all() as { server_seq: number; error: string }[];
    db.close();
    // A column name that is not an identifier is a malformed payload: it never reaches SQL.
    expect(failed.map((f) => f.server_seq)).toEqual([1, 2, 3]);
    expect(failed[0]!.error).toContain('no_such_table');
    expect(a.writer.row('issues', 'bad-col')).toBeUndefined();
  });

  it('a snapshot leaves out what the poison events could not apply, as a replay does', async () => {
    devices = makeDevices(tmp.dir, hub, ['a']);
    const [a] = devices as [Device];
    const raw = await SyncClient.connect(hub.url, hub.project, hub.token);
    await raw.hello('raw-device', 0);
    await raw.push(1, [
      makeEvent(1, { entityType: 'no_such_table', entityId: 'n1' }),
      makeEvent(2, { entityId: 'bad-col', payload: { schemaVersion: 1, newData: { id: 'bad-col', 'title"; DROP TABLE issues; --': 'x' }, previousData: null } }),
      makeEvent(3, { entityId: 'good', payload: { schemaVersion: 1, newData: { id: 'good', title: 'after the poison' }, previousData: null } }),
    ]);
    await raw.close();
    await a.start();
    await quiesce(hub, devices);
    expect(a.status().cursor).toBe(3);
    expect(a.writer.row('issues', 'good')).toMatchObject({ title: 'after the poison' });
    expect(a.writer.row('issues', 'bad-col')).toBeUndefined();
    await checkConverged(hub, devices, tmp.dir);
  });
});

describe('status and conflicts commands', () => {
  it('read the DB while the agent runs', async () => {
    devices = makeDevices(tmp.dir, hub, ['a', 'b']);
    const [a, b] = devices as [Device, Device];
    for (const d of devices) await d.start();
    a.writer.create('issues', { id: 'i1', title: 'base' });
    await quiesce(hub, devices);
    await b.stop();
    b.writer.update('issues', 'i1', { title: 'b pending' });
    a.writer.update('issues', 'i1', { title: 'a committed' });
    await eventually(async () => (await hub.store.headSeq(hub.project)) === 2, 'a\'s update at the hub');
    await b.start();
    await quiesce(hub, devices);

    const status = await runCli(['agent', 'status', '--db', b.path, '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ connected: true, cursor: 3, hubHead: 3, lag: 0, pending: 0, conflicts: 1 });
    const conflicts = await runCli(['agent', 'conflicts', '--db', b.path, '--json']);
    expect(conflicts.code).toBe(0);
    const rows = JSON.parse(conflicts.stdout) as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows[0])).toContain('a committed');
    expect(JSON.stringify(rows[0])).toContain('b pending');
    expect(listConflicts(openAppDb(b.path))).toHaveLength(1);

    const missing = await runCli(['agent', 'status', '--db', tmp.path('nope.db')]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  });
});
