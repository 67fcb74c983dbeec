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
  {
    // A group commit as one statement, hence one round trip in autocommit (PostgresEventStore.append).
    // Its arguments: the projects of the commit's groups (each once), and per event (dedup keys
    // unique, in commit order) its project, dedup key and JSON after the seq (serializeEventRest).
    // It returns per event the seq and whether it was stored now (false: the seq stored under its
    // key before). Raises SQLSTATE SH404, the project in DETAIL, for a project that does not exist.
    //
    // Not one statement of data-modifying CTEs: all of a statement shares one snapshot, taken
    // before the row lock is granted, so the dedup lookup would miss the keys that the commit it
    // waited for has just stored. Here each statement takes a fresh snapshot (READ COMMITTED, a
    // VOLATILE function), and the one after the lock sees every commit made before it.
    version: 3,
    sql: `
CREATE FUNCTION synchub_append(
  group_projects text[],
  ev_project text[], ev_device text[], ev_session text[], ev_action bigint[], ev_rest text[],
  OUT seqs bigint[], OUT stored boolean[]
) LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  missing text;
  moved text[];
BEGIN
  -- Lock the projects' rows in name order: two nodes committing to the same projects never deadlock.
  PERFORM 1 FROM projects WHERE name = ANY(group_projects) ORDER BY name FOR UPDATE;
  SELECT g.name INTO missing
    FROM unnest(group_projects) WITH ORDINALITY AS g(name, ord)
   WHERE NOT EXISTS (SELECT 1 FROM projects p WHERE p.name = g.name)
   ORDER BY g.ord LIMIT 1;
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'project % does not exist', missing USING ERRCODE = 'SH404', DETAIL = missing;
  END IF;

  -- A fresh snapshot, taken under the locks: every key stored before is visible, none can be added.
  WITH input AS (
    SELECT * FROM unnest(ev_project, ev_device, ev_session, ev_action, ev_rest) WITH ORDINALITY
      AS i(project, device_id, session_id, client_action_id, rest, ord)
  ), known AS (
    SELECT i.ord, e.server_seq
      FROM input i
      JOIN events e ON e.project = i.project AND e.device_id = i.device_id
                   AND e.session_id = i.session_id AND e.client_action_id = i.client_action_id
  ), fresh AS (
    -- Seqs per project in array order, after its head.
    SELECT i.*, p.head_seq + row_number() OVER (PARTITION BY i.project ORDER BY i.ord) AS seq
      FROM input i JOIN projects p ON p.name = i.project
     WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.ord = i.ord)
  ), ins AS (
    INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body)
    SELECT project, seq, device_id, session_id, client_action_id, '{"serverSeq":' || seq || rest FROM fresh
  ), heads AS (
    UPDATE projects p SET head_seq = h.head
      FROM (SELECT project, max(seq) AS head FROM fresh GROUP BY project) h
     WHERE p.name = h.project
    RETURNING p.name
  ), outcome AS (
    SELECT ord, seq, true AS is_new FROM fresh
    UNION ALL
    SELECT ord, server_seq, false FROM known
  )
  SELECT coalesce((SELECT array_agg(seq ORDER BY ord) FROM outcome), '{}'),
         coalesce((SELECT array_agg(is_new ORDER BY ord) FROM outcome), '{}'),
         (SELECT array_agg(name) FROM heads)
    INTO seqs, stored, moved;

  -- Delivered to every listener at COMMIT, never before, and not at all on a rollback.
  PERFORM pg_notify('synchub_commits', head_seq || ':' || name) FROM projects WHERE name = ANY(moved) ORDER BY name;
END
$fn$;`,
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
