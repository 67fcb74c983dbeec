// Rebase (rule 2), own events as acks, conflicts (rule 5).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getSyncState, type Db } from '../../agent/app-db.ts';
import { ApplyEngine } from '../../agent/apply.ts';
import { countPending, markAcked, quarantineOutbound, readPending } from '../../agent/outbox.ts';
import { listConflicts } from '../../agent/status.ts';
import type { SyncEvent } from '../../shared/event.ts';
import { APP_TABLES, AppWriter, dumpTables, ev, makeAgentDb, replayInto, stored, tempDir, type TempDir } from '../kit/app-db.ts';

let tmp: TempDir;
let db: Db;
let app: AppWriter;
let engine: ApplyEngine;
let me: string;
/** The hub's log as these tests build it. */
let log: SyncEvent[];

beforeEach(() => {
  tmp = tempDir();
  db = makeAgentDb(tmp.path('a.db'));
  app = new AppWriter(tmp.path('a.db'));
  me = getSyncState(db).deviceId;
  engine = new ApplyEngine(db, { deviceId: me, tables: APP_TABLES });
  log = [];
});

afterEach(() => {
  app.close();
  db.close();
  tmp.cleanup();
});

const issue = (id: string) => db.prepare('SELECT * FROM issues WHERE id = ?').get(id) as Record<string, unknown> | undefined;
const base = { id: 'i1', title: 'A', status: 'open', priority: 1, labels: null, deleted_at: null, updated_at: null };

/** Append remote events to the log and deliver them (with anything not yet delivered) in one frame. */
function deliver(...events: SyncEvent[]) {
  const cursor = getSyncState(db).cursor;
  log.push(...events);
  const frame = log.filter((e) => e.serverSeq > cursor);
  return engine.applyFrame(frame, frame[frame.length - 1]!.serverSeq, log.length);
}

/** Push this device's pending rows: the hub stores them at the next seqs (acks are not applied). */
function push(): SyncEvent[] {
  const page = readPending(db, { afterRowid: 0, limit: 1000, tables: APP_TABLES, fallbackSessionId: 'fallback' });
  const out = page.events.map((p) => stored(p, log.length + 1 + page.events.indexOf(p), me));
  log.push(...out);
  return out;
}

function deliverAll() {
  const cursor = getSyncState(db).cursor;
  const frame = log.filter((e) => e.serverSeq > cursor);
  return frame.length ? engine.applyFrame(frame, frame[frame.length - 1]!.serverSeq, log.length) : null;
}

function expectEqualsReplay() {
  const replica = replayInto(tmp.path(`replay-${log.length}.db`), log);
  try {
    expect(dumpTables(db)).toEqual(dumpTables(replica));
  } finally {
    replica.close();
  }
}

describe('rebase', () => {
  beforeEach(() => {
    deliver(ev(1, 'create', 'issues', 'i1', base, { deviceId: 'dev-B' }));
  });

  it('a remote update of a field with a pending local edit keeps the local edit and records a conflict', () => {
    app.update('issues', 'i1', { title: 'mine' });
    const r = deliver(ev(2, 'update', 'issues', 'i1', { ...base, title: 'theirs' }, { previousData: base, deviceId: 'dev-B' }));
    expect(issue('i1')).toMatchObject({ title: 'mine' });
    expect(r.conflicts).toHaveLength(1);
    expect(r.conflicts[0]).toMatchObject({ entityType: 'issues', entityId: 'i1', serverSeq: 2, remoteDeviceId: 'dev-B', actionType: 'update' });
    expect(r.conflicts[0]!.localData).toMatchObject({ title: 'mine' });
    expect(r.conflicts[0]!.remoteData).toMatchObject({ title: 'theirs' });
    expect(listConflicts(db)).toMatchObject([{ entityId: 'i1', serverSeq: 2, localData: { title: 'mine' }, remoteData: { title: 'theirs' } }]);

    // The local edit is pushed, committed after the remote one, and comes back in the stream (ack lost).
    const [own] = push();
    expect(own!.serverSeq).toBe(3);
    const back = deliverAll()!;
    expect(back.ownConfirmed).toBe(1);
    expect(back.conflicts).toEqual([]);
    expect(issue('i1')).toMatchObject({ title: 'mine' });
    expect(countPending(db)).toBe(0);
    expectEqualsReplay();
  });

  it('merges edits to different fields without a conflict', () => {
    app.update('issues', 'i1', { status: 'doing' });
    const r = deliver(ev(2, 'update', 'issues', 'i1', { ...base, title: 'theirs' }, { previousData: base, deviceId: 'dev-B' }));
    expect(issue('i1')).toMatchObject({ title: 'theirs', status: 'doing' });
    expect(r.conflicts).toEqual([]);
    push();
    deliverAll();
    expect(issue('i1')).toMatchObject({ title: 'theirs', status: 'doing' });
    expectEqualsReplay();
  });

  it('a full remote update (no previousData) is a conflict on every column the local edit wrote', () => {
    app.update('issues', 'i1', { priority: 5 });
    const r = deliver(ev(2, 'update', 'issues', 'i1', { ...base, priority: 9, title: 'Z' }, { deviceId: 'dev-B' }));
    expect(issue('i1')).toMatchObject({ priority: 5, title: 'Z' });
    expect(r.conflicts).toHaveLength(1);
    push();
    deliverAll();
    expectEqualsReplay();
  });

  it('a remote delete beats a pending local update (update never resurrects) and is recorded', () => {
    app.update('issues', 'i1', { title: 'mine' });
    const r = deliver(ev(2, 'delete', 'issues', 'i1', null, { deviceId: 'dev-B' }));
    expect(issue('i1')).toBeUndefined();
    expect(r.conflicts).toMatchObject([{ actionType: 'delete', localData: { title: 'mine' }, remoteData: null }]);
    push();
    deliverAll();
    expect(issue('i1')).toBeUndefined();
    expectEqualsReplay();
  });

  it('a pending local delete keeps the row deleted under a remote update', () => {
    app.hardDelete('issues', 'i1');
    deliver(ev(2, 'update', 'issues', 'i1', { ...base, title: 'theirs' }, { previousData: base, deviceId: 'dev-B' }));
    expect(issue('i1')).toBeUndefined();
    push();
    deliverAll();
    expectEqualsReplay();
  });

  it('a pending local create of a row the log deletes is re-created on top', () => {
    app.hardDelete('issues', 'i1');
    push(); // seq 2, not delivered yet
    app.create('issues', { ...base, title: 'again', status: 'new' });
    deliver(ev(3, 'update', 'issues', 'i1', { ...base, status: 'x' }, { previousData: base, deviceId: 'dev-B' }));
    expect(issue('i1')).toMatchObject({ title: 'again', status: 'new' });
    push();
    deliverAll();
    expectEqualsReplay();
  });

  it('own events are acks, and are never re-applied over later events', () => {
    app.update('issues', 'i1', { title: 'mine' });
    push(); // seq 2
    // Another device's later edit of the same field wins once the stream has delivered ours.
    log.push(ev(3, 'update', 'issues', 'i1', { ...base, title: 'mine2' }, { previousData: { ...base, title: 'mine' }, deviceId: 'dev-B' }));
    const r = deliverAll()!;
    expect(r.ownConfirmed).toBe(1);
    expect(r.conflicts).toEqual([]);
    expect(issue('i1')).toMatchObject({ title: 'mine2' });
    const row = db.prepare('SELECT synced_at, server_seq FROM action_log').get() as { synced_at: string | null; server_seq: number };
    expect(row.server_seq).toBe(2);
    expect(row.synced_at).not.toBeNull();
    expectEqualsReplay();
  });

  it('an own event re-applies later local changes of the same row on top', () => {
    app.update('issues', 'i1', { title: 'one' });
    push(); // seq 2
    app.update('issues', 'i1', { title: 'two' });
    const r = deliverAll()!;
    expect(r.ownConfirmed).toBe(1);
    expect(issue('i1')).toMatchObject({ title: 'two' });
    expect(countPending(db)).toBe(1);
    push();
    deliverAll();
    expect(issue('i1')).toMatchObject({ title: 'two' });
    expectEqualsReplay();
  });

  it('a change acked with a seq above the cursor is still rebased until the stream delivers it', () => {
    app.update('issues', 'i1', { title: 'mine' });
    const [own] = push(); // seq 2
    markAcked(db, [{ clientActionId: own!.clientActionId, serverSeq: 3 }]); // pretend the hub put it at 3
    log.pop();
    log.push(ev(2, 'update', 'issues', 'i1', { ...base, title: 'theirs' }, { previousData: base, deviceId: 'dev-B' }), { ...own!, serverSeq: 3 });
    // Deliver only seq 2: the acked change (server_seq 3 > cursor 2) stays on top.
    const r = engine.applyFrame([log[1]!], 2, 3);
    expect(issue('i1')).toMatchObject({ title: 'mine' });
    expect(r.conflicts).toHaveLength(1);
    deliverAll();
    expect(issue('i1')).toMatchObject({ title: 'mine' });
    expectEqualsReplay();
  });

  it('ignores undone and quarantined local rows', () => {
    const undone = app.update('issues', 'i1', { title: 'undone' })!;
    app.db.prepare('UPDATE action_log SET undone = 1 WHERE rowid = ?').run(undone);
    app.db.prepare("UPDATE issues SET title = 'A' WHERE id = 'i1'").run(); // the app's own undo
    const bad = app.update('issues', 'i1', { status: 'bad' })!;
    quarantineOutbound(db, bad, 'rejected by hub');
    const r = deliver(ev(2, 'update', 'issues', 'i1', { ...base, title: 'theirs', status: 'theirs' }, { previousData: base, deviceId: 'dev-B' }));
    expect(issue('i1')).toMatchObject({ title: 'theirs', status: 'theirs' });
    expect(r.conflicts).toEqual([]);
    expectEqualsReplay();
  });

  it('a poison event on an entity with pending local changes is rolled back alone; the frame goes on', () => {
    app.update('issues', 'i1', { title: 'mine' });
    const r = deliver(
      ev(2, 'update', 'issues', 'i1', { 'bad key!': 1, title: 'theirs' }, { deviceId: 'dev-B' }),
      ev(3, 'update', 'issues', 'i1', { ...base, status: 'closed' }, { previousData: base, deviceId: 'dev-B' }),
    );
    expect(r.failed.map((f) => f.serverSeq)).toEqual([2]);
    expect(issue('i1')).toMatchObject({ title: 'mine', status: 'closed' });
    push();
    deliverAll();
    expectEqualsReplay();
  });

  it('a busy error while rebasing rolls back the whole frame', () => {
    app.update('issues', 'i1', { title: 'mine' });
    let busy = true;
    db.function('maybe_busy_rebase', () => {
      if (busy) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      return 0;
    });
    db.exec("CREATE TRIGGER busy_rebase AFTER UPDATE OF title ON issues WHEN NEW.title = 'mine' BEGIN SELECT maybe_busy_rebase(); END");
    const frame = [ev(2, 'update', 'issues', 'i1', { ...base, title: 'theirs' }, { previousData: base, deviceId: 'dev-B' })];
    expect(() => engine.applyFrame(frame, 2, 2)).toThrow(/locked/);
    expect(getSyncState(db).cursor).toBe(1);
    expect(issue('i1')).toMatchObject({ title: 'mine' });
    expect(listConflicts(db)).toEqual([]);
    busy = false;
    expect(engine.applyFrame(frame, 2, 2).conflicts).toHaveLength(1);
  });

  it('does not rebase rows another sync system marked synced before adoption', () => {
    // Simulate a td-synced file: a synced row with td's server_seq, adopted by a fresh sync_state.
    const old = app.update('issues', 'i1', { title: 'old' })!;
    app.db.prepare("UPDATE action_log SET synced_at = '2025-01-01', server_seq = 500 WHERE rowid = ?").run(old);
    db.prepare('UPDATE sync_state SET adopted_rowid = ?').run(old);
    deliver(ev(2, 'update', 'issues', 'i1', { ...base, title: 'theirs' }, { deviceId: 'dev-B' }));
    expect(issue('i1')).toMatchObject({ title: 'theirs' });
  });
});
