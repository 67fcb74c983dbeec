// Backfill (rule 7): existing rows get synthetic creates before the first pull.
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureSyncSchema, getSyncState, openAppDb, type Db } from '../../agent/app-db.ts';
import { ApplyEngine } from '../../agent/apply.ts';
import { backfill } from '../../agent/backfill.ts';
import { readPending } from '../../agent/outbox.ts';
import { APP_TABLES, AppWriter, dumpTables, ev, makeAppDb, replayInto, stored, tempDir, type TempDir } from '../kit/app-db.ts';

let tmp: TempDir;
let db: Db;

beforeEach(() => {
  tmp = tempDir();
  makeAppDb(tmp.path('app.db'), { actionLog: false });
  const app = new Database(tmp.path('app.db'));
  app.exec(`INSERT INTO issues VALUES ('i1', 'One', 'open', 1, '["a"]', NULL, '2026-01-01'),
                                     ('i2', 'Two', NULL, NULL, NULL, '2026-01-02', NULL)`);
  app.exec(`INSERT INTO comments VALUES ('c1', 'i1', 'hello', '2026-01-01')`);
  app.close();
  db = openAppDb(tmp.path('app.db'));
  ensureSyncSchema(db);
});

afterEach(() => {
  db.close();
  tmp.cleanup();
});

const read = () => readPending(db, { afterRowid: 0, limit: 1000, tables: APP_TABLES, fallbackSessionId: 'fb' });

describe('backfill', () => {
  it('creates one synthetic create per row, full row as new_data, soft-deleted rows included', () => {
    const state = getSyncState(db);
    expect(backfill(db, APP_TABLES, state.sessionId)).toBe(3);
    const rows = db.prepare('SELECT * FROM action_log ORDER BY rowid').all() as Array<Record<string, unknown>>;
    expect(rows.map((r) => [r.action_type, r.entity_type, r.entity_id, r.session_id, r.previous_data, r.undone])).toEqual([
      ['create', 'issues', 'i1', state.sessionId, null, 0],
      ['create', 'issues', 'i2', state.sessionId, null, 0],
      ['create', 'comments', 'c1', state.sessionId, null, 0],
    ]);
    expect(JSON.parse(String(rows[0]!.new_data))).toEqual({ id: 'i1', title: 'One', status: 'open', priority: 1, labels: '["a"]', deleted_at: null, updated_at: '2026-01-01' });
    expect(String(rows[0]!.id)).toMatch(/^bf-[0-9a-f]{16}$/);
    expect(String(rows[0]!.timestamp)).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('is idempotent and skips rows that already have a create (td names and aliases included)', () => {
    const app = new AppWriter(tmp.path('app.db'));
    try {
      app.rawLog({ action_type: 'handoff', entity_type: 'issue', entity_id: 'i1', new_data: '{}', timestamp: 'x', undone: 0 });
      // Only an update logged for i2: other devices could not apply it without the row, so it is backfilled.
      app.rawLog({ action_type: 'update', entity_type: 'issues', entity_id: 'i2', new_data: '{}', timestamp: 'x', undone: 0 });
      // An undone create does not count.
      app.rawLog({ action_type: 'create', entity_type: 'comments', entity_id: 'c1', new_data: '{}', timestamp: 'x', undone: 1 });
    } finally {
      app.close();
    }
    expect(backfill(db, APP_TABLES, 's')).toBe(2);
    expect(backfill(db, APP_TABLES, 's')).toBe(0);
    const created = db.prepare("SELECT entity_id FROM action_log WHERE id LIKE 'bf-%' ORDER BY rowid").pluck().all();
    expect(created).toEqual(['i2', 'c1']);
  });

  it('does nothing once anything was pulled', () => {
    new ApplyEngine(db, { deviceId: 'me', tables: APP_TABLES }).applyFrame([ev(1, 'create', 'issues', 'r1', { title: 'R' })], 1, 1);
    expect(backfill(db, APP_TABLES, 's')).toBe(0);
    expect(db.prepare('SELECT COUNT(*) AS n FROM action_log').get()).toEqual({ n: 0 });
  });

  it('only touches the given tables', () => {
    expect(backfill(db, ['comments'], 's')).toBe(1);
  });

  it('pushed and replayed elsewhere, reproduces the tables', () => {
    const me = getSyncState(db).deviceId;
    backfill(db, APP_TABLES, getSyncState(db).sessionId);
    const log = read().events.map((p, i) => stored(p, i + 1, me));
    const replica = replayInto(tmp.path('replica.db'), log);
    try {
      expect(dumpTables(replica)).toEqual(dumpTables(db));
    } finally {
      replica.close();
    }
  });

  it("works on td's action_log (INTEGER PRIMARY KEY id, NOT NULL columns)", () => {
    const path = tmp.path('td.db');
    const app = new Database(path);
    app.exec(`CREATE TABLE action_log (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, action_type TEXT NOT NULL,
      entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, previous_data TEXT DEFAULT '', new_data TEXT DEFAULT '',
      timestamp DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, undone INTEGER DEFAULT 0);
      CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT);
      INSERT INTO issues VALUES ('td-1', 'x'), ('td-2', 'y');
      INSERT INTO action_log (session_id, action_type, entity_type, entity_id, new_data) VALUES ('ses', 'create', 'issue', 'td-1', '{}');`);
    app.close();
    const tdDb = openAppDb(path);
    try {
      ensureSyncSchema(tdDb);
      expect(backfill(tdDb, ['issues'], 'fallback')).toBe(1);
      expect(tdDb.prepare('SELECT id, entity_id, session_id FROM action_log ORDER BY id').all()).toEqual([
        { id: 1, entity_id: 'td-1', session_id: 'ses' },
        { id: 2, entity_id: 'td-2', session_id: 'fallback' },
      ]);
    } finally {
      tdDb.close();
    }
  });

  it('backfills rows whose creates an earlier sync system marked synced (they never reached this hub)', () => {
    const path = tmp.path('synced.db');
    makeAppDb(path);
    const app = new AppWriter(path);
    app.create('issues', { id: 'old', title: 'synced by td' });
    app.db.exec("UPDATE action_log SET synced_at = '2025-01-01 00:00:00', server_seq = 77");
    app.create('issues', { id: 'new', title: 'pending' });
    app.close();
    const adopted = openAppDb(path);
    try {
      ensureSyncSchema(adopted);
      expect(backfill(adopted, APP_TABLES, 's')).toBe(1);
      expect(adopted.prepare("SELECT entity_id FROM action_log WHERE session_id = 's'").pluck().all()).toEqual(['old']);
    } finally {
      adopted.close();
    }
  });

  it('handles 100k rows in well under a few seconds', () => {
    db.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
             INSERT INTO comments (id, issue_id, body, created_at) SELECT 'bulk-' || i, 'i1', 'body ' || i, '2026-01-01' FROM n`);
    // Existing outbox rows for half of them: the anti-join must not be quadratic.
    db.exec(`INSERT INTO action_log (action_type, entity_type, entity_id, new_data, undone)
             SELECT 'create', 'comment', id, '{}', 0 FROM comments WHERE id LIKE 'bulk-%' AND CAST(substr(id, 6) AS INTEGER) % 2 = 0`);
    const t0 = performance.now();
    const n = backfill(db, APP_TABLES, 's');
    const ms = performance.now() - t0;
    expect(n).toBe(2 + 1 + 50_000);
    expect(ms).toBeLessThan(5_000);
  });
});
