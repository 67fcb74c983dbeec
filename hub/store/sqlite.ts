// EventStore on an embedded SQLite file: the default, one hub process owns the file.
import Database from 'better-sqlite3';
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { SyncError } from '../../shared/errors.ts';
import type { AppendGroup, AppendOutcome, EventStore, Role, StoredEvent, TokenRecord } from './event-store.ts';
import { EVENTS_SCHEMA } from './sqlite-schema.ts';
import { serializeEvent } from './serialize.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS projects (
  name       TEXT PRIMARY KEY,
  head_seq   INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
${EVENTS_SCHEMA}
CREATE TABLE IF NOT EXISTS tokens (
  id         TEXT PRIMARY KEY,
  project    TEXT NOT NULL REFERENCES projects(name),
  role       TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
  hash       TEXT NOT NULL,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
-- Which token first used a device id in a project: no other token may push under it.
CREATE TABLE IF NOT EXISTS devices (
  project   TEXT NOT NULL,
  device_id TEXT NOT NULL,
  token_id  TEXT NOT NULL,
  bound_at  TEXT NOT NULL,
  PRIMARY KEY (project, device_id)
);
`;

type TokenRow = { id: string; project: string; role: Role; hash: string; created_at: string; revoked_at: string | null };

function toToken(row: TokenRow): TokenRecord {
  return { id: row.id, project: row.project, role: row.role, hash: row.hash, createdAt: row.created_at, revokedAt: row.revoked_at };
}

export class SqliteEventStore implements EventStore {
  private readonly db: Database.Database;
  /** Head seq per project, loaded lazily; this process is the file's only writer. */
  private readonly heads = new Map<string, number>();
  private readonly stmt;
  /** The file's identity at open: a file deleted or replaced under the hub is a store gone. */
  private readonly inode: number | null;
  /** A second connection that never waits for a lock (see ping); opened on first use. */
  private probe: Database.Database | null = null;

  constructor(private readonly path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.inode = path === ':memory:' ? null : statSync(path).ino;
    // WAL + synchronous=FULL: a commit is on disk (fsynced WAL) before we ack it.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    // 64 MiB of page cache: the two indexes of a busy log outgrow the 2 MiB default, and
    // every insert then reads index pages back from the OS.
    this.db.pragma('cache_size = -65536');
    this.db.exec(SCHEMA);
    this.stmt = {
      insert: this.db.prepare(
        `INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (project, device_id, session_id, client_action_id) DO NOTHING`,
      ),
      dupSeq: this.db
        .prepare('SELECT server_seq FROM events WHERE project = ? AND device_id = ? AND session_id = ? AND client_action_id = ?')
        .pluck(),
      setHead: this.db.prepare('UPDATE projects SET head_seq = ? WHERE name = ?'),
      head: this.db.prepare('SELECT head_seq FROM projects WHERE name = ?').pluck(),
      readAfter: this.db.prepare(
        'SELECT server_seq AS seq, body AS json FROM events WHERE project = ? AND server_seq > ? ORDER BY server_seq LIMIT ?',
      ),
    };
  }

  private head(project: string): number {
    let head = this.heads.get(project);
    if (head === undefined) {
      const stored = this.stmt.head.get(project) as number | undefined;
      if (stored === undefined) throw new SyncError('unknown_project', `project ${project} does not exist`);
      head = stored;
      this.heads.set(project, head);
    }
    return head;
  }

  async append(groups: AppendGroup[], serverTimestamp: string): Promise<AppendOutcome[][]> {
    const newHeads = new Map<string, number>();
    const run = this.db.transaction(() => {
      const out = groups.map(({ project, deviceId, events }) => {
        let head = newHeads.get(project) ?? this.head(project);
        const outcomes = events.map((e): AppendOutcome => {
          const seq = head + 1;
          const json = serializeEvent(seq, deviceId, serverTimestamp, e);
          const info = this.stmt.insert.run(project, seq, deviceId, e.sessionId, e.clientActionId, json);
          if (info.changes === 1) {
            head = seq;
            return { stored: true, seq, json };
          }
          const original = this.stmt.dupSeq.get(project, deviceId, e.sessionId, e.clientActionId) as number;
          return { stored: false, seq: original };
        });
        newHeads.set(project, head);
        return outcomes;
      });
      for (const [project, head] of newHeads) this.stmt.setHead.run(head, project);
      return out;
    });
    const result = run.immediate();
    // Only after the commit succeeded do the in-memory heads move.
    for (const [project, head] of newHeads) this.heads.set(project, head);
    return result;
  }

  async readAfter(project: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    return this.stmt.readAfter.all(project, afterSeq, limit) as StoredEvent[];
  }

  async headSeq(project: string): Promise<number> {
    return this.head(project);
  }

  async createProject(name: string): Promise<void> {
    const info = this.db
      .prepare('INSERT INTO projects (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING')
      .run(name, new Date().toISOString());
    if (info.changes === 0) throw new SyncError('project_exists', `project ${name} already exists`);
  }

  async projectExists(name: string): Promise<boolean> {
    return this.stmt.head.get(name) !== undefined;
  }

  async listProjects() {
    return this.db
      .prepare('SELECT name, head_seq AS headSeq, created_at AS createdAt FROM projects ORDER BY name')
      .all() as { name: string; headSeq: number; createdAt: string }[];
  }

  async insertToken(t: TokenRecord): Promise<void> {
    this.db
      .prepare('INSERT INTO tokens (id, project, role, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(t.id, t.project, t.role, t.hash, t.createdAt, t.revokedAt);
  }

  async findToken(id: string): Promise<TokenRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM tokens WHERE id = ?').get(id) as TokenRow | undefined;
    return row && toToken(row);
  }

  async listTokens(project: string): Promise<TokenRecord[]> {
    const rows = this.db.prepare('SELECT * FROM tokens WHERE project = ? ORDER BY created_at, id').all(project) as TokenRow[];
    return rows.map(toToken);
  }

  async revokeToken(id: string, at: string): Promise<boolean> {
    const info = this.db.prepare('UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?').run(at, id);
    return info.changes === 1;
  }

  async revokedTokens(ids: string[]): Promise<string[]> {
    const out: string[] = [];
    // Chunks well under SQLite's limit on bound parameters.
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const live = new Set(
        this.db
          .prepare(`SELECT id FROM tokens WHERE revoked_at IS NULL AND id IN (${chunk.map(() => '?').join(',')})`)
          .pluck()
          .all(...chunk) as string[],
      );
      out.push(...chunk.filter((id) => !live.has(id)));
    }
    return out;
  }

  async bindDevice(project: string, deviceId: string, tokenId: string, at: string): Promise<boolean> {
    // A device whose token was revoked may come back with a new one (token rotation).
    this.db
      .prepare(
        `INSERT INTO devices (project, device_id, token_id, bound_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (project, device_id) DO UPDATE SET token_id = excluded.token_id, bound_at = excluded.bound_at
         WHERE NOT EXISTS (SELECT 1 FROM tokens t WHERE t.id = devices.token_id AND t.revoked_at IS NULL)`,
      )
      .run(project, deviceId, tokenId, at);
    const owner = this.db.prepare('SELECT token_id FROM devices WHERE project = ? AND device_id = ?').pluck().get(project, deviceId);
    return owner === tokenId;
  }

  async ping(): Promise<void> {
    if (!this.db.open) throw new SyncError('store_unavailable', 'the store is closed');
    if (this.inode === null) return;
    let ino: number;
    try {
      ino = statSync(this.path).ino;
    } catch {
      throw new SyncError('store_unavailable', `the database file ${this.path} is gone`);
    }
    if (ino !== this.inode) throw new SyncError('store_unavailable', `the database file ${this.path} was replaced`);
    // Take and release the write lock without waiting: our own commits run on this thread, so a
    // lock held now is another process's, and our next commit would wait busy_timeout and fail.
    // A separate connection, because the main one waits up to 5 s and would block the event loop.
    this.probe ??= new Database(this.path, { timeout: 0 });
    try {
      this.probe.exec('BEGIN IMMEDIATE; ROLLBACK');
    } catch (err) {
      if (this.probe.inTransaction) this.probe.exec('ROLLBACK');
      throw new SyncError('store_unavailable', `the database cannot take a write now: ${(err as Error).message}`);
    }
  }

  async close(): Promise<void> {
    if (this.probe?.open) this.probe.close();
    if (this.db.open) this.db.close();
  }
}
