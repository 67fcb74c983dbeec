// Noticing that the hub's log is not the log this device synced with (a hub restored from an older
// backup, a reset store), and preparing the device to start over from the hub's log without losing
// anything of its own: its changes the hub no longer holds become pending again and are re-pushed
// (the hub answers the ones it still has as duplicates, with their seq).
import type Database from 'better-sqlite3';
import { SyncError } from '../shared/errors.ts';
import type { SyncEvent } from '../shared/event.ts';
import { nowIso } from '../shared/time.ts';
import { cached, STATE_ROW } from './app-db.ts';

type Db = Database.Database;

/** The hub's log contradicts what this device knows of it: re-bootstrap (see resetForResync). */
export class LogDivergedError extends SyncError {
  constructor(message: string) {
    super('log_diverged', message);
  }
}

/** Why a device starts over; recorded in sync_state.last_resync_reason and shown by `agent status`. */
export const ResyncReason = {
  /** hello.afterDigest did not match the hub's log at the cursor. */
  CursorDiverged: 'cursor_diverged',
  /** The hub's head is below the cursor. */
  CursorAhead: 'cursor_ahead',
  /** The hub's head is below a seq the hub acked to this device. */
  AckedPastHead: 'acked_past_head',
  /** The stream shows another event at a seq the hub acked for one of ours. */
  AckedEventMissing: 'acked_event_missing',
  /** The log after the cursor was compacted away (not a divergence: nothing is reset but unconfirmed acks). */
  CursorTooOld: 'cursor_too_old',
} as const;
export type ResyncReason = (typeof ResyncReason)[keyof typeof ResyncReason];

/**
 * Own outbox rows acked with a seq in [from, to] must be this device's events at those seqs in the
 * stream; a seq holding anyone else's event means the hub lost what it acked. Throws LogDivergedError.
 */
export function checkOwnAcks(db: Db, deviceId: string, adoptedRowid: number, events: SyncEvent[], firstIndex: number): void {
  const from = events[firstIndex]!.serverSeq;
  const to = events[events.length - 1]!.serverSeq;
  const acked = cached(
    db,
    `SELECT rowid, server_seq AS seq FROM action_log INDEXED BY sync_action_log_seq
     WHERE server_seq BETWEEN ? AND ? AND server_seq IS NOT NULL AND synced_at IS NOT NULL AND rowid > ?`,
  ).all(from, to, adoptedRowid) as { rowid: number; seq: number }[];
  for (const a of acked) {
    const ev = events[firstIndex + (a.seq - from)];
    if (!ev || ev.serverSeq !== a.seq) continue;
    if (ev.deviceId !== deviceId || ev.clientActionId !== a.rowid) {
      throw new LogDivergedError(`the hub acked our change ${a.rowid} as seq ${a.seq}, but its log has another event there`);
    }
  }
}

/** The highest seq the hub acked for this device's changes (0 for none). */
export function maxOwnAckedSeq(db: Db, adoptedRowid: number): number {
  const r = cached(
    db,
    `SELECT MAX(server_seq) AS m FROM action_log INDEXED BY sync_action_log_seq
     WHERE server_seq IS NOT NULL AND synced_at IS NOT NULL AND rowid > ?`,
  ).get(adoptedRowid) as { m: number | null };
  return r.m ?? 0;
}

/**
 * Start over from the hub's log. For a divergence every own change the agent recorded as synced
 * becomes pending again and the cursor goes back to 0: the hub's log before the cursor cannot be
 * trusted either. For cursor_too_old (same log, compacted) only acks past the cursor are unconfirmed:
 * the stream never delivered them, and a snapshot cannot say whether the hub holds them.
 * Local rows stay as they are: the snapshot (or the replay) is applied over them. Returns the rows reset.
 */
export function resetForResync(db: Db, reason: ResyncReason, cursor: number): number {
  const state = db.prepare(`SELECT adopted_rowid AS adopted FROM sync_state WHERE ${STATE_ROW}`).get() as { adopted: number | null };
  const adopted = state.adopted ?? 0;
  const full = reason !== ResyncReason.CursorTooOld;
  const reset = db
    .prepare(
      `UPDATE action_log SET synced_at = NULL, server_seq = NULL
       WHERE rowid > ? AND synced_at IS NOT NULL AND IFNULL(undone, 0) = 0 ${full ? '' : 'AND server_seq > ?'}`,
    )
    .run(...(full ? [adopted] : [adopted, cursor])).changes;
  const now = nowIso();
  db.prepare(
    `UPDATE sync_state SET ${full ? 'last_pulled_server_seq = 0, ' : ''}cursor_digest = NULL,
       resync_count = IFNULL(resync_count, 0) + 1, last_resync_at = ?, last_resync_reason = ?, updated_at = ? WHERE ${STATE_ROW}`,
  ).run(now, reason, now);
  return reset;
}
