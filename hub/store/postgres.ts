// EventStore on PostgreSQL: several hub nodes share one database.
//
// Seqs are assigned inside the insert transaction under the project row's lock (SELECT ... FOR
// UPDATE), so commits of one project are serialised across nodes: commit order is seq order and
// no reader on any node sees seq N+1 before N. The same transaction sends a NOTIFY per project
// with its new head; every node LISTENs on a connection of its own and fans out from the store.
// That transaction is one call of the server-side function synchub_append (postgres-schema.ts):
// one round trip per group commit.
import pg from 'pg';
import { SyncError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import { silentLogger } from '../../shared/log.ts';
import type { AppendGroup, AppendOutcome, CommitWatcher, EventStore, Role, StoredEvent, TokenRecord } from './event-store.ts';
import { migrate } from './postgres-schema.ts';
import { EVENT_JSON_HEAD, serializeEventRest } from './serialize.ts';

/** The NOTIFY channel; a payload is `<head>:<project>`. */
const CHANNEL = 'synchub_commits';
/** Reconnect delays of the LISTEN connection. */
const LISTEN_RETRY_MS = [100, 250, 500, 1000, 2000, 5000];
/** The SQLSTATE synchub_append raises for a project that does not exist (its name in DETAIL). */
const UNKNOWN_PROJECT = 'SH404';

type TokenRow = { id: string; project: string; role: Role; hash: string; created_at: string; revoked_at: string | null };

function toToken(row: TokenRow): TokenRecord {
  return { id: row.id, project: row.project, role: row.role, hash: row.hash, createdAt: row.created_at, revokedAt: row.revoked_at };
}

const dedupKey = (project: string, deviceId: string, sessionId: string, clientActionId: number) =>
  `${project}\u0000${deviceId}\u0000${sessionId}\u0000${clientActionId}`;

export class PostgresEventStore implements EventStore {
  private readonly pool: pg.Pool;
  private listener: pg.Client | null = null;
  private watcher: CommitWatcher | null = null;
  private listening = false;
  private closed = false;
  private retry = 0;
  private retryTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly url: string,
    private readonly log: Logger,
  ) {
    this.pool = new pg.Pool({ connectionString: url, max: 10 });
    // An idle client whose backend is terminated emits here; without a handler the node would crash.
    this.pool.on('error', (err) => this.log.warn({ err: err.message }, 'postgres connection lost'));
  }

  /** Connect and bring the schema up to date (safe when several nodes start at once). */
  static async open(url: string, log: Logger = silentLogger): Promise<PostgresEventStore> {
    const store = new PostgresEventStore(url, log);
    try {
      const { client, done } = await store.checkout();
      try {
        const applied = await migrate(client);
        if (applied.length) log.info({ versions: applied }, 'postgres schema migrated');
      } finally {
        done();
      }
    } catch (err) {
      await store.pool.end().catch(() => {});
      throw new SyncError('store_unavailable', `cannot use PostgreSQL at ${redact(url)}: ${(err as Error).message}`);
    }
    return store;
  }

  /**
   * A pooled client for a transaction. While checked out nothing else listens to its 'error'
   * event, and an unheard one (its backend terminated) would crash the process: the query in
   * flight fails anyway, so the error is only logged.
   */
  private async checkout(): Promise<{ client: pg.PoolClient; done: () => void }> {
    const client = await this.pool.connect();
    const onError = (err: Error) => this.log.warn({ err: err.message }, 'postgres connection lost during a transaction');
    client.on('error', onError);
    return {
      client,
      done: () => {
        client.off('error', onError);
        client.release();
      },
    };
  }

  /**
   * One statement, one round trip: synchub_append (postgres-schema.ts, migration 3) locks the
   * projects, looks up the dedup keys, inserts, moves the heads and sends the NOTIFY; run in
   * autocommit, the statement is its own transaction, and the query resolves only once its COMMIT
   * has answered (after the WAL flush). An error, or a commit that fails, stores nothing.
   */
  async append(groups: AppendGroup[], serverTimestamp: string): Promise<AppendOutcome[][]> {
    // Copies of a dedup key after its first in this commit are left out of the statement and
    // answered with the first one's seq. Events are sent in commit order, so seqs follow it.
    const at = new Map<string, number>();
    const ev = { project: [] as string[], device: [] as string[], session: [] as string[], action: [] as number[], rest: [] as string[] };
    const slots = groups.map(({ project, deviceId, events, payloadJson }) =>
      events.map((e, i) => {
        const key = dedupKey(project, deviceId, e.sessionId, e.clientActionId);
        const first = at.get(key);
        if (first !== undefined) return -1 - first;
        const slot = ev.project.length;
        at.set(key, slot);
        ev.project.push(project);
        ev.device.push(deviceId);
        ev.session.push(e.sessionId);
        ev.action.push(e.clientActionId);
        ev.rest.push(serializeEventRest(deviceId, serverTimestamp, e, payloadJson?.[i]));
        return slot;
      }),
    );
    // Sorted as before: with several unknown projects, the error names the first in this order.
    const names = [...new Set(groups.map((g) => g.project))].sort();
    let row: { seqs: string[]; stored: boolean[] };
    try {
      const r = await this.pool.query<{ seqs: string[]; stored: boolean[] }>({
        name: 'synchub_append',
        text: 'SELECT seqs, stored FROM synchub_append($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])',
        values: [names, ev.project, ev.device, ev.session, ev.action, ev.rest],
      });
      row = r.rows[0]!;
    } catch (err) {
      const e = err as pg.DatabaseError;
      if (e.code === UNKNOWN_PROJECT) throw new SyncError('unknown_project', `project ${e.detail} does not exist`);
      throw err;
    }
    return slots.map((group) =>
      group.map((slot): AppendOutcome => {
        if (slot < 0) return { stored: false, seq: Number(row.seqs[-1 - slot]) };
        const seq = Number(row.seqs[slot]);
        return row.stored[slot] ? { stored: true, seq, json: EVENT_JSON_HEAD + seq + ev.rest[slot]! } : { stored: false, seq };
      }),
    );
  }

  async readAfter(project: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    const r = await this.pool.query<{ seq: string; json: string }>(
      'SELECT server_seq AS seq, body AS json FROM events WHERE project = $1 AND server_seq > $2 ORDER BY server_seq LIMIT $3',
      [project, afterSeq, limit],
    );
    return r.rows.map((row) => ({ seq: Number(row.seq), json: row.json }));
  }

  async headSeq(project: string): Promise<number> {
    const r = await this.pool.query<{ head_seq: string }>('SELECT head_seq FROM projects WHERE name = $1', [project]);
    if (r.rows.length === 0) throw new SyncError('unknown_project', `project ${project} does not exist`);
    return Number(r.rows[0]!.head_seq);
  }

  async createProject(name: string): Promise<void> {
    const r = await this.pool.query('INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [
      name,
      new Date().toISOString(),
    ]);
    if (r.rowCount === 0) throw new SyncError('project_exists', `project ${name} already exists`);
  }

  async projectExists(name: string): Promise<boolean> {
    const r = await this.pool.query('SELECT 1 FROM projects WHERE name = $1', [name]);
    return r.rows.length > 0;
  }

  async listProjects() {
    const r = await this.pool.query<{ name: string; head_seq: string; created_at: string }>('SELECT name, head_seq, created_at FROM projects ORDER BY name');
    return r.rows.map((row) => ({ name: row.name, headSeq: Number(row.head_seq), createdAt: row.created_at }));
  }

  async insertToken(t: TokenRecord): Promise<void> {
    await this.pool.query('INSERT INTO tokens (id, project, role, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      t.id,
      t.project,
      t.role,
      t.hash,
      t.createdAt,
      t.revokedAt,
    ]);
  }

  async findToken(id: string): Promise<TokenRecord | undefined> {
    const r = await this.pool.query<TokenRow>('SELECT * FROM tokens WHERE id = $1', [id]);
    return r.rows[0] && toToken(r.rows[0]);
  }

  async listTokens(project: string): Promise<TokenRecord[]> {
    const r = await this.pool.query<TokenRow>('SELECT * FROM tokens WHERE project = $1 ORDER BY created_at, id', [project]);
    return r.rows.map(toToken);
  }

  async revokeToken(id: string, at: string): Promise<boolean> {
    const r = await this.pool.query('UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2', [at, id]);
    return r.rowCount === 1;
  }

  async revokedTokens(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const r = await this.pool.query<{ id: string }>('SELECT id FROM tokens WHERE revoked_at IS NULL AND id = ANY($1::text[])', [ids]);
    const live = new Set(r.rows.map((row) => row.id));
    return ids.filter((id) => !live.has(id));
  }

  async bindDevice(project: string, deviceId: string, tokenId: string, at: string): Promise<boolean> {
    // As on SQLite: a device whose token was revoked may come back with a new one (token rotation).
    const r = await this.pool.query<{ token_id: string }>(
      `WITH ins AS (
         INSERT INTO devices (project, device_id, token_id, bound_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (project, device_id) DO UPDATE SET token_id = excluded.token_id, bound_at = excluded.bound_at
           WHERE NOT EXISTS (SELECT 1 FROM tokens t WHERE t.id = devices.token_id AND t.revoked_at IS NULL)
         RETURNING token_id)
       SELECT token_id FROM ins UNION ALL SELECT token_id FROM devices WHERE project = $1 AND device_id = $2`,
      [project, deviceId, tokenId, at],
    );
    // Empty only when a concurrent first use committed after this statement's snapshot: read it now.
    const owner =
      r.rows[0]?.token_id ??
      (await this.pool.query<{ token_id: string }>('SELECT token_id FROM devices WHERE project = $1 AND device_id = $2', [project, deviceId])).rows[0]?.token_id;
    return owner === tokenId;
  }

  /** Commits by any node, through LISTEN on a dedicated connection that reconnects by itself. */
  watchCommits(watcher: CommitWatcher): void {
    this.watcher = watcher;
    void this.listen();
  }

  /** The LISTEN connection is up: this node hears every commit (readyz). */
  isReady(): boolean {
    return this.watcher === null || this.listening;
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.url });
    this.listener = client;
    const lost = (why: string) => {
      if (this.listener !== client) return;
      this.listener = null;
      const wasUp = this.listening;
      this.listening = false;
      client.end().catch(() => {});
      if (this.closed) return;
      const delay = LISTEN_RETRY_MS[Math.min(this.retry++, LISTEN_RETRY_MS.length - 1)]!;
      if (wasUp) this.log.warn({ err: why, retryInMs: delay }, 'postgres LISTEN connection lost; fan-out from other nodes paused');
      this.retryTimer = setTimeout(() => void this.listen(), delay);
    };
    client.on('error', (err) => lost(err.message));
    client.on('end', () => lost('connection ended'));
    client.on('notification', (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      const colon = msg.payload.indexOf(':');
      this.watcher?.onCommit(msg.payload.slice(colon + 1), Number(msg.payload.slice(0, colon)));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      lost((err as Error).message);
      return;
    }
    if (this.listener !== client) return;
    this.listening = true;
    this.retry = 0;
    this.log.info('postgres LISTEN connection up');
    // Commits made while nobody listened were not heard: catch up from the store.
    this.watcher?.onResync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const listener = this.listener;
    this.listener = null;
    this.listening = false;
    await listener?.end().catch(() => {});
    await this.pool.end();
  }
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the given URL';
  }
}
