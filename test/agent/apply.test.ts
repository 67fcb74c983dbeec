// Apply rules (agent rules 1, 3, 4, 6) on real SQLite files.
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getCursor, getSyncState, type Db } from '../../agent/app-db.ts';
import { APPLYING_GUARD_SQL, ApplyEngine, RowApplier, StreamGapError } from '../../agent/apply.ts';
import { isTransientDbError } from '../../agent/db-errors.ts';
import { APP_TABLES, dumpTables, ev, makeAgentDb, tempDir, type TempDir } from '../kit/app-db.ts';

let tmp: TempDir;
let db: Db;
let engine: ApplyEngine;

beforeEach(() => {
  tmp = tempDir();
  db = makeAgentDb(tmp.path('app.db'));
  engine = new ApplyEngine(db, { deviceId: 'dev-local', tables: APP_TABLES });
});

afterEach(() => {
  db.close();
  tmp.cleanup();
});

const issue = (id: string) => db.prepare('SELECT * FROM issues WHERE id = ?').get(id) as Record<string, unknown> | undefined;
const failedRows = () => db.prepare('SELECT * FROM sync_failed_events ORDER BY id').all() as Array<Record<string, unknown>>;

describe('create', () => {
  it('inserts the row, drops unknown columns, stores arrays/objects as JSON text and booleans as 0/1', () => {
    const r = engine.applyFrame(
      [ev(1, 'create', 'issues', 'i1', { id: 'i1', title: 'T', status: 'open', priority: true, labels: ['a', 'b'], future_field: 1, updated_at: false })],
      1,
      1,
    );
    expect(r).toMatchObject({ applied: 1, failed: [], cursor: 1 });
    expect(issue('i1')).toEqual({ id: 'i1', title: 'T', status: 'open', priority: 1, labels: '["a","b"]', deleted_at: null, updated_at: '0' });
    expect(db.prepare("SELECT typeof(priority) AS t FROM issues WHERE id = 'i1'").get()).toEqual({ t: 'integer' });
  });

  it('stores an integer in a TEXT column as "5", not "5.0"', () => {
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 5, labels: { k: 1 } })], 1, 1);
    expect(issue('i1')).toMatchObject({ title: '5', labels: '{"k":1}' });
  });

  it('upserts in place: no delete+insert, columns missing from the payload keep their value', () => {
    db.exec("CREATE TABLE deletes_seen (id TEXT); CREATE TRIGGER issues_del AFTER DELETE ON issues BEGIN INSERT INTO deletes_seen VALUES (OLD.id); END");
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A', status: 'open', priority: 1 })], 1, 1);
    engine.applyFrame([ev(2, 'create', 'issues', 'i1', { title: 'B' })], 2, 2);
    expect(issue('i1')).toMatchObject({ title: 'B', status: 'open', priority: 1 });
    expect(db.prepare('SELECT COUNT(*) AS n FROM deletes_seen').get()).toEqual({ n: 0 });
  });

  it('uses entityId as the id, whatever the payload says', () => {
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { id: 'other', title: 'A' })], 1, 1);
    expect(issue('i1')).toMatchObject({ title: 'A' });
    expect(issue('other')).toBeUndefined();
  });
});

describe('update', () => {
  beforeEach(() => {
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A', status: 'open', priority: 1 })], 1, 1);
  });

  it('with previousData writes only the fields that differ: two edits to different fields both survive', () => {
    const base = { id: 'i1', title: 'A', status: 'open', priority: 1 };
    engine.applyFrame(
      [
        ev(2, 'update', 'issues', 'i1', { ...base, title: 'A2' }, { previousData: base }),
        // Written concurrently from the same base on another device: its title is the stale 'A'.
        ev(3, 'update', 'issues', 'i1', { ...base, status: 'closed' }, { previousData: base }),
      ],
      3,
      3,
    );
    expect(issue('i1')).toMatchObject({ title: 'A2', status: 'closed', priority: 1 });
  });

  it('with previousData writes a field dropped from newData as NULL', () => {
    engine.applyFrame([ev(2, 'update', 'issues', 'i1', { title: 'A' }, { previousData: { title: 'A', status: 'open' } })], 2, 2);
    expect(issue('i1')).toMatchObject({ title: 'A', status: null, priority: 1 });
  });

  it('with previousData equal to newData writes nothing (no revert of other fields)', () => {
    db.prepare("UPDATE issues SET status = 'local' WHERE id = 'i1'").run();
    engine.applyFrame([ev(2, 'update', 'issues', 'i1', { title: 'A', status: 'open' }, { previousData: { title: 'A', status: 'open' } })], 2, 2);
    expect(issue('i1')).toMatchObject({ status: 'local' });
  });

  it('compares nested values structurally', () => {
    db.prepare("UPDATE issues SET status = 'local' WHERE id = 'i1'").run();
    const prev = { labels: ['x', { y: 1 }], status: 'open' };
    engine.applyFrame([ev(2, 'update', 'issues', 'i1', { labels: ['x', { y: 1 }], status: 'open', title: 'B' }, { previousData: prev })], 2, 2);
    expect(issue('i1')).toMatchObject({ status: 'local', title: 'B', labels: null });
  });

  it('with previousData null writes every field of newData', () => {
    engine.applyFrame([ev(2, 'update', 'issues', 'i1', { title: 'Z', status: 'done' })], 2, 2);
    expect(issue('i1')).toMatchObject({ title: 'Z', status: 'done', priority: 1 });
  });

  it('never resurrects a missing row', () => {
    engine.applyFrame(
      [
        ev(2, 'update', 'issues', 'nope', { title: 'ghost' }),
        ev(3, 'update', 'issues', 'nope2', { title: 'ghost' }, { previousData: { title: 'x' } }),
      ],
      3,
      3,
    );
    expect(issue('nope')).toBeUndefined();
    expect(issue('nope2')).toBeUndefined();
  });

  it('after a hard delete stays deleted', () => {
    engine.applyFrame([ev(2, 'delete', 'issues', 'i1', null), ev(3, 'update', 'issues', 'i1', { title: 'late' })], 3, 3);
    expect(issue('i1')).toBeUndefined();
  });
});

describe('delete, soft_delete, restore', () => {
  beforeEach(() => {
    engine.applyFrame(
      [ev(1, 'create', 'issues', 'i1', { title: 'A', updated_at: 'u0' }), ev(2, 'create', 'comments', 'c1', { body: 'hi', issue_id: 'i1' })],
      2,
      2,
    );
  });

  it('delete removes the row and is a no-op when it is missing', () => {
    const r = engine.applyFrame([ev(3, 'delete', 'comments', 'c1', null), ev(4, 'delete', 'comments', 'c1', null), ev(5, 'delete', 'comments', 'zz', null)], 5, 5);
    expect(r.failed).toEqual([]);
    expect(dumpTables(db).comments).toEqual([]);
  });

  it('soft_delete sets deleted_at to the clientTimestamp; restore clears it and sets updated_at', () => {
    engine.applyFrame([ev(3, 'soft_delete', 'issues', 'i1', null, { clientTimestamp: '2026-02-02T10:00:00.000Z' })], 3, 3);
    expect(issue('i1')).toMatchObject({ deleted_at: '2026-02-02T10:00:00.000Z', title: 'A' });
    engine.applyFrame([ev(4, 'restore', 'issues', 'i1', null, { clientTimestamp: '2026-02-03T10:00:00.000Z' })], 4, 4);
    expect(issue('i1')).toMatchObject({ deleted_at: null, updated_at: '2026-02-03T10:00:00.000Z', title: 'A' });
  });

  it('soft_delete and restore of a missing row are no-ops', () => {
    const r = engine.applyFrame([ev(3, 'soft_delete', 'issues', 'zz', null), ev(4, 'restore', 'issues', 'zz', null)], 4, 4);
    expect(r.failed).toEqual([]);
    expect(issue('zz')).toBeUndefined();
  });

  it('soft_delete on a table without deleted_at fails the event (as td does) and leaves the row', () => {
    const r = engine.applyFrame([ev(3, 'soft_delete', 'comments', 'c1', null)], 3, 3);
    expect(r.failed).toHaveLength(1);
    expect(r.failed[0]!.error).toMatch(/deleted_at/);
    expect(dumpTables(db).comments).toHaveLength(1);
  });
});

describe('frames and the cursor (rule 1)', () => {
  it('moves the cursor, head and last_sync_at with the frame', () => {
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A' })], 1, 9);
    const s = getSyncState(db);
    expect(s).toMatchObject({ cursor: 1, hubHeadSeq: 9 });
    expect(s.lastSyncAt).toMatch(/^\d{4}-/);
  });

  it('skips events at or below the cursor (re-delivery is idempotent)', () => {
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A' }), ev(2, 'update', 'issues', 'i1', { title: 'B' })], 2, 2);
    db.prepare("UPDATE issues SET title = 'local' WHERE id = 'i1'").run();
    const again = engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A' }), ev(2, 'update', 'issues', 'i1', { title: 'B' })], 2, 2);
    expect(again).toMatchObject({ applied: 0, skipped: 2, cursor: 2 });
    expect(issue('i1')).toMatchObject({ title: 'local' });
    // A frame overlapping the cursor applies only the new part.
    const overlap = engine.applyFrame([ev(2, 'update', 'issues', 'i1', { title: 'B' }), ev(3, 'update', 'issues', 'i1', { status: 's' })], 3, 3);
    expect(overlap).toMatchObject({ applied: 1, skipped: 1, cursor: 3 });
    expect(issue('i1')).toMatchObject({ title: 'local', status: 's' });
  });

  it('refuses a frame with a gap, applying nothing', () => {
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A' })], 1, 1);
    expect(() => engine.applyFrame([ev(3, 'create', 'issues', 'i3', { title: 'C' })], 3, 3)).toThrow(StreamGapError);
    expect(() => engine.applyFrame([ev(2, 'create', 'issues', 'i2', {}), ev(4, 'create', 'issues', 'i4', {})], 4, 4)).toThrow(StreamGapError);
    expect(() => engine.applyFrame([ev(2, 'create', 'issues', 'i2', {}), ev(1, 'create', 'issues', 'i1', {})], 2, 2)).toThrow(StreamGapError);
    expect(() => engine.applyFrame([ev(2, 'create', 'issues', 'i2', {})], 5, 5)).toThrow(/throughSeq/);
    expect(getCursor(db)).toBe(1);
    expect(issue('i2')).toBeUndefined();
  });

  it('resolves td entity aliases in entityType', () => {
    engine.applyFrame([ev(1, 'create', 'issue', 'i1', { title: 'A' })], 1, 1);
    expect(issue('i1')).toMatchObject({ title: 'A' });
  });
});

describe('poison events (rule 6)', () => {
  it('files permanent failures in sync_failed_events and applies the rest of the frame', () => {
    db.exec('CREATE TABLE strict_t (id TEXT PRIMARY KEY, name TEXT NOT NULL)');
    const strict = new ApplyEngine(db, { deviceId: 'dev-local', tables: [...APP_TABLES, 'strict_t'] });
    const r = strict.applyFrame(
      [
        ev(1, 'create', 'no_such_table', 'x', { a: 1 }),
        ev(2, 'create', 'issues', 'i1', null), // malformed: create without newData
        ev(3, 'create', 'issues', 'i2', { 'title; DROP TABLE issues; --': 'x', title: 'T' }), // bad column name
        ev(4, 'create', 'strict_t', 's1', { name: null }), // constraint violation
        ev(5, 'create', 'bad name!', 'x', { a: 1 }), // entity type that is no identifier
        ev(6, 'create', 'sync_state', 'x', { device_id: 'evil' }), // not a synced table
        ev(7, 'create', 'issues', 'ok', { title: 'fine' }),
      ],
      7,
      7,
    );
    expect(r.failed.map((f) => f.serverSeq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(r.applied).toBe(1);
    expect(r.cursor).toBe(7);
    expect(issue('ok')).toMatchObject({ title: 'fine' });
    expect(issue('i2')).toBeUndefined();
    expect(getSyncState(db).deviceId).not.toBe('evil');
    const rows = failedRows();
    expect(rows).toHaveLength(6);
    expect(rows[0]).toMatchObject({ direction: 'inbound', server_seq: 1, entity_type: 'no_such_table', entity_id: 'x', action_type: 'create' });
    expect(String(rows[0]!.error)).toMatch(/not a synced table/);
    expect(String(rows[2]!.error)).toMatch(/invalid column name/);
    expect(String(rows[3]!.error)).toMatch(/NOT NULL/);
    expect(JSON.parse(String(rows[1]!.event))).toMatchObject({ serverSeq: 2, entityId: 'i1' });
    expect(db.prepare('SELECT COUNT(*) AS n FROM issues').get()).toEqual({ n: 1 });
  });

  it('a trigger that aborts (constraint) fails only its event', () => {
    db.exec("CREATE TRIGGER no_bad BEFORE INSERT ON issues WHEN NEW.title = 'bad' BEGIN SELECT RAISE(ABORT, 'bad title'); END");
    const r = engine.applyFrame([ev(1, 'create', 'issues', 'a', { title: 'bad' }), ev(2, 'create', 'issues', 'b', { title: 'good' })], 2, 2);
    expect(r.failed).toMatchObject([{ serverSeq: 1 }]);
    expect(r.failed[0]!.error).toMatch(/bad title/);
    expect(dumpTables(db).issues.map((x) => x.id)).toEqual(['b']);
  });
});

describe('runs of creates (written with multi-row statements)', () => {
  /** A mixed frame: creates of two shapes and two tables, a repeated id, an update and a delete between them. */
  function mixedFrame(n: number) {
    const events = [];
    for (let seq = 1; seq <= n; seq++) {
      const id = `i${seq % 97}`; // ids repeat within one statement and across them
      if (seq % 41 === 0) events.push(ev(seq, 'update', 'issues', id, { title: `u${seq}` }, { previousData: { title: 'x' } }));
      else if (seq % 53 === 0) events.push(ev(seq, 'delete', 'issues', id, null));
      else if (seq % 29 === 0) events.push(ev(seq, 'create', 'comments', `c${seq}`, { body: `b${seq}` }));
      else events.push(ev(seq, 'create', 'issues', id, seq % 7 === 0 ? { title: `t${seq}` } : { title: `t${seq}`, status: 's', priority: seq, labels: [seq] }));
    }
    return events;
  }

  it('leave the same rows as applying each event alone, in seq order', () => {
    const events = mixedFrame(300);
    const r = engine.applyFrame(events, 300, 300);
    expect(r).toMatchObject({ applied: 300, failed: [] });
    const ref = makeAgentDb(tmp.path('ref.db'));
    const rows = new RowApplier(ref, APP_TABLES);
    for (const e of events) {
      rows.apply({ actionType: e.actionType, table: e.entityType, entityId: e.entityId, newData: e.payload.newData, previousData: e.payload.previousData, clientTimestamp: e.clientTimestamp });
    }
    expect(dumpTables(db)).toEqual(dumpTables(ref));
    ref.close();
  });

  it('a create that fails among them is filed alone; the others are written once (a FAIL trigger keeps nothing half-written)', () => {
    db.exec(`CREATE TABLE inserted (n INTEGER); INSERT INTO inserted VALUES (0);
      CREATE TRIGGER count_ins AFTER INSERT ON issues BEGIN UPDATE inserted SET n = n + 1; END;
      CREATE TRIGGER count_upd AFTER UPDATE ON issues BEGIN UPDATE inserted SET n = n + 1000; END;
      CREATE TRIGGER no_bad BEFORE INSERT ON issues WHEN NEW.title = 'bad' BEGIN SELECT RAISE(FAIL, 'bad title'); END`);
    const events = Array.from({ length: 100 }, (_, i) => ev(i + 1, 'create', 'issues', `n${i + 1}`, { title: i + 1 === 70 ? 'bad' : 'ok' }));
    const r = engine.applyFrame(events, 100, 100);
    expect(r.failed.map((f) => f.serverSeq)).toEqual([70]);
    expect(r.applied).toBe(99);
    expect(db.prepare('SELECT COUNT(*) AS n FROM issues').get()).toEqual({ n: 99 });
    expect(db.prepare('SELECT n FROM inserted').get()).toEqual({ n: 99 });
    expect(failedRows()).toHaveLength(1);
  });

  it('a wide table takes fewer rows per statement (bounded bound values)', () => {
    const cols = Array.from({ length: 120 }, (_, i) => `c${i}`);
    db.exec(`CREATE TABLE wide (id TEXT PRIMARY KEY, ${cols.map((c) => `${c} TEXT`).join(', ')})`);
    const wide = new ApplyEngine(db, { deviceId: 'dev-local', tables: ['wide'] });
    const row = Object.fromEntries(cols.map((c) => [c, c]));
    const r = wide.applyFrame(Array.from({ length: 50 }, (_, i) => ev(i + 1, 'create', 'wide', `w${i}`, row)), 50, 50);
    expect(r).toMatchObject({ applied: 50, failed: [] });
    expect(db.prepare('SELECT COUNT(*) AS n FROM wide WHERE c119 = ?').get('c119')).toEqual({ n: 50 });
  });
});

describe('transient failures (rule 6)', () => {
  it('a write lock held by another connection rolls back the whole frame, cursor unchanged', () => {
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A' })], 1, 1);
    db.pragma('busy_timeout = 50');
    const other = new Database(tmp.path('app.db'));
    try {
      other.exec("BEGIN IMMEDIATE; INSERT INTO comments (id, body) VALUES ('app', 'x')");
      let caught: unknown;
      try {
        engine.applyFrame([ev(2, 'update', 'issues', 'i1', { title: 'B' }), ev(3, 'create', 'issues', 'i3', { title: 'C' })], 3, 3);
      } catch (err) {
        caught = err;
      }
      expect(isTransientDbError(caught)).toBe(true);
      other.exec('COMMIT');
    } finally {
      other.close();
    }
    expect(getCursor(db)).toBe(1);
    expect(issue('i1')).toMatchObject({ title: 'A' });
    // The same frame applies once the lock is gone.
    expect(engine.applyFrame([ev(2, 'update', 'issues', 'i1', { title: 'B' }), ev(3, 'create', 'issues', 'i3', { title: 'C' })], 3, 3).cursor).toBe(3);
    expect(issue('i1')).toMatchObject({ title: 'B' });
  });

  it('a busy error in the middle of a frame rolls back the events already applied', () => {
    let busy = false;
    db.function('maybe_busy', () => {
      if (busy) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      return 0;
    });
    db.exec("CREATE TRIGGER busy_on_c AFTER INSERT ON comments WHEN NEW.body = 'boom' BEGIN SELECT maybe_busy(); END");
    busy = true;
    const frame = [ev(1, 'create', 'issues', 'i1', { title: 'A' }), ev(2, 'create', 'comments', 'c1', { body: 'boom' })];
    expect(() => engine.applyFrame(frame, 2, 2)).toThrow(/locked/);
    expect(getCursor(db)).toBe(0);
    expect(issue('i1')).toBeUndefined();
    expect(failedRows()).toEqual([]);
    busy = false;
    expect(engine.applyFrame(frame, 2, 2)).toMatchObject({ applied: 2, cursor: 2 });
  });

  it('isTransientDbError recognises BUSY and LOCKED codes only', () => {
    expect(isTransientDbError({ code: 'SQLITE_BUSY' })).toBe(true);
    expect(isTransientDbError({ code: 'SQLITE_BUSY_SNAPSHOT' })).toBe(true);
    expect(isTransientDbError({ code: 'SQLITE_LOCKED_SHAREDCACHE' })).toBe(true);
    expect(isTransientDbError({ code: 'SQLITE_CONSTRAINT_NOTNULL' })).toBe(false);
    expect(isTransientDbError(new Error('x'))).toBe(false);
    expect(isTransientDbError(null)).toBe(false);
  });
});

describe('no echo (rule 3)', () => {
  it('capture triggers guarded by APPLYING_GUARD_SQL log app writes but not applied events', () => {
    db.exec(`CREATE TRIGGER cap_issues AFTER INSERT ON issues WHEN ${APPLYING_GUARD_SQL}
      BEGIN INSERT INTO action_log (action_type, entity_type, entity_id, new_data) VALUES ('create', 'issues', NEW.id, '{}'); END`);
    engine.applyFrame([ev(1, 'create', 'issues', 'remote', { title: 'R' })], 1, 1);
    expect(db.prepare('SELECT COUNT(*) AS n FROM action_log').get()).toEqual({ n: 0 });
    const app = new Database(tmp.path('app.db'));
    try {
      app.prepare("INSERT INTO issues (id, title) VALUES ('local', 'L')").run();
    } finally {
      app.close();
    }
    expect(db.prepare('SELECT entity_id FROM action_log').all()).toEqual([{ entity_id: 'local' }]);
    expect(db.prepare('SELECT COUNT(*) AS n FROM sync_applying').get()).toEqual({ n: 0 });
  });
});

describe('schema changes', () => {
  it('sees a column the app added after the engine started', () => {
    engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A', estimate: 3 })], 1, 1);
    const app = new Database(tmp.path('app.db'));
    app.exec('ALTER TABLE issues ADD COLUMN estimate INTEGER');
    app.close();
    engine.applyFrame([ev(2, 'create', 'issues', 'i2', { title: 'B', estimate: 5 })], 2, 2);
    expect(issue('i1')).toMatchObject({ estimate: null });
    expect(issue('i2')).toMatchObject({ estimate: 5 });
  });
});
