// Everything that writes to the hub's SQLite file: the commit of pushes (seqs, digests, entity
// state), projects, tokens, device bindings and compaction steps. Synchronous (better-sqlite3), on
// the hub's thread. A writer thread owning this connection was built and measured against it: on
// 2 cores it lost on ingest and on fan-out at 1 and 10 receivers (README, Performance).
import Database from 'better-sqlite3';
import { chainDigest } from '../../shared/digest.ts';
import { SyncError } from '../../shared/errors.ts';
import type { AppendGroup, AppendOutcome, LogInfo, TokenRecord } from './event-store.ts';
import { EntityStateWriter } from './sqlite-state.ts';
import { serializeEvent } from './serialize.ts';

/** Events deleted per transaction by a compaction step: the writer never spends long on one. */
export const COMPACT_CHUNK = 20_000;

/** Open the hub's file with its settings. */
export function openHubDb(path: string): Database.Database {
  const db = new Database(path);
  // WAL + synchronous=FULL: a commit is on disk (fsynced WAL) before we ack it.
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  // 64 MiB of page cache: the two indexes of a busy log outgrow the 2 MiB default, and
  // every insert then reads index pages back from the OS.
  db.pragma('cache_size = -65536');
  return db;
}

export class SqliteWriter {
  /** Head seq and digest per project, loaded lazily; this connection is the file's only writer of events. */
  private readonly heads = new Map<string, { seq: number; digest: string }>();
  private readonly stmt;
  private readonly state: EntityStateWriter;
  /** A second connection that never waits for a lock (see probe); opened on first use. */
  private prober: Database.Database | null = null;

  constructor(private readonly db: Database.Database) {
    this.state = new EntityStateWriter(db);
    this.stmt = {
      insert: db.prepare(
        `INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body, digest)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (project, device_id, session_id, client_action_id) DO NOTHING`,
      ),
      compactedSeq: db
        .prepare('SELECT server_seq FROM compacted_keys WHERE project = ? AND device_id = ? AND session_id = ? AND client_action_id = ?')
        .pluck(),
      dupSeq: db.prepare('SELECT server_seq FROM events WHERE project = ? AND device_id = ? AND session_id = ? AND client_action_id = ?').pluck(),
      baseSeq: db.prepare('SELECT base_seq FROM projects WHERE name = ?').pluck(),
      setHead: db.prepare('UPDATE projects SET head_seq = ?, head_digest = ? WHERE name = ?'),
      headRow: db.prepare('SELECT head_seq AS seq, head_digest AS digest FROM projects WHERE name = ?'),
      info: db.prepare('SELECT head_seq AS headSeq, head_digest AS headDigest, base_seq AS baseSeq, base_digest AS baseDigest FROM projects WHERE name = ?'),
      digestAt: db.prepare('SELECT digest FROM events WHERE project = ? AND server_seq = ?').pluck(),
      compactKeys: db.prepare(
        `INSERT OR IGNORE INTO compacted_keys (project, device_id, session_id, client_action_id, server_seq)
         SELECT project, device_id, session_id, client_action_id, server_seq FROM events
         WHERE project = ? AND server_seq > ? AND server_seq <= ?`,
      ),
      compactDrop: db.prepare('DELETE FROM events WHERE project = ? AND server_seq > ? AND server_seq <= ?'),
      setBase: db.prepare('UPDATE projects SET base_seq = ?, base_digest = ? WHERE name = ?'),
      createProject: db.prepare('INSERT INTO projects (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING'),
      insertToken: db.prepare('INSERT INTO tokens (id, project, role, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)'),
      revokeToken: db.prepare('UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?'),
      // A device whose token was revoked may come back with a new one (token rotation).
      bindDevice: db.prepare(
        `INSERT INTO devices (project, device_id, token_id, bound_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (project, device_id) DO UPDATE SET token_id = excluded.token_id, bound_at = excluded.bound_at
         WHERE NOT EXISTS (SELECT 1 FROM tokens t WHERE t.id = devices.token_id AND t.revoked_at IS NULL)`,
      ),
      deviceOwner: db.prepare('SELECT token_id FROM devices WHERE project = ? AND device_id = ?').pluck(),
    };
  }

  /** The project's last committed seq and its digest (unknown_project when there is none). */
  head(project: string): { seq: number; digest: string } {
    let head = this.heads.get(project);
    if (head === undefined) {
      head = this.stmt.headRow.get(project) as { seq: number; digest: string } | undefined;
      if (head === undefined) throw new SyncError('unknown_project', `project ${project} does not exist`);
      this.heads.set(project, head);
    }
    return head;
  }

  /** EventStore.append: every group in one transaction (see there). */
  append(groups: AppendGroup[], serverTimestamp: string): AppendOutcome[][] {
    const newHeads = new Map<string, { seq: number; digest: string }>();
    const run = this.db.transaction(() => {
      this.state.begin();
      const out = groups.map(({ project, deviceId, events, payloadJson }) => {
        let head = newHeads.get(project) ?? this.head(project);
        // Keys of compacted events exist only once the project was compacted (base_seq > 0); read in
        // this transaction, so a compaction by another process is seen too.
        const compactedOnce = (this.stmt.baseSeq.get(project) as number) > 0;
        const outcomes = events.map((e, i): AppendOutcome => {
          // A compacted event's key is no longer in `events`; it is still a duplicate.
          const compacted = compactedOnce ? (this.stmt.compactedSeq.get(project, deviceId, e.sessionId, e.clientActionId) as number | undefined) : undefined;
          if (compacted !== undefined) return { stored: false, seq: compacted };
          const seq = head.seq + 1;
          const json = serializeEvent(seq, deviceId, serverTimestamp, e, payloadJson?.[i]);
          const digest = chainDigest(head.digest, json);
          const info = this.stmt.insert.run(project, seq, deviceId, e.sessionId, e.clientActionId, json, digest);
          if (info.changes === 1) {
            head = { seq, digest };
            this.state.apply(project, {
              actionType: e.actionType as never,
              entityType: e.entityType,
              entityId: e.entityId,
              newData: e.payload.newData,
              previousData: e.payload.previousData,
              clientTimestamp: e.clientTimestamp,
            });
            return { stored: true, seq, json, digest };
          }
          const original = this.stmt.dupSeq.get(project, deviceId, e.sessionId, e.clientActionId) as number;
          return { stored: false, seq: original };
        });
        newHeads.set(project, head);
        return outcomes;
      });
      this.state.flush();
      for (const [project, head] of newHeads) this.stmt.setHead.run(head.seq, head.digest, project);
      return out;
    });
    const result = run.immediate();
    // Only after the commit succeeded do the cached heads move.
    for (const [project, head] of newHeads) this.heads.set(project, head);
    return result;
  }

  /**
   * One step of EventStore.compact, its own transaction: drops at most COMPACT_CHUNK of the events
   * older than the newest `keepEvents`. `dropped` 0: nothing was left to drop.
   */
  compactStep(project: string, keepEvents: number): { dropped: number; baseSeq: number } {
    const step = this.db.transaction(() => {
      const info = this.stmt.info.get(project) as LogInfo | undefined;
      if (!info) throw new SyncError('unknown_project', `project ${project} does not exist`);
      const target = info.headSeq - keepEvents;
      if (target <= info.baseSeq) return { dropped: 0, baseSeq: info.baseSeq };
      const to = Math.min(target, info.baseSeq + COMPACT_CHUNK);
      const digest = this.stmt.digestAt.get(project, to) as string;
      this.stmt.compactKeys.run(project, info.baseSeq, to);
      const dropped = this.stmt.compactDrop.run(project, info.baseSeq, to).changes;
      this.stmt.setBase.run(to, digest, project);
      return { dropped, baseSeq: to };
    });
    return step.immediate();
  }

  createProject(name: string, at: string): void {
    if (this.stmt.createProject.run(name, at).changes === 0) throw new SyncError('project_exists', `project ${name} already exists`);
  }

  insertToken(t: TokenRecord): void {
    this.stmt.insertToken.run(t.id, t.project, t.role, t.hash, t.createdAt, t.revokedAt);
  }

  revokeToken(id: string, at: string): boolean {
    return this.stmt.revokeToken.run(at, id).changes === 1;
  }

  bindDevice(project: string, deviceId: string, tokenId: string, at: string): boolean {
    this.stmt.bindDevice.run(project, deviceId, tokenId, at);
    return this.stmt.deviceOwner.get(project, deviceId) === tokenId;
  }

  /**
   * Take and release the write lock without waiting, between this writer's transactions: a lock held
   * then is another process's, and the next commit would wait busy_timeout and fail. A separate
   * connection (timeout 0), because this one waits up to 5 s for a lock.
   */
  probe(): void {
    this.prober ??= new Database(this.db.name, { timeout: 0 });
    try {
      this.prober.exec('BEGIN IMMEDIATE; ROLLBACK');
    } catch (err) {
      if (this.prober.inTransaction) this.prober.exec('ROLLBACK');
      throw new SyncError('store_unavailable', `the database cannot take a write now: ${(err as Error).message}`);
    }
  }

  close(): void {
    if (this.prober?.open) this.prober.close();
    if (this.db.open) this.db.close();
  }
}

