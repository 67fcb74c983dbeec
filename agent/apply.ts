// Applying the stream to the app DB: td's apply rules (RowApplier) and one frame per transaction with
// rebase of undelivered local changes, conflicts and poison handling (ApplyEngine).
import type Database from 'better-sqlite3';
import { SyncError } from '../shared/errors.ts';
import type { ActionType, SyncEvent } from '../shared/event.ts';
import { IDENTIFIER_RE } from '../shared/limits.ts';
import { entityTable } from '../shared/td-actions.ts';
import { nowIso } from '../shared/time.ts';
import { diffKeys, effectOf, RuleError, sameJson, type RowEffect } from '../shared/apply-rules.ts';
import { dbErrorText, sqliteCode } from './db-errors.ts';
import { APPLYING_GUARD_SQL, APPLYING_GUARD_TABLE, STATE_ROW, quoteIdent, tableColumns } from './app-db.ts';
import { checkOwnAcks } from './divergence.ts';
import { decodeOutboxRow, OUTBOX_NOT_QUARANTINED, OUTBOX_ROW_COLUMNS, type LocalChange, type OutboxRow, type Row } from './outbox.ts';
import type { SnapshotRow } from '../shared/protocol.ts';
import { changedColumns, columnsWritten, entityKey, isConflict, loadUndelivered, type Undelivered } from './rebase.ts';

export { APPLYING_GUARD_SQL, APPLYING_GUARD_TABLE };

type Db = Database.Database;
type Statement = Database.Statement;

/** One change to one row, remote or local: what the apply rules need. */
export interface Change {
  actionType: ActionType;
  /** Table name (aliases already resolved). */
  table: string;
  entityId: string;
  newData: Row | null;
  previousData: Row | null;
  /** soft_delete writes it into deleted_at; restore into updated_at (when the table has one). */
  clientTimestamp: string;
}

/** A change that can never apply (bad payload, unknown table or column): permanent, per event. */
export class ApplyError extends Error {
  override name = 'ApplyError';
}

/** The stream skipped a seq (or a frame contradicts itself): nothing was applied; reconnect from the cursor. */
export class StreamGapError extends SyncError {
  constructor(message: string) {
    super('stream_gap', message);
  }
}

/**
 * Failures that are about the database, not the event: they must stop the frame (rolled back, cursor
 * unchanged) instead of filing every event as poison — a full disk must not discard the stream.
 */
const FRAME_LEVEL_CODES = ['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR', 'SQLITE_FULL', 'SQLITE_NOMEM', 'SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_READONLY', 'SQLITE_CANTOPEN', 'SQLITE_INTERRUPT', 'SQLITE_PROTOCOL', 'SQLITE_PERM'];

function isFrameLevelError(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== null && FRAME_LEVEL_CODES.some((c) => code.startsWith(c));
}

/**
 * A JSON value as SQLite stores it: objects and arrays as JSON text, booleans as 0/1, integers bound as
 * INTEGER (better-sqlite3 binds every JS number as REAL, which would turn 5 into '5.0' in a TEXT column).
 */
function toSqlValue(v: unknown): unknown {
  switch (typeof v) {
    case 'string':
      return v;
    case 'number':
      return Number.isSafeInteger(v) ? BigInt(v) : v;
    case 'boolean':
      return v ? 1n : 0n;
    case 'object':
      return v === null ? null : JSON.stringify(v);
    case 'bigint':
      return v;
    default:
      return null;
  }
}

// The rules themselves (which fields a change writes) live in shared/apply-rules.ts, used by the hub too.
export { sameJson, diffKeys };

/** Above this many distinct column sets per table, cached statements are dropped and re-prepared on demand. */
const MAX_STATEMENTS_PER_TABLE = 512;

/**
 * Rows per multi-row upsert statement (a power of two; fewer for wide tables, so that one statement
 * stays under 999 bound values, the limit of the oldest SQLite builds). One statement per 64 creates
 * instead of one each cut the SQLite side of a catch-up by about a third.
 */
const MAX_ROWS_PER_UPSERT = 64;

/** A create as one row of a multi-row upsert (RowApplier.upsertRow): consecutive ones of one shape are written together. */
export interface UpsertRow {
  readonly table: string;
  /** Columns written, in table order (`id` excluded). */
  readonly cols: readonly string[];
  /** The entity id, then the values of `cols`. */
  readonly values: unknown[];
}

/** Two upsert rows can share a statement: same table, same columns. */
export function sameShape(a: UpsertRow, b: UpsertRow): boolean {
  if (a.table !== b.table || a.cols.length !== b.cols.length) return false;
  for (let i = 0; i < a.cols.length; i++) if (a.cols[i] !== b.cols[i]) return false;
  return true;
}

interface TableInfo {
  name: string;
  quoted: string;
  /** Columns in table order, `id` excluded. */
  columns: string[];
  columnSet: Set<string>;
  hasDeletedAt: boolean;
  hasUpdatedAt: boolean;
  select: Statement;
  delete: Statement;
  softDelete: Statement | null;
  restore: Statement | null;
  /** Upsert/update statements by operation and column list. */
  statements: Map<string, Statement>;
}

/**
 * td's apply rules on one connection. Table and column names come from PRAGMA table_info (read once,
 * again after a schema change) and IDENTIFIER_RE before any SQL is built; statements are cached per
 * (table, operation, column list). Throws ApplyError for a change that can never apply; SQLite errors
 * pass through (the engine sorts permanent from frame-level ones).
 */
export class RowApplier {
  private readonly tables = new Map<string, TableInfo>();

  constructor(
    private readonly db: Db,
    private readonly synced: readonly string[],
  ) {
    this.reload();
  }

  /** Re-read the schema (after an app migration); drops every cached statement. */
  reload(): void {
    this.tables.clear();
    for (const name of this.synced) {
      if (!IDENTIFIER_RE.test(name)) continue;
      const cols = tableColumns(this.db, name);
      if (!cols.some((c) => c.name === 'id')) continue;
      const q = quoteIdent(name);
      // Only plain identifiers are ever interpolated; a payload key naming any other column is refused.
      const columns = cols.map((c) => c.name).filter((c) => c !== 'id' && IDENTIFIER_RE.test(c));
      const hasDeletedAt = columns.includes('deleted_at');
      const hasUpdatedAt = columns.includes('updated_at');
      this.tables.set(name, {
        name,
        quoted: q,
        columns,
        columnSet: new Set(columns),
        hasDeletedAt,
        hasUpdatedAt,
        select: this.db.prepare(`SELECT * FROM ${q} WHERE "id" = ?`),
        delete: this.db.prepare(`DELETE FROM ${q} WHERE "id" = ?`),
        softDelete: hasDeletedAt ? this.db.prepare(`UPDATE ${q} SET "deleted_at" = ? WHERE "id" = ?`) : null,
        restore: hasDeletedAt
          ? this.db.prepare(
              hasUpdatedAt
                ? `UPDATE ${q} SET "deleted_at" = NULL, "updated_at" = ? WHERE "id" = ?`
                : `UPDATE ${q} SET "deleted_at" = NULL WHERE "id" = ?`,
            )
          : null,
        statements: new Map(),
      });
    }
  }

  private info(table: string): TableInfo {
    const t = this.tables.get(table);
    if (!t) {
      if (!IDENTIFIER_RE.test(table)) throw new ApplyError(`entity type ${JSON.stringify(table)} is not a valid table name`);
      throw new ApplyError(`entity type ${table} is not a synced table`);
    }
    return t;
  }

  /** The row as stored, or undefined. */
  readRow(table: string, id: string): Row | undefined {
    const t = this.tables.get(table);
    return t ? (t.select.get(id) as Row | undefined) : undefined;
  }

  /** Apply one change with td's rules (shared/apply-rules.ts decides what it writes). */
  apply(c: Change): void {
    const { t, effect } = this.effect(c);
    this.applyEffect(t, c.entityId, effect);
  }

  /** The change's table and what the rules make it write; ApplyError for a change that cannot apply. */
  private effect(c: Change): { t: TableInfo; effect: RowEffect } {
    const t = this.info(c.table);
    if (c.entityId === '') throw new ApplyError('empty entity id');
    try {
      return { t, effect: effectOf(c) };
    } catch (err) {
      if (err instanceof RuleError) throw new ApplyError(err.message);
      throw err;
    }
  }

  /**
   * A change that is a plain upsert (a create naming at least one column) as a row for upsertRows, or
   * null: apply it with apply(). Throws ApplyError exactly where apply() would, so a caller may file
   * the change as failed without applying it.
   */
  upsertRow(c: Change): UpsertRow | null {
    const { t, effect } = this.effect(c);
    if (effect.op !== 'upsert') return null;
    const { cols, values } = this.pick(t, effect.fields, [c.entityId]);
    if (cols.length === 0) {
      if (t.columns.length > 0) throw new ApplyError(`create for ${t.name} names none of its columns`);
      return null;
    }
    return { table: t.name, cols, values };
  }

  /**
   * Write upsert rows of one shape (sameShape), in order, MAX_ROWS_PER_UPSERT to a statement: the same
   * rows as apply() of each would write (SQLite applies a multi-row upsert row by row, a later row with
   * the same id updating the earlier one). A failing statement throws with part of them written: run
   * this inside a savepoint and roll back to it.
   */
  upsertRows(rows: readonly UpsertRow[]): void {
    if (rows.length === 0) return;
    const first = rows[0]!;
    const t = this.info(first.table);
    let max = MAX_ROWS_PER_UPSERT;
    while (max > 1 && max * (first.cols.length + 1) > 999) max >>= 1;
    for (let i = 0; i < rows.length; ) {
      let k = max;
      while (k > rows.length - i) k >>= 1;
      const params: unknown[] = [];
      for (let j = i; j < i + k; j++) for (const v of rows[j]!.values) params.push(v);
      this.statement(t, 'upsert', first.cols, k).run(params);
      i += k;
    }
  }

  /**
   * A snapshot row: the hub's current row of an entity replaces the local one, as a replay would leave
   * it: a column the hub's row does not name has its default, not a stale local value.
   */
  replaceRow(table: string, entityId: string, data: Row): void {
    if (entityId === '') throw new ApplyError('empty entity id');
    const t = this.info(table);
    const fields: Row = {};
    for (const k of Object.keys(data)) if (k !== 'id') fields[k] = data[k];
    t.delete.run(entityId);
    this.applyEffect(t, entityId, { op: 'upsert', fields });
  }

  /**
   * Delete the rows of every synced table that the finished snapshot did not hold (sync_snapshot_ids),
   * except rows whose history predates the agent (outbox rows up to adoptedRowid): those were never in
   * any synchub log. Returns the rows deleted.
   */
  sweepUnseen(adoptedRowid: number): number {
    let n = 0;
    for (const t of this.tables.values()) {
      const keepAdopted = adoptedRowid > 0 ? ` AND "id" NOT IN (SELECT entity_id FROM action_log WHERE rowid <= ${Math.floor(adoptedRowid)} AND entity_id IS NOT NULL)` : '';
      n += this.db
        .prepare(`DELETE FROM ${t.quoted} WHERE "id" NOT IN (SELECT entity_id FROM sync_snapshot_ids WHERE entity_type = ?)${keepAdopted}`)
        .run(t.name).changes;
    }
    return n;
  }

  private applyEffect(t: TableInfo, entityId: string, effect: RowEffect): void {
    switch (effect.op) {
      case 'upsert': {
        const { cols, values } = this.pick(t, effect.fields);
        // td refuses a create naming no known column (a payload from an unrelated schema); a table made of
        // nothing but `id` can still be created.
        if (cols.length === 0 && t.columns.length > 0) throw new ApplyError(`create for ${t.name} names none of its columns`);
        this.statement(t, 'upsert', cols).run(entityId, ...values);
        return;
      }
      case 'update': {
        // Never inserts (a row deleted here stays deleted). No field to write means nothing to do (td then
        // falls back to a full write; DESIGN asks for exactly the differing fields, which keeps a no-op
        // update from reverting other devices' edits).
        const { cols, values } = this.pick(t, effect.fields);
        if (cols.length === 0) return;
        this.statement(t, 'update', cols).run(...values, entityId);
        return;
      }
      case 'delete':
        // Hard delete; no-op when missing. (td also cascades boards -> positions: app-specific, not here.)
        t.delete.run(entityId);
        return;
      case 'soft_delete':
        // A table without deleted_at cannot soft-delete: the event fails, as in td (its UPDATE errors on the column).
        if (!t.softDelete) throw new ApplyError(`table ${t.name} has no deleted_at column: cannot soft_delete`);
        t.softDelete.run(effect.at, entityId);
        return;
      case 'restore':
        // deleted_at = NULL and, as td does, updated_at = the event's timestamp when the table has one.
        if (!t.restore) throw new ApplyError(`table ${t.name} has no deleted_at column: cannot restore`);
        if (t.hasUpdatedAt) t.restore.run(effect.at, entityId);
        else t.restore.run(entityId);
        return;
    }
  }

  /**
   * Known columns of `data` in table order with their SQL values. Keys naming no column are dropped
   * (forward compatibility: a newer app version may send more fields); a key that is not even a valid
   * identifier marks the payload as malformed. The values are appended to `values`.
   */
  private pick(t: TableInfo, data: Row, values: unknown[] = []): { cols: string[]; values: unknown[] } {
    for (const k of Object.keys(data)) {
      if (!t.columnSet.has(k) && k !== 'id' && !IDENTIFIER_RE.test(k)) throw new ApplyError(`invalid column name ${JSON.stringify(k)}`);
    }
    const cols: string[] = [];
    for (const col of t.columns) {
      if (Object.hasOwn(data, col)) {
        cols.push(col);
        values.push(toSqlValue(data[col]));
      }
    }
    return { cols, values };
  }

  /** The statement for `op` on these columns; an upsert may insert `rows` rows at once. */
  private statement(t: TableInfo, op: 'upsert' | 'update', cols: readonly string[], rows = 1): Statement {
    const key = `${op}:${rows}:${cols.join(',')}`;
    let s = t.statements.get(key);
    if (s) return s;
    const quoted = cols.map((c) => `"${c}"`);
    let sql: string;
    if (op === 'upsert') {
      // ON CONFLICT DO UPDATE, never INSERT OR REPLACE: REPLACE deletes the old row first, which fires
      // the app's delete triggers and resets every column the payload does not carry.
      const set = quoted.map((c) => `${c} = excluded.${c}`).join(', ');
      const tuple = `(?${', ?'.repeat(cols.length)})`;
      sql =
        `INSERT INTO ${t.quoted} ("id"${quoted.map((c) => `, ${c}`).join('')}) VALUES ${Array(rows).fill(tuple).join(', ')} ` +
        (cols.length ? `ON CONFLICT ("id") DO UPDATE SET ${set}` : 'ON CONFLICT ("id") DO NOTHING');
    } else {
      sql = `UPDATE ${t.quoted} SET ${quoted.map((c) => `${c} = ?`).join(', ')} WHERE "id" = ?`;
    }
    if (t.statements.size >= MAX_STATEMENTS_PER_TABLE) t.statements.clear();
    s = this.db.prepare(sql);
    t.statements.set(key, s);
    return s;
  }
}

/** A remote change that overwrote something an undelivered local change decides. */
export interface ConflictRecord {
  entityType: string;
  entityId: string;
  serverSeq: number;
  remoteDeviceId: string;
  actionType: ActionType;
  /** The row before the remote event (local edits included); null when it did not exist. */
  localData: Row | null;
  /** The remote event's newData. */
  remoteData: Row | null;
}

/** An event that could not apply for a permanent reason; it is in sync_failed_events. */
export interface FailedRecord {
  serverSeq: number;
  entityType: string;
  entityId: string;
  actionType: string;
  error: string;
}

export interface FrameResult {
  /** Events applied (own ones included). */
  applied: number;
  /** Events at or below the cursor, skipped as already applied. */
  skipped: number;
  /** Own events whose outbox row the stream marked synced. */
  ownConfirmed: number;
  conflicts: ConflictRecord[];
  failed: FailedRecord[];
  /** The cursor after the frame. */
  cursor: number;
}

export interface ApplyEngineOptions {
  /** This DB's device id (sync_state.device_id). */
  deviceId: string;
  /** Synced tables (see syncedTables). */
  tables: string[];
}

/** A create waiting in a frame's run of creates (ApplyEngine.queueUpsert). */
interface Queued {
  ev: SyncEvent;
  change: Change;
  row: UpsertRow;
}

function eventChange(ev: SyncEvent, table: string): Change {
  return {
    actionType: ev.actionType,
    table,
    entityId: ev.entityId,
    newData: ev.payload.newData,
    previousData: ev.payload.previousData,
    clientTimestamp: ev.clientTimestamp,
  };
}

/**
 * Applies `events` frames (agent rules 1–6). One frame = one IMMEDIATE transaction (the write lock is
 * taken up front, so the frame never fails half-way on a lock upgrade) holding the changes, the
 * cursor and the capture-trigger guard. Each event with undelivered local changes on its entity runs in
 * a savepoint; an event that fails permanently is rolled back alone and filed in sync_failed_events.
 * Consecutive remote creates of one table and column set (a catch-up is mostly these) are written by
 * multi-row upserts in one savepoint; if one of them fails, they are applied one by one instead.
 */
export class ApplyEngine {
  private readonly rows: RowApplier;
  private readonly tableSet: ReadonlySet<string>;
  private schemaVersion: number;
  private readonly s;
  private readonly frame: (events: SyncEvent[], throughSeq: number, headSeq: number, digest: string | null) => FrameResult;

  constructor(
    private readonly db: Db,
    private readonly opts: ApplyEngineOptions,
  ) {
    this.tableSet = new Set(opts.tables);
    this.rows = new RowApplier(db, opts.tables);
    this.schemaVersion = this.readSchemaVersion();
    this.s = {
      state: db.prepare(`SELECT last_pulled_server_seq AS cursor, adopted_rowid AS adopted FROM sync_state WHERE ${STATE_ROW}`),
      setCursor: db.prepare(
        `UPDATE sync_state SET last_pulled_server_seq = ?, cursor_digest = ?, hub_head_seq = ?, last_sync_at = ?, updated_at = ? WHERE ${STATE_ROW}`,
      ),
      guardOn: db.prepare(`INSERT INTO ${APPLYING_GUARD_TABLE} (since) VALUES (?)`),
      guardOff: db.prepare(`DELETE FROM ${APPLYING_GUARD_TABLE}`),
      seen: db.prepare('INSERT OR IGNORE INTO sync_snapshot_ids (entity_type, entity_id) VALUES (?, ?)'),
      clearSeen: db.prepare('DELETE FROM sync_snapshot_ids'),
      markOwn: db.prepare(
        // Skips rows already marked (the ack came first): an UPDATE that changes nothing still rewrites
        // the row and its partial-index entries.
        `UPDATE action_log SET synced_at = COALESCE(synced_at, ?), server_seq = ?
         WHERE rowid = ? AND entity_id = ? AND (synced_at IS NULL OR server_seq IS NOT ?)`,
      ),
      failed: db.prepare(
        `INSERT INTO sync_failed_events (direction, server_seq, client_action_id, entity_type, entity_id, action_type, error, event, failed_at)
         VALUES ('inbound', ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      conflict: db.prepare(
        `INSERT INTO sync_conflicts (entity_type, entity_id, server_seq, remote_device_id, action_type, local_data, remote_data, detected_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      savepoint: db.prepare('SAVEPOINT sync_event'),
      release: db.prepare('RELEASE sync_event'),
      rollback: db.prepare('ROLLBACK TO sync_event'),
      savepointLocal: db.prepare('SAVEPOINT sync_local'),
      releaseLocal: db.prepare('RELEASE sync_local'),
      rollbackLocal: db.prepare('ROLLBACK TO sync_local'),
    };
    const tx = db.transaction((events: SyncEvent[], throughSeq: number, headSeq: number, digest: string | null) => this.run(events, throughSeq, headSeq, digest));
    this.frame = (events, throughSeq, headSeq, digest) => tx.immediate(events, throughSeq, headSeq, digest);
  }

  private readSchemaVersion(): number {
    return this.db.pragma('schema_version', { simple: true }) as number;
  }

  /**
   * Apply one frame and move the cursor to throughSeq, atomically. Events at or below the cursor are
   * skipped (re-delivery). Throws, with nothing applied: a transient DB error (isTransientDbError:
   * retry the same frame later), StreamGapError (reconnect from the cursor), or another DB failure.
   */
  applyFrame(events: SyncEvent[], throughSeq: number, headSeq: number, throughDigest: string | null = null): FrameResult {
    return this.frame(events, throughSeq, headSeq, throughDigest);
  }

  private reloadIfMigrated(): void {
    const version = this.readSchemaVersion();
    if (version !== this.schemaVersion) {
      this.rows.reload();
      this.schemaVersion = version;
    }
  }

  /**
   * One snapshot page, in its own transaction: each row written as a create (an upsert of its fields)
   * over whatever the table holds. The cursor does not move: a crash before finishSnapshot leaves the
   * device bootstrapping again from the start, and writing a row twice is harmless. Local changes are
   * re-applied on top once, by finishSnapshot. Rows of tables this device does not sync, or that
   * cannot apply (as their events would not), are skipped and counted.
   */
  applySnapshotRows(rows: SnapshotRow[], first: boolean): { applied: number; skipped: number } {
    return this.db.transaction(() => {
      this.reloadIfMigrated();
      this.s.guardOn.run(nowIso());
      // A new snapshot (also one started over after a crash or a dropped link) starts a new set.
      if (first) this.s.clearSeen.run();
      let applied = 0;
      let skipped = 0;
      for (const r of rows) {
        const table = entityTable(r.entityType);
        if (!this.tableSet.has(table)) {
          skipped++;
          continue;
        }
        this.s.savepoint.run();
        try {
          this.rows.replaceRow(table, r.entityId, r.data);
          this.s.seen.run(table, r.entityId);
          this.s.release.run();
          applied++;
        } catch (err) {
          this.s.rollback.run();
          this.s.release.run();
          if (isFrameLevelError(err)) throw err;
          skipped++;
        }
      }
      this.s.guardOff.run();
      return { applied, skipped };
    }).immediate();
  }

  /**
   * End of a snapshot at seq S: re-apply, in rowid order, every local change the snapshot cannot hold
   * (not acked, or acked with a seq above S), then move the cursor to S with its digest. Re-applying a
   * change to a row that already shows it changes nothing, so rows the snapshot did not touch are safe.
   * The caller makes sure every row pending when the snapshot began has its ack first: a change the
   * hub already held at or below S is in the snapshot, and re-applying it would undo later events.
   */
  finishSnapshot(throughSeq: number, throughDigest: string, headSeq: number): { reapplied: number; removed: number } {
    return this.db.transaction(() => {
      this.reloadIfMigrated();
      const state = this.s.state.get() as { cursor: number | null; adopted: number | null } | undefined;
      if (!state) throw new SyncError('not_initialized', 'sync_state has no row: call ensureSyncSchema first');
      const now = nowIso();
      this.s.guardOn.run(now);
      const removed = this.rows.sweepUnseen(state.adopted ?? 0);
      this.s.clearSeen.run();
      let reapplied = 0;
      const rows = this.db
        .prepare(
          `SELECT ${OUTBOX_ROW_COLUMNS} FROM action_log a
           WHERE IFNULL(a.undone, 0) = 0
             AND ((a.synced_at IS NULL AND ${OUTBOX_NOT_QUARANTINED}) OR (a.synced_at IS NOT NULL AND a.server_seq > ? AND a.rowid > ?))
           ORDER BY a.rowid`,
        )
        .all(throughSeq, state.adopted ?? 0) as OutboxRow[];
      for (const row of rows) {
        const d = decodeOutboxRow(row, this.tableSet);
        if (!d.ok) continue;
        this.s.savepointLocal.run();
        try {
          this.rows.apply(d.change);
          this.s.releaseLocal.run();
          reapplied++;
        } catch (err) {
          this.s.rollbackLocal.run();
          this.s.releaseLocal.run();
          if (isFrameLevelError(err)) throw err;
        }
      }
      this.s.setCursor.run(throughSeq, throughDigest, headSeq, now, now);
      this.s.guardOff.run();
      return { reapplied, removed };
    }).immediate();
  }

  private run(events: SyncEvent[], throughSeq: number, headSeq: number, digest: string | null): FrameResult {
    // An app migration between frames: re-read table_info once per frame, not per event.
    this.reloadIfMigrated();
    const state = this.s.state.get() as { cursor: number | null; adopted: number | null } | undefined;
    if (!state) throw new SyncError('not_initialized', 'sync_state has no row: call ensureSyncSchema first');
    const cursor = state.cursor ?? 0;
    const result: FrameResult = { applied: 0, skipped: 0, ownConfirmed: 0, conflicts: [], failed: [], cursor };

    // Order check before touching anything: the hub streams every seq once, in order. A prefix at or
    // below the cursor is a re-delivery and skipped; after it, seqs must run cursor+1, cursor+2, ...
    let first = -1;
    let expected = cursor + 1;
    for (let i = 0; i < events.length; i++) {
      const seq = events[i]!.serverSeq;
      if (first < 0) {
        if (seq <= cursor) continue;
        first = i;
      }
      if (seq !== expected) throw new StreamGapError(`stream out of order: expected seq ${expected}, got ${seq} (cursor ${cursor})`);
      expected++;
    }
    if (first < 0) {
      result.skipped = events.length;
      return result;
    }
    const last = expected - 1;
    if (throughSeq !== last) throw new StreamGapError(`frame throughSeq ${throughSeq} does not match its last event ${last}`);
    result.skipped = first;
    // Before anything is written: the events at seqs the hub acked for our changes must be ours.
    checkOwnAcks(this.db, this.opts.deviceId, state.adopted ?? 0, events, first);

    const now = nowIso();
    this.s.guardOn.run(now);

    const ids: string[] = [];
    for (let i = first; i < events.length; i++) ids.push(events[i]!.entityId);
    const pending = loadUndelivered(this.db, cursor, state.adopted ?? 0, ids, this.tableSet);
    const upserts: Queued[] = [];

    for (let i = first; i < events.length; i++) {
      const ev = events[i]!;
      const table = entityTable(ev.entityType);
      const own = ev.deviceId === this.opts.deviceId;
      let local: LocalChange[] | undefined;
      if (pending.size > 0) {
        const key = entityKey(table, ev.entityId);
        let list: Undelivered[] | undefined = pending.get(key);
        if (own && list) {
          // Delivered: from here on the log orders it.
          const rest = list.filter((u) => u.rowid !== ev.clientActionId);
          if (rest.length !== list.length) {
            if (rest.length) pending.set(key, rest);
            else pending.delete(key);
            list = rest.length ? rest : undefined;
          }
        }
        if (list) {
          local = [];
          for (const u of list) if (u.change) local.push(u.change);
          if (local.length === 0) local = undefined;
        }
      }
      const change = eventChange(ev, table);
      // A remote create with nothing local to rebase joins the run of creates written together.
      if (!local && !own && this.queueUpsert(upserts, ev, change, result, now)) continue;
      this.flushUpserts(upserts, result, now);

      // Our own change coming back: the stream is also its ack (an ack frame can be lost to a drop).
      if (own && this.s.markOwn.run(now, ev.serverSeq, ev.clientActionId, ev.entityId, ev.serverSeq).changes > 0) result.ownConfirmed++;

      if (!local) {
        // Fast path: one statement, atomic on its own; no savepoint needed.
        try {
          this.rows.apply(change);
          result.applied++;
        } catch (err) {
          this.fail(ev, err, result, now);
        }
        continue;
      }
      this.applyRebased(ev, change, local, own, result, now);
    }
    this.flushUpserts(upserts, result, now);

    this.s.setCursor.run(throughSeq, digest, headSeq, now, now);
    this.s.guardOff.run();
    result.cursor = throughSeq;
    return result;
  }

  /**
   * Queue a remote event that is a plain create (RowApplier.upsertRow) behind the creates of the same
   * shape before it; true when it is dealt with (queued, or filed as failed). Every other event first
   * writes what is queued (flushUpserts), so rows are written in seq order.
   */
  private queueUpsert(queue: Queued[], ev: SyncEvent, change: Change, result: FrameResult, now: string): boolean {
    let row: UpsertRow | null;
    try {
      row = this.rows.upsertRow(change);
    } catch (err) {
      this.flushUpserts(queue, result, now);
      this.fail(ev, err, result, now);
      return true;
    }
    if (!row) return false;
    if (queue.length > 0 && !sameShape(queue[0]!.row, row)) this.flushUpserts(queue, result, now);
    queue.push({ ev, change, row });
    return true;
  }

  /**
   * Write the queued creates with multi-row statements in one savepoint. When one of them cannot apply,
   * the savepoint is rolled back and each is applied alone, as any other event is, so that only the
   * failing one is filed (rule 6).
   */
  private flushUpserts(queue: Queued[], result: FrameResult, now: string): void {
    if (queue.length === 0) return;
    this.s.savepoint.run();
    try {
      this.rows.upsertRows(queue.map((q) => q.row));
      this.s.release.run();
      result.applied += queue.length;
    } catch (err) {
      this.s.rollback.run();
      this.s.release.run();
      if (isFrameLevelError(err)) throw err;
      for (const q of queue) {
        try {
          this.rows.apply(q.change);
          result.applied++;
        } catch (e) {
          this.fail(q.ev, e, result, now);
        }
      }
    }
    queue.length = 0;
  }

  /** An event on an entity with undelivered local changes: apply it, then re-apply them on top. */
  private applyRebased(ev: SyncEvent, change: Change, local: LocalChange[], own: boolean, result: FrameResult, now: string): void {
    const before = own ? undefined : this.rows.readRow(change.table, change.entityId);
    this.s.savepoint.run();
    try {
      this.rows.apply(change);
    } catch (err) {
      this.s.rollback.run();
      this.s.release.run();
      this.fail(ev, err, result, now);
      return;
    }
    const afterRemote = own ? undefined : this.rows.readRow(change.table, change.entityId);
    for (const c of local) {
      this.s.savepointLocal.run();
      try {
        this.rows.apply(c);
        this.s.releaseLocal.run();
      } catch (err) {
        this.s.rollbackLocal.run();
        this.s.releaseLocal.run();
        if (isFrameLevelError(err)) throw err;
        // A local change that cannot apply fails the same way when its own event arrives; it is filed then.
      }
    }
    this.s.release.run();
    result.applied++;
    if (own) return;
    const written = local.flatMap((c) => columnsWritten(c, diffKeys));
    if (!isConflict(changedColumns(before, afterRemote), written)) return;
    const conflict: ConflictRecord = {
      entityType: change.table,
      entityId: change.entityId,
      serverSeq: ev.serverSeq,
      remoteDeviceId: ev.deviceId,
      actionType: ev.actionType,
      localData: before ?? null,
      remoteData: ev.payload.newData,
    };
    this.s.conflict.run(
      conflict.entityType,
      conflict.entityId,
      conflict.serverSeq,
      conflict.remoteDeviceId,
      conflict.actionType,
      JSON.stringify(conflict.localData),
      JSON.stringify(conflict.remoteData),
      now,
    );
    result.conflicts.push(conflict);
  }

  /** File a permanently failing event (rule 6), or rethrow a frame-level failure. */
  private fail(ev: SyncEvent, err: unknown, result: FrameResult, now: string): void {
    if (isFrameLevelError(err)) throw err;
    const error = dbErrorText(err);
    this.s.failed.run(ev.serverSeq, ev.clientActionId, ev.entityType, ev.entityId, ev.actionType, error, JSON.stringify(ev), now);
    result.failed.push({ serverSeq: ev.serverSeq, entityType: ev.entityType, entityId: ev.entityId, actionType: ev.actionType, error });
  }
}
