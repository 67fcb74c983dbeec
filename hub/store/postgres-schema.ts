// The PostgreSQL store's schema as numbered migrations. Each runs once, in order, in its own
// transaction, under an advisory lock: several hub nodes starting at once apply it exactly once.
import type pg from 'pg';

export const MIGRATIONS: { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
CREATE TABLE projects (
  name       TEXT PRIMARY KEY,
  head_seq   BIGINT NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE events (
  project          TEXT NOT NULL,
  server_seq       BIGINT NOT NULL,
  device_id        TEXT NOT NULL,
  session_id       TEXT NOT NULL,
  client_action_id BIGINT NOT NULL,
  body             TEXT NOT NULL,
  PRIMARY KEY (project, server_seq),
  UNIQUE (project, device_id, session_id, client_action_id)
);
CREATE TABLE tokens (
  id         TEXT PRIMARY KEY,
  project    TEXT NOT NULL REFERENCES projects(name),
  role       TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
  hash       TEXT NOT NULL,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
CREATE INDEX tokens_project ON tokens (project);`,
  },
  {
    version: 2,
    sql: `
CREATE TABLE devices (
  project   TEXT NOT NULL,
  device_id TEXT NOT NULL,
  token_id  TEXT NOT NULL,
  bound_at  TEXT NOT NULL,
  PRIMARY KEY (project, device_id)
);`,
  },
];

/** Any constant works as long as every node uses the same one. */
const MIGRATION_LOCK = 0x73796e63; // 'sync'

/** Bring the schema up to date; returns the versions applied now (none when another node did it). */
export async function migrate(client: pg.ClientBase): Promise<number[]> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await client.query('CREATE TABLE IF NOT EXISTS synchub_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    const done = new Set((await client.query('SELECT version FROM synchub_migrations')).rows.map((r: { version: number }) => r.version));
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO synchub_migrations (version, applied_at) VALUES ($1, $2)', [m.version, new Date().toISOString()]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
      applied.push(m.version);
    }
    return applied;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
  }
}
