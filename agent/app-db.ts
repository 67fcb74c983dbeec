// The app's SQLite file as the agent sees it: opening it, the outbox table, the agent-owned
// sync_* tables, the one-row sync state, and which tables are synced.
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { SyncError } from '../shared/errors.ts';
import { IDENTIFIER_RE } from '../shared/limits.ts';
import { nowIso } from '../shared/time.ts';

export type Db = Database.Database;

/** Connection states written to sync_state.status (read by `agent status` from another process). */
export const ConnectionStatus = {
  Connected: 'connected',
  Disconnected: 'disconnected',
  Stopped: 'stopped',
} as const;
export type ConnectionStatus = (typeof ConnectionStatus)[keyof typeof ConnectionStatus];

/**
 * Rule 3 (no echo loops) for capture triggers. While the agent applies a frame, its transaction holds a
 * row in `sync_applying`; the row is inserted and deleted inside that same transaction, so no other
 * connection ever sees it, and a crash rolls it back with the frame. A trigger created by
 * `synchub agent init` must skip logging when the row is there:
 *
 *   CREATE TRIGGER ... AFTER UPDATE ON issues WHEN ${APPLYING_GUARD_SQL} BEGIN INSERT INTO action_log ... END
 *
 * A TEMP table would not do: triggers run on the app's connection, which has no such table.
 */
export const APPLYING_GUARD_TABLE = 'sync_applying';
export const APPLYING_GUARD_SQL = `NOT EXISTS (SELECT 1 FROM ${APPLYING_GUARD_TABLE})`;

/**
 * Open an app DB for the agent.
 * - WAL: the app and the agent read and write concurrently; readers never block the writer.
 * - busy_timeout: how long one statement waits, synchronously, for a lock another connection holds.
 *   Tools and tests wait the app's short transactions out (5 s); the agent daemon passes a few ms and
 *   does its longer waiting asynchronously (write-queue.ts), so its event loop never stalls.
 * - foreign_keys OFF: remote rows may arrive before the rows they reference (td runs this way);
 *   better-sqlite3 turns enforcement on by default.
 * - synchronous NORMAL: in WAL mode a power loss can lose the last few commits of this connection
 *   but never corrupts or tears one. That is safe for everything the agent writes: an applied frame
 *   and its cursor vanish together (rule 1) and are pulled again; a lost ack marks nothing synced, so
 *   the row is pushed again and the hub dedups it. The app's own writes use the app's setting.
 * `wal: false` leaves the journal mode alone (the agent switches it with useWal, under its lock policy).
 */
export function openAppDb(path: string, opts: { busyTimeoutMs?: number; wal?: boolean } = {}): Db {
  const db = new Database(path);
  try {
    // busy_timeout first: switching to WAL needs a moment of exclusive access the app may be holding.
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
    if (opts.wal ?? true) useWal(db);
    db.pragma('foreign_keys = OFF');
    db.pragma('synchronous = NORMAL');
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** Switch the file to WAL (a no-op when it is already); needs the write lock when it is not. */
export function useWal(db: Db): void {
  db.pragma('journal_mode = WAL');
}

/** Open an app DB read-only, alongside a running agent (status, conflicts). */
export function openAppDbReadonly(path: string): Db {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return db;
}

const ACTION_LOG_SQL = `CREATE TABLE IF NOT EXISTS action_log (
  id TEXT, session_id TEXT, action_type TEXT, entity_type TEXT,
  entity_id TEXT, previous_data TEXT, new_data TEXT,
  timestamp TEXT, undone INTEGER DEFAULT 0,
  synced_at TEXT, server_seq INTEGER
)`;

/** Columns td added to action_log over time; an older outbox gets them with ALTER TABLE. */
const ACTION_LOG_ADDED: ReadonlyArray<[string, string]> = [
  ['undone', 'INTEGER DEFAULT 0'],
  ['synced_at', 'TEXT'],
  ['server_seq', 'INTEGER'],
];

/**
 * Agent-owned tables. Each is created if missing; if a table of that name exists already (td ships its
 * own `sync_state` and `sync_conflicts`), the columns listed here that it lacks are added, so the agent
 * and an older td schema can share the file. Added columns are nullable, as ALTER TABLE requires.
 */
const OWN_TABLES: ReadonlyArray<{ name: string; create: string; columns: ReadonlyArray<[string, string]> }> = [
  {
    name: 'sync_state',
    create: `CREATE TABLE IF NOT EXISTS sync_state (
      device_id TEXT, session_id TEXT, project TEXT, hub_url TEXT,
      last_pulled_server_seq INTEGER DEFAULT 0, last_sync_at TEXT,
      status TEXT DEFAULT 'disconnected', hub_head_seq INTEGER, updated_at TEXT,
      adopted_rowid INTEGER DEFAULT 0, cursor_digest TEXT,
      resync_count INTEGER DEFAULT 0, last_resync_at TEXT, last_resync_reason TEXT
    )`,
    columns: [
      ['device_id', 'TEXT'],
      ['session_id', 'TEXT'],
      ['project', 'TEXT'],
      ['hub_url', 'TEXT'],
      ['last_pulled_server_seq', 'INTEGER DEFAULT 0'],
      ['last_sync_at', 'TEXT'],
      ['status', "TEXT DEFAULT 'disconnected'"],
      ['hub_head_seq', 'INTEGER'],
      ['updated_at', 'TEXT'],
      // action_log rows up to this rowid that were already marked synced when the agent adopted the file
      // belong to an earlier sync system (td's HTTP sync): their server_seq is not ours (see rebase.ts).
      ['adopted_rowid', 'INTEGER DEFAULT 0'],
      // The hub's log digest through the cursor, written with it (hello.afterDigest): a hub whose log at
      // the cursor is another log (restored from a backup) is noticed before it streams anything.
      ['cursor_digest', 'TEXT'],
      // Times this device found the hub's log was not the one it synced, re-bootstrapped and re-pushed.
      ['resync_count', 'INTEGER DEFAULT 0'],
      ['last_resync_at', 'TEXT'],
      ['last_resync_reason', 'TEXT'],
    ],
  },
  {
    name: 'sync_conflicts',
    create: `CREATE TABLE IF NOT EXISTS sync_conflicts (
      id INTEGER PRIMARY KEY, entity_type TEXT, entity_id TEXT, server_seq INTEGER,
      remote_device_id TEXT, action_type TEXT, local_data TEXT, remote_data TEXT, detected_at TEXT
    )`,
    columns: [
      ['entity_type', 'TEXT'],
      ['entity_id', 'TEXT'],
      ['server_seq', 'INTEGER'],
      ['remote_device_id', 'TEXT'],
      ['action_type', 'TEXT'],
      ['local_data', 'TEXT'],
      ['remote_data', 'TEXT'],
      ['detected_at', 'TEXT'],
    ],
  },
  {
    name: 'sync_failed_events',
    create: `CREATE TABLE IF NOT EXISTS sync_failed_events (
      id INTEGER PRIMARY KEY, direction TEXT, server_seq INTEGER, client_action_id INTEGER,
      entity_type TEXT, entity_id TEXT, action_type TEXT, error TEXT, event TEXT, failed_at TEXT
    )`,
    columns: [
      ['direction', 'TEXT'],
      ['server_seq', 'INTEGER'],
      ['client_action_id', 'INTEGER'],
      ['entity_type', 'TEXT'],
      ['entity_id', 'TEXT'],
      ['action_type', 'TEXT'],
      ['error', 'TEXT'],
      ['event', 'TEXT'],
      ['failed_at', 'TEXT'],
    ],
  },
  {
    // The entities of the snapshot being applied (filled page by page, emptied when it finishes): rows of
    // synced tables that are not among them were deleted in the hub's log and go when it finishes.
    name: 'sync_snapshot_ids',
    create: `CREATE TABLE IF NOT EXISTS sync_snapshot_ids (entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, PRIMARY KEY (entity_type, entity_id)) WITHOUT ROWID`,
    columns: [],
  },
  {
    name: APPLYING_GUARD_TABLE,
    create: `CREATE TABLE IF NOT EXISTS ${APPLYING_GUARD_TABLE} (since TEXT)`,
    columns: [],
  },
];

/**
 * Indexes that keep the agent's queries independent of the outbox's size: pending rows are found
 * through partial indexes holding only unsynced rows (a few, even when action_log has millions).
 */
const INDEXES = [
  // readPending/countPending: entries (NULL, rowid) in rowid order, so `rowid > ? ORDER BY rowid` is a range scan.
  'CREATE INDEX IF NOT EXISTS sync_action_log_unsynced ON action_log(synced_at) WHERE synced_at IS NULL',
  // rebase: the pending rows of the entities one frame touches.
  'CREATE INDEX IF NOT EXISTS sync_action_log_unsynced_entity ON action_log(entity_id) WHERE synced_at IS NULL',
  // rebase: rows acked with a seq the stream has not delivered yet (server_seq > cursor), for the
  // frame's entities: one seek (entity_id = ? AND server_seq > ?) per entity, so the cost does not grow
  // with the acked-but-undelivered set (100k pushes acked while the stream still serves an old backlog).
  'CREATE INDEX IF NOT EXISTS sync_action_log_entity_seq ON action_log(entity_id, server_seq) WHERE server_seq IS NOT NULL',
  // divergence checks: own rows acked with a seq in a frame's range, and the highest seq acked.
  'CREATE INDEX IF NOT EXISTS sync_action_log_seq ON action_log(server_seq) WHERE server_seq IS NOT NULL',
  // quarantine lookups by outbox rowid.
  "CREATE INDEX IF NOT EXISTS sync_failed_events_outbound ON sync_failed_events(client_action_id) WHERE direction = 'outbound'",
  'CREATE INDEX IF NOT EXISTS sync_conflicts_entity ON sync_conflicts(entity_type, entity_id)',
];

const statementCache = new WeakMap<Db, Map<string, Database.Statement>>();

/** A prepared statement, prepared once per connection (preparing costs more than running a small one). */
export function cached(db: Db, sql: string): Database.Statement {
  let m = statementCache.get(db);
  if (!m) statementCache.set(db, (m = new Map()));
  let s = m.get(sql);
  if (!s) m.set(sql, (s = db.prepare(sql)));
  return s;
}

/** Quote an identifier that has already passed IDENTIFIER_RE (quoting also keeps keywords like `order` usable). */
export function quoteIdent(name: string): string {
  if (!IDENTIFIER_RE.test(name)) throw new SyncError('invalid_identifier', `not a valid SQL identifier: ${JSON.stringify(name)}`);
  return `"${name}"`;
}

function tableExists(db: Db, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

function columnNames(db: Db, table: string): Set<string> {
  const rows = db.prepare('SELECT name FROM pragma_table_info(?)').all(table) as Array<{ name: string }>;
  return new Set(rows.map((r) => r.name));
}

/**
 * Create or upgrade the outbox and the agent-owned tables; idempotent, all in one transaction
 * (a savepoint when the caller already opened one). Generates the device id and the fallback session
 * id on first use; both are then stable for the life of the file.
 */
export function ensureSyncSchema(db: Db): void {
  db.transaction(() => {
    db.exec(ACTION_LOG_SQL);
    const logCols = columnNames(db, 'action_log');
    for (const [name, type] of ACTION_LOG_ADDED) {
      if (!logCols.has(name)) db.exec(`ALTER TABLE action_log ADD COLUMN ${name} ${type}`);
    }
    for (const t of OWN_TABLES) {
      db.exec(t.create);
      const have = columnNames(db, t.name);
      for (const [name, type] of t.columns) {
        if (!have.has(name)) db.exec(`ALTER TABLE ${t.name} ADD COLUMN ${name} ${type}`);
      }
    }
    for (const sql of INDEXES) db.exec(sql);
    // A guard row can only outlive its frame through a bug; never let it silence the capture triggers.
    db.exec(`DELETE FROM ${APPLYING_GUARD_TABLE}`);

    const row = db.prepare('SELECT rowid, device_id FROM sync_state ORDER BY rowid LIMIT 1').get() as
      | { rowid: number; device_id: string | null }
      | undefined;
    if (row?.device_id) return;
    // First time: rows some earlier sync system marked synced are not ours to rebase (see adopted_rowid).
    const adopted = (db.prepare('SELECT IFNULL(MAX(rowid), 0) AS m FROM action_log WHERE synced_at IS NOT NULL').get() as { m: number }).m;
    const now = nowIso();
    if (!row) {
      db.prepare(
        `INSERT INTO sync_state (device_id, session_id, last_pulled_server_seq, status, adopted_rowid, updated_at)
         VALUES (?, ?, 0, 'disconnected', ?, ?)`,
      ).run(randomUUID(), `ses-${randomUUID()}`, adopted, now);
    } else {
      // td's own sync_state row: its cursor counts another server's seqs, so start ours at 0.
      db.prepare(
        `UPDATE sync_state SET device_id = ?, session_id = ?, last_pulled_server_seq = 0, status = 'disconnected',
           adopted_rowid = ?, updated_at = ? WHERE rowid = ?`,
      ).run(randomUUID(), `ses-${randomUUID()}`, adopted, now, row.rowid);
    }
  }).immediate();
}

export interface SyncState {
  deviceId: string;
  /** Session id for action_log rows whose session_id is NULL or empty; stable, so re-pushes dedup. */
  sessionId: string;
  project: string | null;
  hubUrl: string | null;
  /** last_pulled_server_seq: every event up to here is applied. */
  cursor: number;
  lastSyncAt: string | null;
  status: string;
  hubHeadSeq: number | null;
  updatedAt: string | null;
  /** See OWN_TABLES: synced rows up to this rowid predate the agent. */
  adoptedRowid: number;
  /** The hub's log digest through the cursor, or null (never pulled, or an older agent's cursor). */
  cursorDigest: string | null;
  resyncCount: number;
  lastResyncAt: string | null;
  lastResyncReason: string | null;
}

type StateRow = {
  device_id: string;
  session_id: string;
  project: string | null;
  hub_url: string | null;
  last_pulled_server_seq: number | null;
  last_sync_at: string | null;
  status: string | null;
  hub_head_seq: number | null;
  updated_at: string | null;
  adopted_rowid: number | null;
  cursor_digest: string | null;
  resync_count: number | null;
  last_resync_at: string | null;
  last_resync_reason: string | null;
};

/** The one sync_state row; a clear error when the DB was never prepared by the agent. */
export function getSyncState(db: Db): SyncState {
  if (!tableExists(db, 'sync_state')) {
    throw new SyncError('not_initialized', 'this database has no sync state: run `synchub agent run` or `agent init` on it first');
  }
  const r = db.prepare('SELECT * FROM sync_state ORDER BY rowid LIMIT 1').get() as StateRow | undefined;
  if (!r || !r.device_id) {
    throw new SyncError('not_initialized', 'this database has no sync state: run `synchub agent run` or `agent init` on it first');
  }
  return {
    deviceId: r.device_id,
    sessionId: r.session_id,
    project: r.project,
    hubUrl: r.hub_url,
    cursor: r.last_pulled_server_seq ?? 0,
    lastSyncAt: r.last_sync_at,
    status: r.status ?? ConnectionStatus.Disconnected,
    hubHeadSeq: r.hub_head_seq,
    updatedAt: r.updated_at,
    adoptedRowid: r.adopted_rowid ?? 0,
    cursorDigest: r.cursor_digest ?? null,
    resyncCount: r.resync_count ?? 0,
    lastResyncAt: r.last_resync_at ?? null,
    lastResyncReason: r.last_resync_reason ?? null,
  };
}

/** The state row's WHERE clause: the first row (td's table may in theory hold more). */
export const STATE_ROW = 'rowid = (SELECT MIN(rowid) FROM sync_state)';

/** The cursor: the last server seq applied to this DB. */
export function getCursor(db: Db): number {
  const r = db.prepare(`SELECT last_pulled_server_seq AS c FROM sync_state WHERE ${STATE_ROW}`).get() as { c: number | null } | undefined;
  return r?.c ?? 0;
}

/** Record the connection state (and the hub's head seq when known) for `agent status`. */
export function setConnectionStatus(db: Db, status: ConnectionStatus | string, headSeq?: number): void {
  if (headSeq === undefined) {
    db.prepare(`UPDATE sync_state SET status = ?, updated_at = ? WHERE ${STATE_ROW}`).run(status, nowIso());
  } else {
    db.prepare(`UPDATE sync_state SET status = ?, hub_head_seq = ?, updated_at = ? WHERE ${STATE_ROW}`).run(status, headSeq, nowIso());
  }
}

/**
 * Bind the DB to a project and hub. A DB syncs exactly one project: its cursor and device id mean
 * nothing in another project's log, so binding it elsewhere is refused. The hub URL may change
 * (same project moved behind a new address).
 */
export function bindProject(db: Db, project: string, hubUrl: string): void {
  const state = getSyncState(db);
  if (state.project !== null && state.project !== project) {
    throw new SyncError(
      'project_mismatch',
      `this database already syncs project "${state.project}"; it cannot sync "${project}" (use a copy made before its first sync, or a fresh database)`,
    );
  }
  db.prepare(`UPDATE sync_state SET project = ?, hub_url = ?, updated_at = ? WHERE ${STATE_ROW}`).run(project, hubUrl, nowIso());
}

export interface ColumnInfo {
  name: string;
  type: string;
  pk: number;
}

/** PRAGMA table_info of one table (empty when it does not exist). */
export function tableColumns(db: Db, table: string): ColumnInfo[] {
  return db.prepare('SELECT name, type, pk FROM pragma_table_info(?)').all(table) as ColumnInfo[];
}

/** Tables the agent never syncs. */
function isInternalTable(name: string): boolean {
  return name === 'action_log' || name.startsWith('sync_') || name.startsWith('sqlite_');
}

/** TEXT affinity by SQLite's rules (section 3.1 of the datatype doc): the declared type names CHAR, CLOB or TEXT. */
function hasTextAffinity(type: string): boolean {
  const t = type.toUpperCase();
  return !t.includes('INT') && (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT'));
}

/** Why a table cannot be synced, or null when it can. */
function unsyncableReason(db: Db, table: string): string | null {
  if (!IDENTIFIER_RE.test(table)) return `table name ${JSON.stringify(table)} is not a plain SQL identifier`;
  if (isInternalTable(table)) return `table ${table} belongs to the sync machinery and cannot be synced`;
  const kind = db.prepare("SELECT type FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')").get(table) as { type: string } | undefined;
  if (!kind) return `table ${table} does not exist`;
  if (kind.type !== 'table') return `${table} is a view, not a table`;
  const cols = tableColumns(db, table);
  const id = cols.find((c) => c.name === 'id');
  if (!id || id.pk !== 1 || cols.some((c) => c.pk > 1)) return `table ${table} has no single-column primary key named id`;
  if (!hasTextAffinity(id.type)) return `table ${table}: primary key id must be TEXT (it is ${id.type || 'untyped'})`;
  return null;
}

/**
 * The tables to sync. Given a list, each must exist with a TEXT primary key `id` and a plain name, else
 * an Error naming the table. Without one, every user table that qualifies (action_log, sync_* and
 * sqlite_* excluded), in name order.
 */
export function syncedTables(db: Db, requested?: string[]): string[] {
  if (requested !== undefined) {
    if (requested.length === 0) throw new SyncError('invalid_tables', 'no tables given to sync');
    const seen = new Set<string>();
    for (const table of requested) {
      const reason = unsyncableReason(db, table);
      if (reason) throw new SyncError('invalid_tables', reason);
      seen.add(table);
    }
    return [...seen];
  }
  const names = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .pluck()
    .all() as string[];
  return names.filter((n) => !isInternalTable(n) && unsyncableReason(db, n) === null);
}
