// Opening an app DB, the sync schema, the state row, synced tables.
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  bindProject,
  ensureSyncSchema,
  getCursor,
  getSyncState,
  openAppDb,
  openAppDbReadonly,
  setConnectionStatus,
  syncedTables,
} from '../../agent/app-db.ts';
import { ApplyEngine } from '../../agent/apply.ts';
import { listConflicts, readStatus } from '../../agent/status.ts';
import { APP_TABLES, AppWriter, ev, makeAgentDb, makeAppDb, tempDir, type TempDir } from '../kit/app-db.ts';

let tmp: TempDir;
beforeEach(() => {
  tmp = tempDir();
});
afterEach(() => tmp.cleanup());

const cols = (db: Database.Database, t: string) => (db.prepare('SELECT name FROM pragma_table_info(?)').all(t) as Array<{ name: string }>).map((c) => c.name);

describe('openAppDb', () => {
  it('opens in WAL with a busy timeout, foreign keys off and synchronous NORMAL', () => {
    const db = openAppDb(tmp.path('a.db'));
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
      expect(db.pragma('foreign_keys', { simple: true })).toBe(0);
      expect(db.pragma('synchronous', { simple: true })).toBe(1);
    } finally {
      db.close();
    }
  });

  it('applies a row whose parent has not arrived yet (FK not enforced)', () => {
    const path = tmp.path('fk.db');
    makeAppDb(path, { schema: ['CREATE TABLE parents (id TEXT PRIMARY KEY)', 'CREATE TABLE kids (id TEXT PRIMARY KEY, parent_id TEXT REFERENCES parents(id))'] });
    const db = openAppDb(path);
    try {
      ensureSyncSchema(db);
      const r = new ApplyEngine(db, { deviceId: 'd', tables: ['parents', 'kids'] }).applyFrame([ev(1, 'create', 'kids', 'k1', { parent_id: 'p1' })], 1, 1);
      expect(r.failed).toEqual([]);
    } finally {
      db.close();
    }
  });
});

describe('ensureSyncSchema', () => {
  it('creates action_log and the agent tables, is idempotent, and keeps the device id', () => {
    makeAppDb(tmp.path('a.db'), { actionLog: false });
    const db = openAppDb(tmp.path('a.db'));
    try {
      ensureSyncSchema(db);
      expect(cols(db, 'action_log')).toEqual(['id', 'session_id', 'action_type', 'entity_type', 'entity_id', 'previous_data', 'new_data', 'timestamp', 'undone', 'synced_at', 'server_seq']);
      for (const t of ['sync_state', 'sync_conflicts', 'sync_failed_events']) expect(cols(db, t).length).toBeGreaterThan(0);
      const s1 = getSyncState(db);
      expect(s1.deviceId).toMatch(/^[0-9a-f-]{36}$/);
      expect(s1.sessionId).toMatch(/\S/);
      expect(s1).toMatchObject({ cursor: 0, project: null, status: 'disconnected' });
      ensureSyncSchema(db);
      ensureSyncSchema(db);
      expect(getSyncState(db)).toMatchObject({ deviceId: s1.deviceId, sessionId: s1.sessionId });
      expect(db.prepare('SELECT COUNT(*) AS n FROM sync_state').get()).toEqual({ n: 1 });
    } finally {
      db.close();
    }
    // Stable across reopen.
    const again = openAppDb(tmp.path('a.db'));
    try {
      ensureSyncSchema(again);
      expect(getSyncState(again).deviceId).toBeTruthy();
    } finally {
      again.close();
    }
  });

  it('adds missing sync columns to an older action_log, keeping its rows', () => {
    const path = tmp.path('old.db');
    const app = new Database(path);
    app.exec(`CREATE TABLE action_log (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, action_type TEXT NOT NULL,
      entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, previous_data TEXT DEFAULT '', new_data TEXT DEFAULT '',
      timestamp DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)`);
    app.exec("INSERT INTO action_log (session_id, action_type, entity_type, entity_id) VALUES ('s', 'create', 'issue', 'i1')");
    app.close();
    const db = openAppDb(path);
    try {
      ensureSyncSchema(db);
      expect(cols(db, 'action_log')).toEqual(expect.arrayContaining(['undone', 'synced_at', 'server_seq']));
      expect(db.prepare('SELECT undone, synced_at, server_seq FROM action_log').get()).toEqual({ undone: 0, synced_at: null, server_seq: null });
    } finally {
      db.close();
    }
  });

  it("shares td's own sync_state and sync_conflicts tables, starting its cursor at 0", () => {
    const path = tmp.path('td.db');
    const app = new Database(path);
    app.exec(`CREATE TABLE sync_state (project_id TEXT PRIMARY KEY, last_pushed_action_id INTEGER DEFAULT 0,
      last_pulled_server_seq INTEGER DEFAULT 0, last_sync_at DATETIME, sync_disabled INTEGER DEFAULT 0);
      INSERT INTO sync_state (project_id, last_pulled_server_seq) VALUES ('td-proj', 812);
      CREATE TABLE sync_conflicts (id INTEGER PRIMARY KEY AUTOINCREMENT, entity_type TEXT NOT NULL, entity_id TEXT NOT NULL,
      server_seq INTEGER NOT NULL, local_data JSON, remote_data JSON, overwritten_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP);`);
    app.close();
    makeAppDb(path, { schema: APP_SCHEMA_ISSUES });
    const db = openAppDb(path);
    try {
      ensureSyncSchema(db);
      expect(getSyncState(db)).toMatchObject({ cursor: 0 });
      expect(getSyncState(db).deviceId).toBeTruthy();
      expect(cols(db, 'sync_conflicts')).toEqual(expect.arrayContaining(['remote_device_id', 'detected_at']));
      expect(readStatus(db)).toMatchObject({ conflicts: 0, cursor: 0 });
    } finally {
      db.close();
    }
  });
});

const APP_SCHEMA_ISSUES = ['CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT, deleted_at TEXT)'];

describe('state', () => {
  it('binds one project, refusing another, and records connection status', () => {
    const db = makeAgentDb(tmp.path('a.db'));
    try {
      bindProject(db, 'alpha', 'ws://h:1/v1/projects/alpha/sync');
      bindProject(db, 'alpha', 'ws://other:2/v1/projects/alpha/sync');
      expect(getSyncState(db)).toMatchObject({ project: 'alpha', hubUrl: 'ws://other:2/v1/projects/alpha/sync' });
      expect(() => bindProject(db, 'beta', 'ws://h:1')).toThrow(/already syncs project "alpha"/);
      setConnectionStatus(db, 'connected', 42);
      expect(getSyncState(db)).toMatchObject({ status: 'connected', hubHeadSeq: 42 });
      setConnectionStatus(db, 'disconnected');
      expect(getSyncState(db)).toMatchObject({ status: 'disconnected', hubHeadSeq: 42 });
      expect(getCursor(db)).toBe(0);
    } finally {
      db.close();
    }
  });

  it('getSyncState explains an unprepared DB', () => {
    const db = new Database(tmp.path('plain.db'));
    try {
      expect(() => getSyncState(db)).toThrow(/agent run/);
    } finally {
      db.close();
    }
  });
});

describe('syncedTables', () => {
  it('lists every table with a TEXT id primary key when none are requested', () => {
    const path = tmp.path('t.db');
    makeAppDb(path, {
      schema: [
        ...['CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT)', 'CREATE TABLE notes (id VARCHAR(40) PRIMARY KEY, body TEXT)'],
        'CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER)',
        'CREATE TABLE pairs (a TEXT, b TEXT, PRIMARY KEY (a, b))',
        'CREATE TABLE multi (id TEXT, k TEXT, PRIMARY KEY (id, k))',
        'CREATE TABLE sync_extra (id TEXT PRIMARY KEY)',
        'CREATE VIEW v AS SELECT * FROM issues',
      ],
    });
    const db = openAppDb(path);
    try {
      ensureSyncSchema(db);
      expect(syncedTables(db)).toEqual(['issues', 'notes']);
      expect(syncedTables(db, ['notes', 'issues'])).toEqual(['notes', 'issues']);
      expect(() => syncedTables(db, ['issues', 'missing'])).toThrow(/table missing does not exist/);
      expect(() => syncedTables(db, ['counters'])).toThrow(/counters: primary key id must be TEXT/);
      expect(() => syncedTables(db, ['pairs'])).toThrow(/pairs has no single-column primary key named id/);
      expect(() => syncedTables(db, ['multi'])).toThrow(/multi has no single-column primary key/);
      expect(() => syncedTables(db, ['action_log'])).toThrow(/action_log/);
      expect(() => syncedTables(db, ['v'])).toThrow(/v is a view/);
      expect(() => syncedTables(db, ['bad name'])).toThrow(/not a plain SQL identifier/);
      expect(() => syncedTables(db, [])).toThrow(/no tables/);
    } finally {
      db.close();
    }
  });
});

describe('status', () => {
  it('reads state and counts from a read-only connection while the agent has the DB open', () => {
    const path = tmp.path('s.db');
    const db = makeAgentDb(path);
    const app = new AppWriter(path);
    try {
      bindProject(db, 'alpha', 'ws://h');
      setConnectionStatus(db, 'connected', 10);
      const me = getSyncState(db).deviceId;
      const engine = new ApplyEngine(db, { deviceId: me, tables: APP_TABLES });
      engine.applyFrame([ev(1, 'create', 'issues', 'i1', { title: 'A' })], 1, 10);
      app.update('issues', 'i1', { title: 'mine' });
      app.create('comments', { id: 'c1', body: 'x' });
      engine.applyFrame(
        [ev(2, 'update', 'issues', 'i1', { title: 'theirs' }, { previousData: { title: 'A' } }), ev(3, 'create', 'nope', 'x', { a: 1 })],
        3,
        10,
      );
      const ro = openAppDbReadonly(path);
      try {
        const s = readStatus(ro);
        expect(s).toMatchObject({
          deviceId: me,
          project: 'alpha',
          hubUrl: 'ws://h',
          connected: true,
          status: 'connected',
          cursor: 3,
          hubHead: 10,
          lag: 7,
          pending: 2,
          conflicts: 1,
          failed: 1,
          failedInbound: 1,
          failedOutbound: 0,
        });
        expect(s.lastSyncAt).toMatch(/^\d{4}-/);
        expect(listConflicts(ro)).toMatchObject([{ entityType: 'issues', entityId: 'i1', serverSeq: 2, remoteDeviceId: 'dev-remote', actionType: 'update', localData: { title: 'mine' }, remoteData: { title: 'theirs' } }]);
      } finally {
        ro.close();
      }
    } finally {
      app.close();
      db.close();
    }
  });
});
