// EventStore on an embedded SQLite file: the default, one hub process owns the file. Reads here;
// every write through the store's SqliteWriter (sqlite-writer.ts), on the same connection.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { chainDigest, EMPTY_DIGEST } from '../../shared/digest.ts';
import { SyncError } from '../../shared/errors.ts';
import type { AppendGroup, AppendOutcome, EventStore, LogInfo, Role, SnapshotReader, StoredEvent, TokenRecord } from './event-store.ts';
import { EVENTS_SCHEMA } from './sqlite-schema.ts';
import { openSqliteSnapshot } from './sqlite-snapshot.ts';
import { EntityStateWriter, STATE_SCHEMA } from './sqlite-state.ts';
import { openHubDb, SqliteWriter } from './sqlite-writer.ts';

/**
 * Schema versions (PRAGMA user_version). 1: chained digests (events.digest, projects.head_digest),
 * the entity state table, compaction (projects.base_seq/base_digest, compacted_keys). A file of
 * version 0 is upgraded at open: digests and state are rebuilt from its log.
 */
const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS projects (
  name        TEXT PRIMARY KEY,
  head_seq    INTEGER NOT NULL DEFAULT 0,
  created_at  TEXT NOT NULL,
  head_digest TEXT NOT NULL DEFAULT '',
  base_seq    INTEGER NOT NULL DEFAULT 0,   -- events up to here were compacted away
  base_digest TEXT NOT NULL DEFAULT ''
);
${EVENTS_SCHEMA}
${STATE_SCHEMA}
-- Dedup keys of compacted events: a re-push of one is still answered duplicate with its seq.
CREATE TABLE IF NOT EXISTS compacted_keys (
  project          TEXT NOT NULL,
  device_id        TEXT NOT NULL,
  session_id       TEXT NOT NULL,
  client_action_id INTEGER NOT NULL,
  server_seq       INTEGER NOT NULL,
  PRIMARY KEY (project, device_id, session_id, client_action_id)
) WITHOUT ROWID;
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
  private readonly writer: SqliteWriter;
  private readonly stmt;
  /** The file's identity at open: a file deleted or replaced under the hub is a store gone. */
  private readonly inode: number | null;

  constructor(private readonly path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = openHubDb(path);
    this.inode = path === ':memory:' ? null : statSync(path).ino;
    migrate(this.db);
    this.writer = new SqliteWriter(this.db);
    this.stmt = {
      head: this.db.prepare('SELECT head_seq FROM projects WHERE name = ?').pluck(),
      info: this.db.prepare(
        'SELECT head_seq AS headSeq, head_digest AS headDigest, base_seq AS baseSeq, base_digest AS baseDigest FROM projects WHERE name = ?',
      ),
      digestAt: this.db.prepare('SELECT digest FROM events WHERE project = ? AND server_seq = ?').pluck(),
      findToken: this.db.prepare('SELECT * FROM tokens WHERE id = ?'),
      readAfter: this.db.prepare(
        'SELECT server_seq AS seq, body AS json, digest FROM events WHERE project = ? AND server_seq > ? ORDER BY server_seq LIMIT ?',
      ),
    };
  }

  async append(groups: AppendGroup[], serverTimestamp: string): Promise<AppendOutcome[][]> {
    return this.writer.append(groups, serverTimestamp);
  }

  async readAfter(project: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    return this.stmt.readAfter.all(project, afterSeq, limit) as StoredEvent[];
  }

  async headSeq(project: string): Promise<number> {
    return this.writer.head(project).seq;
  }

  async logInfo(project: string): Promise<LogInfo> {
    const info = this.stmt.info.get(project) as LogInfo | undefined;
    if (!info) throw new SyncError('unknown_project', `project ${project} does not exist`);
    return info;
  }

  async digestAt(project: string, seq: number): Promise<string | null> {
    const info = await this.logInfo(project);
    if (seq > info.headSeq || seq < info.baseSeq) return null;
    if (seq === info.baseSeq) return info.baseSeq === 0 ? EMPTY_DIGEST : info.baseDigest;
    return (this.stmt.digestAt.get(project, seq) as string | null | undefined) ?? null;
  }

  async openSnapshot(project: string): Promise<SnapshotReader> {
    return openSqliteSnapshot(this.db.name, project);
  }

  async compact(project: string, keepEvents: number): Promise<{ dropped: number; baseSeq: number }> {
    if (!Number.isSafeInteger(keepEvents) || keepEvents < 0) throw new SyncError('invalid_argument', 'keepEvents must be a whole number >= 0');
    let dropped = 0;
    // In steps, each its own transaction: commits of pushes take turns with them.
    for (;;) {
      const step = this.writer.compactStep(project, keepEvents);
      dropped += step.dropped;
      if (step.dropped === 0) return { dropped, baseSeq: step.baseSeq };
      // Inside a serving hub (--retain-events): let commits and sockets run between chunks.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async backup(toPath: string): Promise<void> {
    if (existsSync(toPath)) throw new SyncError('backup_exists', `${toPath} already exists; choose a new file`);
    // VACUUM INTO writes one consistent, self-contained file (no -wal) from a read transaction, so the
    // hub keeps committing meanwhile. Into a temporary name first: a failed backup leaves nothing.
    const tmp = `${toPath}.partial-${process.pid}`;
    rmSync(tmp, { force: true });
    try {
      this.db.prepare('VACUUM INTO ?').run(tmp);
      renameSync(tmp, toPath);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
  }

  async createProject(name: string): Promise<void> {
    this.writer.createProject(name, new Date().toISOString());
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
    this.writer.insertToken(t);
  }

  async findToken(id: string): Promise<TokenRecord | undefined> {
    const row = this.stmt.findToken.get(id) as TokenRow | undefined;
    return row && toToken(row);
  }

  async listTokens(project: string): Promise<TokenRecord[]> {
    const rows = this.db.prepare('SELECT * FROM tokens WHERE project = ? ORDER BY created_at, id').all(project) as TokenRow[];
    return rows.map(toToken);
  }

  async revokeToken(id: string, at: string): Promise<boolean> {
    return this.writer.revokeToken(id, at);
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
    return this.writer.bindDevice(project, deviceId, tokenId, at);
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
    // Our own commits run on this thread: a lock held now is another process's.
    this.writer.probe();
  }

  async close(): Promise<void> {
    this.writer.close();
  }
}

/** Create the schema, or bring a file of an older version up to SCHEMA_VERSION; safe when two processes open it at once. */
function migrate(db: Database.Database): void {
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version >= SCHEMA_VERSION) return;
    const had = (table: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined;
    const columns = (table: string) => new Set((db.prepare('SELECT name FROM pragma_table_info(?)').all(table) as { name: string }[]).map((c) => c.name));
    const existing = had('events');
    if (had('projects')) {
      const cols = columns('projects');
      for (const [name, type] of [
        ['head_digest', "TEXT NOT NULL DEFAULT ''"],
        ['base_seq', 'INTEGER NOT NULL DEFAULT 0'],
        ['base_digest', "TEXT NOT NULL DEFAULT ''"],
      ] as const) {
        if (!cols.has(name)) db.exec(`ALTER TABLE projects ADD COLUMN ${name} ${type}`);
      }
    }
    if (existing && !columns('events').has('digest')) db.exec('ALTER TABLE events ADD COLUMN digest TEXT');
    db.exec(SCHEMA);
    if (existing) rebuildFromLog(db);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

/** Version 0 to 1: the digest chain and the entity state of every project, from its whole log. */
function rebuildFromLog(db: Database.Database): void {
  const state = new EntityStateWriter(db);
  const setDigest = db.prepare('UPDATE events SET digest = ? WHERE project = ? AND server_seq = ?');
  const setHead = db.prepare('UPDATE projects SET head_digest = ? WHERE name = ?');
  const projects = db.prepare('SELECT name FROM projects').pluck().all() as string[];
  for (const project of projects) {
    let digest = EMPTY_DIGEST;
    // In pages, not iterate(): the connection cannot run the updates while an iterator is open.
    const page = db.prepare('SELECT server_seq AS seq, body FROM events WHERE project = ? AND server_seq > ? ORDER BY server_seq LIMIT 5000');
    for (let after = 0; ; ) {
      const rows = page.all(project, after) as { seq: number; body: string }[];
      if (rows.length === 0) break;
      state.begin();
      for (const row of rows) {
        digest = chainDigest(digest, row.body);
        setDigest.run(digest, project, row.seq);
        const e = JSON.parse(row.body) as { actionType: never; entityType: string; entityId: string; payload: { newData: null; previousData: null }; clientTimestamp: string };
        state.apply(project, { actionType: e.actionType, entityType: e.entityType, entityId: e.entityId, newData: e.payload.newData, previousData: e.payload.previousData, clientTimestamp: e.clientTimestamp });
      }
      state.flush();
      after = rows[rows.length - 1]!.seq;
    }
    setHead.run(digest, project);
  }
}
