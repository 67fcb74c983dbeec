// The outbox: pending action_log rows -> push events, quarantine, acks.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getSyncState, type Db } from '../../agent/app-db.ts';
import { PENDING_SQL, countPending, markAcked, quarantineOutbound, readPending } from '../../agent/outbox.ts';
import { ACKED_UNDELIVERED_SQL, UNACKED_SQL } from '../../agent/rebase.ts';
import { APP_TABLES, AppWriter, makeAgentDb, tempDir, type TempDir } from '../kit/app-db.ts';

let tmp: TempDir;
let db: Db;
let app: AppWriter;
let fallback: string;

beforeEach(() => {
  tmp = tempDir();
  db = makeAgentDb(tmp.path('app.db'));
  app = new AppWriter(tmp.path('app.db'));
  fallback = getSyncState(db).sessionId;
});

afterEach(() => {
  app.close();
  db.close();
  tmp.cleanup();
});

const read = (afterRowid = 0, limit = 100) => readPending(db, { afterRowid, limit, tables: APP_TABLES, fallbackSessionId: fallback });

describe('readPending', () => {
  it('turns rows into push events in rowid order', () => {
    const a = app.create('issues', { id: 'i1', title: 'A', priority: 1 }, '2026-03-01T10:00:00.000Z');
    const b = app.update('issues', 'i1', { title: 'B' }, '2026-03-01T10:00:01.000Z')!;
    const c = app.softDelete('issues', 'i1', '2026-03-01T10:00:02.000Z')!;
    const page = read();
    expect(page.lastRowid).toBe(c);
    expect(page.events.map((e) => [e.clientActionId, e.actionType])).toEqual([
      [a, 'create'],
      [b, 'update'],
      [c, 'soft_delete'],
    ]);
    expect(page.events[0]).toEqual({
      clientActionId: a,
      sessionId: 'ses-app',
      actionType: 'create',
      entityType: 'issues',
      entityId: 'i1',
      payload: { schemaVersion: 1, newData: { id: 'i1', title: 'A', priority: 1 }, previousData: null },
      clientTimestamp: '2026-03-01T10:00:00.000Z',
    });
    expect(page.events[1]!.payload.previousData).toMatchObject({ title: 'A' });
    expect(page.events[1]!.payload.newData).toMatchObject({ title: 'B' });
  });

  it('stops a page before its payloads pass maxBytes, always taking at least one row', () => {
    const big = 'x'.repeat(10_000);
    const ids = [1, 2, 3, 4].map((i) => app.create('comments', { id: `c${i}`, body: big }));
    const opts = { limit: 100, tables: APP_TABLES, fallbackSessionId: fallback, maxBytes: 25_000 };
    const p1 = readPending(db, { ...opts, afterRowid: 0 });
    expect(p1.events.map((e) => e.clientActionId)).toEqual(ids.slice(0, 2));
    expect(p1.lastRowid).toBe(ids[1]);
    const p2 = readPending(db, { ...opts, afterRowid: p1.lastRowid, maxBytes: 5_000 });
    expect(p2.events.map((e) => e.clientActionId)).toEqual([ids[2]]);
  });

  it('pages with afterRowid and limit', () => {
    const ids = [1, 2, 3, 4, 5].map((i) => app.create('comments', { id: `c${i}`, body: 'x' }));
    const p1 = read(0, 2);
    expect(p1.events.map((e) => e.clientActionId)).toEqual(ids.slice(0, 2));
    const p2 = read(p1.lastRowid, 2);
    expect(p2.events.map((e) => e.clientActionId)).toEqual(ids.slice(2, 4));
    const p3 = read(p2.lastRowid, 10);
    expect(p3.events.map((e) => e.clientActionId)).toEqual(ids.slice(4));
    expect(read(p3.lastRowid)).toMatchObject({ events: [], unpushable: [], lastRowid: p3.lastRowid });
  });

  it('maps td-style rows: action names, entity aliases, empty previous_data, Go timestamps, NULL session', () => {
    const handoff = app.rawLog({
      id: 'al-1',
      session_id: null,
      action_type: 'handoff',
      entity_type: 'issue',
      entity_id: 'i1',
      previous_data: '',
      new_data: JSON.stringify({ id: 'i1', title: 'T' }),
      timestamp: '2026-01-15 10:30:00.123456789 -0800 PST',
      undone: 0,
    });
    const del = app.rawLog({
      id: 'al-2',
      session_id: '',
      action_type: 'delete',
      entity_type: 'issue',
      entity_id: 'i1',
      previous_data: JSON.stringify({ id: 'i1' }),
      new_data: '',
      timestamp: '2026-01-15 18:30:00',
      undone: 0,
    });
    const other = app.rawLog({ action_type: 'add_label', entity_type: 'comment', entity_id: 'c1', new_data: '{"body":"x"}', timestamp: '2026-01-15T18:30:00Z', undone: 0 });
    const hard = app.rawLog({ action_type: 'remove_dependency', entity_type: 'comments', entity_id: 'c1', new_data: null, timestamp: 1767225600, undone: 0 });
    const page = read();
    expect(page.events).toHaveLength(4);
    expect(page.events[0]).toMatchObject({
      clientActionId: handoff,
      sessionId: fallback,
      actionType: 'create',
      entityType: 'issues',
      payload: { previousData: null, newData: { id: 'i1', title: 'T' } },
      clientTimestamp: '2026-01-15T18:30:00.123Z',
    });
    expect(page.events[1]).toMatchObject({ clientActionId: del, sessionId: fallback, actionType: 'soft_delete', payload: { newData: null, previousData: { id: 'i1' } }, clientTimestamp: '2026-01-15T18:30:00.000Z' });
    expect(page.events[2]).toMatchObject({ clientActionId: other, actionType: 'update', entityType: 'comments' });
    expect(page.events[3]).toMatchObject({ clientActionId: hard, actionType: 'delete', clientTimestamp: '2026-01-01T00:00:00.000Z' });
    expect(fallback).toMatch(/\S/);
  });

  it('never returns undone rows', () => {
    const a = app.create('issues', { id: 'i1', title: 'A' });
    const b = app.update('issues', 'i1', { title: 'B' })!;
    app.db.prepare('UPDATE action_log SET undone = 1 WHERE rowid = ?').run(b);
    expect(read().events.map((e) => e.clientActionId)).toEqual([a]);
    expect(countPending(db)).toBe(1);
  });

  it('quarantines rows that can never be pushed, once, and skips them from then on', () => {
    const good1 = app.create('issues', { id: 'i1', title: 'A' });
    const notObject = app.rawLog({ action_type: 'update', entity_type: 'issues', entity_id: 'i1', new_data: '[1,2]', timestamp: 'x' });
    const badJson = app.rawLog({ action_type: 'create', entity_type: 'issues', entity_id: 'i2', new_data: '{nope', timestamp: 'x' });
    const unknown = app.rawLog({ action_type: 'create', entity_type: 'widgets', entity_id: 'w1', new_data: '{}', timestamp: 'x' });
    const noId = app.rawLog({ action_type: 'create', entity_type: 'issues', entity_id: '', new_data: '{}', timestamp: 'x' });
    const noData = app.rawLog({ action_type: 'create', entity_type: 'issues', entity_id: 'i3', new_data: '', timestamp: 'x' });
    const huge = app.rawLog({ action_type: 'create', entity_type: 'issues', entity_id: 'i4', new_data: JSON.stringify({ title: 'x'.repeat(4_200_000) }), timestamp: 'x' });
    const longSession = app.rawLog({ session_id: 's'.repeat(300), action_type: 'create', entity_type: 'issues', entity_id: 'i6', new_data: '{}', timestamp: 'x' });
    const good2 = app.create('issues', { id: 'i5', title: 'E' });

    const page = read();
    expect(page.events.map((e) => e.clientActionId)).toEqual([good1, good2]);
    expect(page.lastRowid).toBe(good2);
    const failed = db.prepare("SELECT client_action_id AS id, error FROM sync_failed_events WHERE direction = 'outbound' ORDER BY client_action_id").all() as Array<{ id: number; error: string }>;
    expect(failed.map((f) => f.id)).toEqual([notObject, badJson, unknown, noId, noData, huge, longSession]);
    expect(failed[2]!.error).toMatch(/widgets/);
    expect(failed[6]!.error).toMatch(/sessionId/);
    // Read again from the start (a restart): same events, no duplicate quarantine rows.
    expect(read().events.map((e) => e.clientActionId)).toEqual([good1, good2]);
    expect(db.prepare('SELECT COUNT(*) AS n FROM sync_failed_events').get()).toEqual({ n: 7 });
    expect(countPending(db)).toBe(2);
  });

  it('reports lastRowid past a page made only of quarantined rows', () => {
    const bad = app.rawLog({ action_type: 'create', entity_type: 'widgets', entity_id: 'w1', new_data: '{}', timestamp: 'x' });
    const good = app.create('issues', { id: 'i1', title: 'A' });
    const p1 = read(0, 1);
    expect(p1).toMatchObject({ events: [], lastRowid: bad });
    expect(p1.unpushable.map((u) => u.row.rowid)).toEqual([bad]);
    expect(read(p1.lastRowid, 1).events.map((e) => e.clientActionId)).toEqual([good]);
  });

  it('quarantineOutbound takes a row out of the outbox', () => {
    const a = app.create('issues', { id: 'i1', title: 'A' });
    quarantineOutbound(db, a, 'rejected by hub: invalid_entity_type');
    quarantineOutbound(db, a, 'again');
    quarantineOutbound(db, 9999, 'no such row');
    expect(read().events).toEqual([]);
    expect(countPending(db)).toBe(0);
    expect(db.prepare('SELECT client_action_id, error FROM sync_failed_events').all()).toEqual([{ client_action_id: a, error: 'rejected by hub: invalid_entity_type' }]);
  });
});

describe('markAcked', () => {
  it('sets synced_at and server_seq on unsynced rows only', () => {
    const a = app.create('issues', { id: 'i1', title: 'A' });
    const b = app.create('issues', { id: 'i2', title: 'B' });
    expect(countPending(db)).toBe(2);
    expect(markAcked(db, [{ clientActionId: a, serverSeq: 7 }])).toBe(1);
    // A late duplicate ack does not overwrite what the stream (or the first ack) recorded.
    expect(markAcked(db, [{ clientActionId: a, serverSeq: 99 }])).toBe(0);
    const rows = db.prepare('SELECT rowid, synced_at, server_seq FROM action_log ORDER BY rowid').all() as Array<{ rowid: number; synced_at: string | null; server_seq: number | null }>;
    expect(rows[0]).toMatchObject({ rowid: a, server_seq: 7 });
    expect(rows[0]!.synced_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(rows[1]).toMatchObject({ rowid: b, synced_at: null, server_seq: null });
    expect(read().events.map((e) => e.clientActionId)).toEqual([b]);
    expect(countPending(db)).toBe(1);
  });
});

describe('indexes', () => {
  it('pending lookups use the partial index, not a scan of action_log', () => {
    const plan = (sql: string, ...args: unknown[]) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as Array<{ detail: string }>).map((r) => r.detail).join('\n');
    const pending = plan(PENDING_SQL, 0, 10);
    expect(pending).toMatch(/USING INDEX sync_action_log_unsynced /);
    expect(pending).not.toMatch(/TEMP B-TREE|SCAN a\b/);
    const entity = plan(UNACKED_SQL, '[]', 0);
    expect(entity).toMatch(/USING INDEX sync_action_log_unsynced_entity \(entity_id=\?\)/);
    const acked = plan(ACKED_UNDELIVERED_SQL, 0, '[]', 0);
    expect(acked).toMatch(/USING INDEX sync_action_log_entity_seq \(entity_id=\? AND server_seq>\?\)/);
  });
});
