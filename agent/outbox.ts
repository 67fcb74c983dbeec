// The outbox: action_log rows the app wrote, turned into push events; acks and quarantine.
// A row is pending while undone = 0 AND synced_at IS NULL and it is not quarantined.
import type Database from 'better-sqlite3';
import { PushEventSchema, type PushEvent } from '../shared/event.ts';
import { cached } from './app-db.ts';
import type { Change } from './apply.ts';
import { MAX_FRAME_BYTES } from '../shared/limits.ts';
import { entityTable, mapActionType } from '../shared/td-actions.ts';
import { nowIso, toIso } from '../shared/time.ts';

type Db = Database.Database;
export type Row = Record<string, unknown>;

/**
 * One event must fit a push frame with room for the frame's envelope and a few neighbours; a bigger
 * row would make the hub refuse (and close on) every push that carries it, wedging the outbox.
 */
export const MAX_OUTBOX_EVENT_BYTES = MAX_FRAME_BYTES - 64 * 1024;

/** An action_log row as stored. */
export interface OutboxRow {
  rowid: number;
  session_id: string | null;
  action_type: string | null;
  entity_type: string | null;
  entity_id: string | null;
  previous_data: string | null;
  new_data: string | null;
  timestamp: unknown;
}

/** A local change decoded from an action_log row, in sync terms. */
export interface LocalChange extends Change {
  rowid: number;
  sessionId: string | null;
}

export type Decoded = { ok: true; change: LocalChange } | { ok: false; error: string };

/** Parse new_data/previous_data: NULL or '' (td writes '') is null; otherwise it must be a JSON object. */
function parseData(text: unknown): { ok: true; value: Row | null } | { ok: false } {
  if (text === null || text === undefined || text === '') return { ok: true, value: null };
  if (typeof text !== 'string') return { ok: false };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false };
  }
  if (value === null) return { ok: true, value: null };
  if (typeof value !== 'object' || Array.isArray(value)) return { ok: false };
  return { ok: true, value: value as Row };
}

/** The row's timestamp as ISO-8601: ISO/SQLite/Go text, or a Unix time in seconds or milliseconds. */
function timestampOf(value: unknown): string | null {
  // A Unix time stored in a TEXT column comes back as digits.
  if (typeof value === 'string' && /^\d{9,13}(\.\d+)?$/.test(value)) value = Number(value);
  if (typeof value === 'string') return toIso(value);
  if (typeof value === 'number' && Number.isFinite(value)) {
    const ms = value < 1e11 ? value * 1000 : value;
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? null : d.toISOString();
  }
  return null;
}

/**
 * Decode an action_log row into a change, or say why it can never be pushed. A previous_data that
 * is not an object is read as null (an update then writes all of newData): the change still syncs.
 */
export function decodeOutboxRow(row: OutboxRow, tables: ReadonlySet<string>): Decoded {
  if (typeof row.entity_id !== 'string' || row.entity_id === '') return { ok: false, error: 'empty entity_id' };
  const table = entityTable(String(row.entity_type ?? ''));
  if (!tables.has(table)) return { ok: false, error: `entity type ${JSON.stringify(row.entity_type)} is not a synced table` };
  const actionType = mapActionType(String(row.action_type ?? ''));
  const next = parseData(row.new_data);
  if (!next.ok) return { ok: false, error: 'new_data is not a JSON object' };
  if (next.value === null && (actionType === 'create' || actionType === 'update')) {
    return { ok: false, error: `${row.action_type ?? 'update'} without new_data` };
  }
  const prev = parseData(row.previous_data);
  return {
    ok: true,
    change: {
      rowid: row.rowid,
      sessionId: typeof row.session_id === 'string' && row.session_id !== '' ? row.session_id : null,
      actionType,
      table,
      entityId: row.entity_id,
      newData: next.value,
      previousData: prev.ok ? prev.value : null,
      clientTimestamp: timestampOf(row.timestamp) ?? nowIso(),
    },
  };
}

const NOT_QUARANTINED = `NOT EXISTS (SELECT 1 FROM sync_failed_events f WHERE f.direction = 'outbound' AND f.client_action_id = a.rowid)`;
const ROW_COLUMNS = 'a.rowid AS rowid, a.session_id, a.action_type, a.entity_type, a.entity_id, a.previous_data, a.new_data, a.timestamp';

/** Pending rows after a rowid, in rowid order: a range scan of the partial index of unsynced rows. */
export const PENDING_SQL = `SELECT ${ROW_COLUMNS} FROM action_log a
  WHERE a.synced_at IS NULL AND a.rowid > ? AND IFNULL(a.undone, 0) = 0 AND ${NOT_QUARANTINED}
  ORDER BY a.rowid LIMIT ?`;

export interface ReadPendingOptions {
  /** Only rows after this rowid (0 for all): the pusher's watermark. */
  afterRowid: number;
  /** At most this many rows are examined. */
  limit: number;
  /** Synced tables; rows for any other entity type are quarantined. */
  tables: string[];
  /** Session id for rows without one (sync_state.session_id). */
  fallbackSessionId: string;
  /**
   * Stop before the page's payloads pass this many bytes (a page always holds at least one event):
   * several large rows together must still fit in one push frame.
   */
  maxBytes?: number;
}

export interface PendingPage {
  events: PushEvent[];
  /** Rows examined that can never be pushed, with why: quarantineRows files them. */
  unpushable: Unpushable[];
  /**
   * The last rowid examined, quarantined rows included (afterRowid when nothing was found). A page can
   * hold fewer events than rows examined, even none: keep reading from lastRowid until it stops moving.
   */
  lastRowid: number;
}

function approxBytes(row: OutboxRow): number {
  const n = (typeof row.new_data === 'string' ? row.new_data.length : 0) + (typeof row.previous_data === 'string' ? row.previous_data.length : 0);
  // Cheap length first; count UTF-8 bytes only when it could matter.
  if (n * 3 < MAX_OUTBOX_EVENT_BYTES) return n;
  return Buffer.byteLength(String(row.new_data ?? '')) + Buffer.byteLength(String(row.previous_data ?? ''));
}

export interface Unpushable {
  row: OutboxRow;
  error: string;
}

/**
 * Pending rows after `afterRowid`, in rowid order, as push events (clientActionId = rowid). Reads only:
 * rows that can never be pushed (no entity id, not a synced table, new_data not an object, over the
 * frame size, failing the push schema) come back in `unpushable`, for quarantineRows.
 */
export function scanPending(db: Db, opts: ReadPendingOptions): PendingPage {
  const rows = cached(db, PENDING_SQL).all(opts.afterRowid, opts.limit) as OutboxRow[];
  const tables = new Set(opts.tables);
  const events: PushEvent[] = [];
  const bad: Unpushable[] = [];
  const maxBytes = opts.maxBytes ?? Infinity;
  let bytes = 0;
  let lastRowid = opts.afterRowid;
  for (const row of rows) {
    const size = approxBytes(row);
    if (events.length > 0 && bytes + size > maxBytes) break;
    lastRowid = row.rowid;
    const d = decodeOutboxRow(row, tables);
    if (!d.ok) {
      bad.push({ row, error: d.error });
      continue;
    }
    const c = d.change;
    if (size > MAX_OUTBOX_EVENT_BYTES) {
      bad.push({ row, error: `row is larger than a push frame allows (${MAX_OUTBOX_EVENT_BYTES} bytes)` });
      continue;
    }
    const event: PushEvent = {
      clientActionId: c.rowid,
      sessionId: c.sessionId ?? opts.fallbackSessionId,
      actionType: c.actionType,
      entityType: c.table,
      entityId: c.entityId,
      payload: { schemaVersion: 1, newData: c.newData, previousData: c.previousData },
      clientTimestamp: c.clientTimestamp,
    };
    // The hub parses every push with this schema and closes on failure: never send what it would refuse.
    // (Lengths included: a session_id or entity_id over the limits would otherwise cost the whole batch.)
    const checked = PushEventSchema.safeParse(event);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      bad.push({ row, error: `not a valid push event: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}` });
      continue;
    }
    events.push(event);
    bytes += size;
  }
  return { events, unpushable: bad, lastRowid };
}

/**
 * File unpushable rows in sync_failed_events (direction 'outbound'): they are never read as pending
 * again, and `agent status` counts them. Idempotent (a row is filed once). One transaction.
 */
export function quarantineRows(db: Db, rows: ReadonlyArray<Unpushable>): void {
  if (rows.length === 0) return;
  db.transaction(() => {
    for (const b of rows) quarantineRow(db, b.row, b.error);
  }).immediate();
}

/** scanPending, then quarantine what it found unpushable, at once (tools and tests; the agent queues the write). */
export function readPending(db: Db, opts: ReadPendingOptions): PendingPage {
  const page = scanPending(db, opts);
  quarantineRows(db, page.unpushable);
  return page;
}

function quarantineRow(db: Db, row: OutboxRow, error: string): void {
  cached(
    db,
    `INSERT INTO sync_failed_events (direction, client_action_id, entity_type, entity_id, action_type, error, event, failed_at)
     SELECT 'outbound', ?, ?, ?, ?, ?, ?, ?
     WHERE NOT EXISTS (SELECT 1 FROM sync_failed_events WHERE direction = 'outbound' AND client_action_id = ?)`,
  ).run(row.rowid, row.entity_type, row.entity_id, row.action_type, error, JSON.stringify(row), nowIso(), row.rowid);
}

/**
 * Quarantine one outbox row (e.g. the hub rejected it for good): it is not pushed again, not rebased
 * over remote changes, and shows in status. No-op when the row does not exist or is already there.
 */
export function quarantineOutbound(db: Db, clientActionId: number, error: string): void {
  const row = cached(db, `SELECT ${ROW_COLUMNS} FROM action_log a WHERE a.rowid = ?`).get(clientActionId) as OutboxRow | undefined;
  if (row) quarantineRow(db, row, error);
}

/** Acked pushes: set synced_at and server_seq on rows not already marked (the stream may have been first). One transaction. */
export function markAcked(db: Db, acks: ReadonlyArray<{ clientActionId: number; serverSeq: number }>): number {
  if (acks.length === 0) return 0;
  const stmt = cached(db, 'UPDATE action_log SET synced_at = ?, server_seq = ? WHERE rowid = ? AND synced_at IS NULL');
  const now = nowIso();
  return db.transaction(() => {
    let n = 0;
    for (const a of acks) n += stmt.run(now, a.serverSeq, a.clientActionId).changes;
    return n;
  }).immediate();
}

/** Rows waiting to be pushed (quarantined and undone rows excluded). */
/** Whether any row up to `rowid` is still pending (a snapshot waits for their acks, see Agent). */
export function pendingThrough(db: Db, rowid: number): boolean {
  return (
    cached(db, `SELECT 1 FROM action_log a WHERE a.synced_at IS NULL AND a.rowid <= ? AND IFNULL(a.undone, 0) = 0 AND ${NOT_QUARANTINED} LIMIT 1`).get(rowid) !==
    undefined
  );
}

/** The highest action_log rowid (0 for none). */
export function lastOutboxRowid(db: Db): number {
  return (cached(db, 'SELECT IFNULL(MAX(rowid), 0) AS m FROM action_log').get() as { m: number }).m;
}

export function countPending(db: Db): number {
  const r = cached(db, `SELECT COUNT(*) AS n FROM action_log a WHERE a.synced_at IS NULL AND IFNULL(a.undone, 0) = 0 AND ${NOT_QUARANTINED}`).get() as { n: number };
  return r.n;
}

/** The SQL that selects the outbox columns decodeOutboxRow reads, for other agent modules. */
export const OUTBOX_ROW_COLUMNS = ROW_COLUMNS;
export const OUTBOX_NOT_QUARANTINED = NOT_QUARANTINED;
