// Rebase (agent rule 2): the device's own local changes that the stream has not delivered back yet,
// found per frame so they can be re-applied on top of each remote event that touches their entity.
//
// A local change is "undelivered" while undone = 0 and either not pushed, pushed but unacked, or acked
// with a server_seq above the cursor (the hub committed it but this frame has not reached it). When
// the change's own event arrives in the stream it leaves the set: from then on the log orders it.
//
// Why re-applying on top of the current row gives "log 1..T, then local changes": every apply rule is
// a per-field last-writer write (create/update/soft_delete/restore) or an existence reset (delete), and
// re-applying the local changes after the remote one rewrites exactly the fields they wrote. The one
// case it cannot reproduce is a local create that omits columns of a row the log has deleted, hit by a
// remote update of the omitted columns; creates written by td and by `agent init` triggers carry the
// full row, for which the result is exact.
import type Database from 'better-sqlite3';
import { entityTable } from '../shared/td-actions.ts';
import { cached } from './app-db.ts';
import { OUTBOX_NOT_QUARANTINED, OUTBOX_ROW_COLUMNS, decodeOutboxRow, type LocalChange, type OutboxRow, type Row } from './outbox.ts';

type Db = Database.Database;

/** Map key of one entity: its table and id. */
export function entityKey(table: string, entityId: string): string {
  return `${table}\u0000${entityId}`;
}

/**
 * Not yet acked, for the frame's entities (a JSON array of ids) — one seek per id in the partial index
 * of unsynced rows. INDEXED BY because without statistics the planner may pick the other partial index
 * and scan every pending row (100k of them right after a backfill).
 */
export const UNACKED_SQL = `SELECT ${OUTBOX_ROW_COLUMNS} FROM action_log a INDEXED BY sync_action_log_unsynced_entity
  WHERE a.synced_at IS NULL AND a.entity_id IN (SELECT value FROM json_each(?))
    AND IFNULL(a.undone, 0) = 0 AND (a.server_seq IS NULL OR a.server_seq > ?) AND ${OUTBOX_NOT_QUARANTINED}`;

/**
 * Acked but not delivered yet: server_seq above the cursor, for the frame's entities (a JSON array).
 * Usually a handful; after a large offline push it can be 100k rows, so the lookup is by entity
 * (entity_id = ? AND server_seq > ?), never a scan of that range. Rows marked synced before the agent adopted the file carry another
 * server's seqs and are skipped.
 */
export const ACKED_UNDELIVERED_SQL = `SELECT ${OUTBOX_ROW_COLUMNS} FROM action_log a INDEXED BY sync_action_log_entity_seq
  WHERE a.server_seq > ? AND a.entity_id IN (SELECT value FROM json_each(?))
    AND a.synced_at IS NOT NULL AND a.rowid > ? AND IFNULL(a.undone, 0) = 0`;

/**
 * Whether any outbox row could be undelivered at all (pending, or acked above the cursor): two seeks
 * in partial indexes. A device that has pushed everything it changed (a catch-up, a reader) then skips
 * the per-entity lookups of every frame.
 */
export const ANY_UNDELIVERED_SQL = `SELECT EXISTS (SELECT 1 FROM action_log INDEXED BY sync_action_log_unsynced WHERE synced_at IS NULL)
  OR EXISTS (SELECT 1 FROM action_log INDEXED BY sync_action_log_seq WHERE server_seq IS NOT NULL AND server_seq > ?)`;

/**
 * One undelivered outbox row. Decoding (JSON.parse of its data) waits until a remote event actually
 * needs it re-applied: most rows found for a frame are its own events coming back, which need nothing.
 */
export class Undelivered {
  private decoded: LocalChange | null | undefined;
  constructor(
    readonly rowid: number,
    private readonly row: OutboxRow,
    private readonly tables: ReadonlySet<string>,
  ) {}

  /** The change, or null when the row cannot be decoded (it is quarantined by the outbox, never pushed). */
  get change(): LocalChange | null {
    if (this.decoded === undefined) {
      const d = decodeOutboxRow(this.row, this.tables);
      this.decoded = d.ok ? d.change : null;
    }
    return this.decoded;
  }
}

/**
 * The undelivered local changes of the given entities, grouped by entityKey, each list in rowid order.
 * Rows for other tables, without an entity id, or quarantined are left out: they never reach the log,
 * so re-applying them would keep this device apart from every other one.
 */
export function loadUndelivered(
  db: Db,
  cursor: number,
  adoptedRowid: number,
  entityIds: string[],
  tables: ReadonlySet<string>,
): Map<string, Undelivered[]> {
  const out = new Map<string, Undelivered[]>();
  if (entityIds.length === 0 || !cached(db, ANY_UNDELIVERED_SQL).pluck().get(cursor)) return out;
  const ids = JSON.stringify(entityIds);
  const unacked = cached(db, UNACKED_SQL).all(ids, cursor) as OutboxRow[];
  const acked = cached(db, ACKED_UNDELIVERED_SQL).all(cursor, ids, adoptedRowid) as OutboxRow[];
  if (unacked.length === 0 && acked.length === 0) return out;

  const rows = acked.length === 0 ? unacked : [...unacked, ...acked];
  rows.sort((a, b) => a.rowid - b.rowid);
  for (const row of rows) {
    const table = entityTable(String(row.entity_type ?? ''));
    if (!tables.has(table) || typeof row.entity_id !== 'string' || row.entity_id === '') continue;
    const key = entityKey(table, row.entity_id);
    const item = new Undelivered(row.rowid, row, tables);
    const list = out.get(key);
    if (list) list.push(item);
    else out.set(key, [item]);
  }
  return out;
}

/** Columns a local change writes; '*' when it decides whether the row exists (create, delete). */
export function columnsWritten(c: LocalChange, diff: (prev: Row, next: Row) => string[]): string[] {
  switch (c.actionType) {
    case 'create':
    case 'delete':
      return ['*'];
    case 'soft_delete':
      return ['deleted_at'];
    case 'restore':
      return ['deleted_at', 'updated_at'];
    case 'update':
      if (!c.newData) return [];
      if (c.previousData && Object.keys(c.previousData).length > 0) return diff(c.previousData, c.newData);
      return Object.keys(c.newData).filter((k) => k !== 'id');
  }
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return false;
}

/** Columns whose value differs between two versions of a row; '*' when one of them does not exist. */
export function changedColumns(before: Row | undefined, after: Row | undefined): string[] {
  if (!before && !after) return [];
  if (!before || !after) return ['*'];
  const out: string[] = [];
  for (const k of Object.keys(after)) if (!sameValue(before[k], after[k])) out.push(k);
  return out;
}

/**
 * Rule 5: a remote event conflicts with undelivered local changes when it changed something they
 * decide: the row's existence, or a column they wrote. Edits to different columns of one row are
 * merged field by field and are not conflicts.
 */
export function isConflict(remoteChanged: string[], localWritten: Iterable<string>): boolean {
  if (remoteChanged.length === 0) return false;
  const local = new Set(localWritten);
  if (local.size === 0) return false;
  if (local.has('*') || remoteChanged.includes('*')) return true;
  return remoteChanged.some((c) => local.has(c));
}
