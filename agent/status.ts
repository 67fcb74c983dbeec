// What `agent status` and `agent conflicts` show. Reads only the DB (never writes), so it works on a
// read-only connection while the agent runs in another process.
import type Database from 'better-sqlite3';
import { getSyncState } from './app-db.ts';
import { readLiveState } from './live-status.ts';
import { countPending, type Row } from './outbox.ts';

type Db = Database.Database;

/** A running agent refreshes sync_state.updated_at this often. */
export const HEARTBEAT_MS = 10_000;
/** Older than this, the recorded state belongs to an agent that is no longer running. */
const STALE_AFTER_MS = 3 * HEARTBEAT_MS;

export interface AgentDbStatus {
  deviceId: string;
  project: string | null;
  hubUrl: string | null;
  /** An agent is running on this DB: its last heartbeat is recent and it did not stop. */
  running: boolean;
  /** Connected to the hub right now: running, and last recorded as connected. */
  connected: boolean;
  /** The last recorded state: connected, disconnected or stopped. */
  status: string;
  /** Last server seq applied. */
  cursor: number;
  /** The hub's head seq when last heard from, or null. */
  hubHead: number | null;
  /** hubHead - cursor (0 when the head is unknown). */
  lag: number;
  /** Outbox rows waiting to be pushed. */
  pending: number;
  conflicts: number;
  /** Quarantined outbox rows and inbound events that could not apply. */
  failed: number;
  failedInbound: number;
  failedOutbound: number;
  lastSyncAt: string | null;
  /**
   * The running agent has been waiting this long for a write lock another connection (the app)
   * holds; null when it is not waiting (or only briefly) or no agent runs.
   */
  waitingForLock: { since: string; sinceMs: number } | null;
  /**
   * Times this device found that the hub's log was not the one it had synced (a hub restored from an
   * older backup) or was compacted past its cursor, and started over from a snapshot, re-pushing its
   * own changes the hub no longer held.
   */
  resyncs: number;
  /** The last of those, or null. */
  lastResync: { at: string; reason: string } | null;
}

/**
 * `now` is a parameter so that staleness can be checked without waiting for it. The agent's live file
 * (live-status.ts) says whether it runs and what it waits for; sync_state (written when the database
 * lets it) is the fallback for an agent that predates that file.
 */
export function readStatus(db: Db, now = Date.now()): AgentDbStatus {
  const s = getSyncState(db);
  const live = readLiveState(db.name);
  const heartbeat = live ? live.heartbeatAt : s.updatedAt;
  const status = live ? live.status : s.status;
  const fresh = heartbeat !== null && now - Date.parse(heartbeat) <= STALE_AFTER_MS;
  const running = fresh && status !== 'stopped';
  const lockSince = running && live?.lockWaitSince ? live.lockWaitSince : null;
  const counts = db
    .prepare(
      `SELECT (SELECT COUNT(*) FROM sync_conflicts) AS conflicts,
              (SELECT COUNT(*) FROM sync_failed_events WHERE direction = 'inbound') AS inbound,
              (SELECT COUNT(*) FROM sync_failed_events WHERE direction = 'outbound') AS outbound`,
    )
    .get() as { conflicts: number; inbound: number; outbound: number };
  const hubHead = s.hubHeadSeq;
  return {
    deviceId: s.deviceId,
    project: s.project,
    hubUrl: s.hubUrl,
    running,
    connected: running && status === 'connected',
    status,
    cursor: s.cursor,
    hubHead,
    lag: hubHead === null ? 0 : Math.max(0, hubHead - s.cursor),
    pending: countPending(db),
    conflicts: counts.conflicts,
    failed: counts.inbound + counts.outbound,
    failedInbound: counts.inbound,
    failedOutbound: counts.outbound,
    lastSyncAt: s.lastSyncAt,
    waitingForLock: lockSince === null ? null : { since: lockSince, sinceMs: Math.max(0, now - Date.parse(lockSince)) },
    resyncs: s.resyncCount,
    lastResync: s.lastResyncAt === null ? null : { at: s.lastResyncAt, reason: s.lastResyncReason ?? 'unknown' },
  };
}

export interface ConflictView {
  id: number;
  entityType: string;
  entityId: string;
  serverSeq: number | null;
  remoteDeviceId: string | null;
  actionType: string | null;
  localData: Row | null;
  remoteData: Row | null;
  detectedAt: string | null;
}

function parseJson(text: unknown): Row | null {
  if (typeof text !== 'string' || text === '') return null;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Row) : null;
  } catch {
    return null;
  }
}

/** Recorded conflicts, newest first (at most `limit`). */
export function listConflicts(db: Db, limit = 1000): ConflictView[] {
  const rows = db
    .prepare(
      `SELECT id, entity_type, entity_id, server_seq, remote_device_id, action_type, local_data, remote_data, detected_at
       FROM sync_conflicts ORDER BY id DESC LIMIT ?`,
    )
    .all(limit) as Array<Record<string, unknown>>;
  return rows.map((r) => ({
    id: Number(r.id),
    entityType: String(r.entity_type),
    entityId: String(r.entity_id),
    serverSeq: r.server_seq === null ? null : Number(r.server_seq),
    remoteDeviceId: (r.remote_device_id as string | null) ?? null,
    actionType: (r.action_type as string | null) ?? null,
    localData: parseJson(r.local_data),
    remoteData: parseJson(r.remote_data),
    detectedAt: (r.detected_at as string | null) ?? null,
  }));
}
