// Test kit for the agent's database side: temp app DBs, an app-like writer on its own connection
// (each change and its action_log row in one transaction, as td does), replay of a hub log into a
// fresh DB, and table dumps for equality checks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { ActionType, PushEvent, SyncEvent } from '../../shared/event.ts';
import { ensureSyncSchema, openAppDb, type Db } from '../../agent/app-db.ts';
import { ApplyEngine } from '../../agent/apply.ts';

type Row = Record<string, unknown>;

/** The kit's app schema: a table with soft delete and one without. */
export const APP_SCHEMA = [
  'CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT, status TEXT, priority INTEGER, labels TEXT, deleted_at TEXT, updated_at TEXT)',
  'CREATE TABLE comments (id TEXT PRIMARY KEY, issue_id TEXT, body TEXT, created_at TEXT)',
];
export const APP_TABLES = ['issues', 'comments'];

/** A temp directory removed by cleanup(). */
export interface TempDir {
  dir: string;
  path(name: string): string;
  cleanup(): void;
}

export function tempDir(prefix = 'synchub-agent-'): TempDir {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Create an app DB file the way an app would: its tables (and, like td, its own action_log unless
 * `actionLog: false`), written by a separate connection that is closed afterwards.
 */
export function makeAppDb(path: string, opts: { schema?: string[]; actionLog?: boolean } = {}): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  for (const sql of opts.schema ?? APP_SCHEMA) db.exec(sql);
  if (opts.actionLog !== false) {
    db.exec(`CREATE TABLE action_log (id TEXT, session_id TEXT, action_type TEXT, entity_type TEXT, entity_id TEXT,
      previous_data TEXT, new_data TEXT, timestamp TEXT, undone INTEGER DEFAULT 0, synced_at TEXT, server_seq INTEGER)`);
  }
  db.close();
}

/** Make an app DB and open it for the agent with its sync tables in place. */
export function makeAgentDb(path: string, opts: { schema?: string[] } = {}): Db {
  if (path !== ':memory:') makeAppDb(path, opts);
  const db = openAppDb(path);
  // An in-memory DB exists only on its connection: the schema goes in there.
  if (path === ':memory:') for (const sql of opts.schema ?? APP_SCHEMA) db.exec(sql);
  ensureSyncSchema(db);
  return db;
}

/** A value as an app binding JSON data would store it (integers as INTEGER, objects as JSON text). */
function sqlValue(v: unknown): unknown {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return v ?? null;
}

let counter = 0;

/**
 * The app: writes a change and its action_log row in one transaction, from its own connection. Each
 * method returns the action_log rowid (the clientActionId), or null when the change was a no-op (an
 * app does not log an update of a row it does not have).
 */
export class AppWriter {
  readonly db: Db;
  /** `sessionId` goes into action_log.session_id (null: the agent's fallback session is used). */
  constructor(
    path: string,
    private readonly sessionId: string | null = 'ses-app',
  ) {
    this.db = new Database(path);
    this.db.pragma('busy_timeout = 5000');
  }

  close(): void {
    this.db.close();
  }

  row(table: string, id: string): Row | undefined {
    return this.db.prepare(`SELECT * FROM "${table}" WHERE id = ?`).get(id) as Row | undefined;
  }

  private log(action: string, table: string, id: string, prev: Row | null | undefined, next: Row | null | undefined, ts: string): number {
    const r = this.db
      .prepare(
        `INSERT INTO action_log (id, session_id, action_type, entity_type, entity_id, previous_data, new_data, timestamp, undone)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)`,
      )
      .run(`al-${++counter}`, this.sessionId, action, table, id, prev ? JSON.stringify(prev) : '', next ? JSON.stringify(next) : '', ts);
    return Number(r.lastInsertRowid);
  }

  // Every change takes the write lock up front (BEGIN IMMEDIATE), as an app sharing its database
  // should: a deferred transaction that reads and then writes fails at once with SQLITE_BUSY
  // (busy_timeout does not apply) when the agent commits between the read and the write.

  /** Insert or overwrite a full row (upsert), logged as `create`. */
  create(table: string, row: Row, ts = new Date().toISOString()): number {
    return this.db.transaction(() => {
      const cols = Object.keys(row).filter((c) => c !== 'id');
      const set = cols.map((c) => `"${c}" = excluded."${c}"`).join(', ');
      this.db
        .prepare(
          `INSERT INTO "${table}" (id${cols.map((c) => `, "${c}"`).join('')}) VALUES (?${', ?'.repeat(cols.length)})` +
            (cols.length ? ` ON CONFLICT(id) DO UPDATE SET ${set}` : ' ON CONFLICT(id) DO NOTHING'),
        )
        .run(row.id, ...cols.map((c) => sqlValue(row[c])));
      return this.log('create', table, String(row.id), null, row, ts);
    }).immediate();
  }

  /** Change some fields of an existing row, logged as `update` with full previous and new rows. */
  update(table: string, id: string, fields: Row, ts = new Date().toISOString(), action = 'update'): number | null {
    return this.db.transaction(() => {
      const before = this.row(table, id);
      if (!before) return null;
      const cols = Object.keys(fields);
      this.db.prepare(`UPDATE "${table}" SET ${cols.map((c) => `"${c}" = ?`).join(', ')} WHERE id = ?`).run(...cols.map((c) => sqlValue(fields[c])), id);
      return this.log(action, table, id, before, this.row(table, id), ts);
    }).immediate();
  }

  /** Hard delete, logged as `hard_delete`. */
  hardDelete(table: string, id: string, ts = new Date().toISOString()): number | null {
    return this.db.transaction(() => {
      const before = this.row(table, id);
      if (!before) return null;
      this.db.prepare(`DELETE FROM "${table}" WHERE id = ?`).run(id);
      return this.log('hard_delete', table, id, before, null, ts);
    }).immediate();
  }

  /** Soft delete (deleted_at = ts), logged as `soft_delete` (td's own name for it is `delete`). */
  softDelete(table: string, id: string, ts = new Date().toISOString(), action = 'soft_delete'): number | null {
    return this.db.transaction(() => {
      const before = this.row(table, id);
      if (!before) return null;
      this.db.prepare(`UPDATE "${table}" SET deleted_at = ? WHERE id = ?`).run(ts, id);
      return this.log(action, table, id, before, this.row(table, id), ts);
    }).immediate();
  }

  /** Restore: deleted_at = NULL, updated_at = ts (the apply rule), logged as `restore`. */
  restore(table: string, id: string, ts = new Date().toISOString()): number | null {
    return this.db.transaction(() => {
      const before = this.row(table, id);
      if (!before) return null;
      this.db.prepare(`UPDATE "${table}" SET deleted_at = NULL, updated_at = ? WHERE id = ?`).run(ts, id);
      return this.log('restore', table, id, before, this.row(table, id), ts);
    }).immediate();
  }

  /** Raw action_log insert (td-style rows, malformed rows). */
  rawLog(cols: Row): number {
    const names = Object.keys(cols);
    const r = this.db
      .prepare(`INSERT INTO action_log (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`)
      .run(...names.map((n) => cols[n]));
    return Number(r.lastInsertRowid);
  }
}

/** Every row of each table, sorted by id: compare two DBs with toEqual. */
export function dumpTables(db: Db, tables: string[] = APP_TABLES): Record<string, Row[]> {
  const out: Record<string, Row[]> = {};
  for (const t of tables) out[t] = db.prepare(`SELECT * FROM "${t}" ORDER BY id`).all() as Row[];
  return out;
}

/**
 * Build a fresh DB with the kit's schema (or `schema`) at `path` (':memory:' works) and apply `events`
 * (a log prefix: seqs 1..N) in seq order with the same ApplyEngine (device id 'replayer', so every
 * event is remote). Returns the open DB.
 */
export function replayInto(path: string, events: SyncEvent[], opts: { schema?: string[]; tables?: string[] } = {}): Db {
  const db = makeAgentDb(path, { schema: opts.schema });
  const engine = new ApplyEngine(db, { deviceId: 'replayer', tables: opts.tables ?? APP_TABLES });
  const sorted = [...events].sort((a, b) => a.serverSeq - b.serverSeq);
  for (let i = 0; i < sorted.length; i += 500) {
    const frame = sorted.slice(i, i + 500);
    engine.applyFrame(frame, frame[frame.length - 1]!.serverSeq, sorted.length);
  }
  return db;
}

/** A stored event from its parts, for hand-written frames. */
export function ev(
  serverSeq: number,
  actionType: ActionType,
  entityType: string,
  entityId: string,
  newData: Row | null,
  opts: { previousData?: Row | null; deviceId?: string; clientActionId?: number; clientTimestamp?: string; sessionId?: string } = {},
): SyncEvent {
  return {
    serverSeq,
    deviceId: opts.deviceId ?? 'dev-remote',
    sessionId: opts.sessionId ?? 'ses-remote',
    clientActionId: opts.clientActionId ?? serverSeq,
    actionType,
    entityType,
    entityId,
    payload: { schemaVersion: 1, newData, previousData: opts.previousData ?? null },
    clientTimestamp: opts.clientTimestamp ?? '2026-01-01T00:00:00.000Z',
    serverTimestamp: '2026-01-01T00:00:01.000Z',
  };
}

/** A push event as the hub would store it: seq, device and server time added. */
export function stored(p: PushEvent, serverSeq: number, deviceId: string): SyncEvent {
  return { ...p, serverSeq, deviceId, actionType: p.actionType as ActionType, serverTimestamp: new Date().toISOString() };
}
