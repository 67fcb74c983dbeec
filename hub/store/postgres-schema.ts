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
    // Its steps are those the store used to send one by one inside BEGIN/COMMIT (7 round trips).
    //
    // Not one statement of data-modifying CTEs: all of a statement shares one snapshot, taken
    // before the row lock is granted, so the dedup lookup would miss the keys that the commit it
    // waited for has just stored (a unique violation instead of a duplicate). Here each statement
    // takes a fresh snapshot (READ COMMITTED, a VOLATILE function): those after the lock see
    // every commit made before it.
    //
    // force_custom_plan: each statement is planned at each call for the arrays it gets, as the
    // statements sent by the client were. PL/pgSQL would otherwise settle on a generic plan,
    // costed with the table sizes of that connection's first calls and kept while the tables
    // grow: made on a young database, the dedup lookup degraded (a 100-event commit at 3x).
    version: 3,
    sql: `
CREATE FUNCTION synchub_append(
  group_projects text[],
  ev_project text[], ev_device text[], ev_session text[], ev_action bigint[], ev_rest text[],
  OUT seqs bigint[], OUT stored boolean[]
) LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_custom_plan AS $fn$
DECLARE
  names text[];
  heads bigint[];
  known bigint[];
  moved text[];
  moved_heads bigint[];
  missing text;
BEGIN
  -- Lock the projects' rows in name order: two nodes committing to the same projects never deadlock.
  SELECT array_agg(l.name ORDER BY l.name), array_agg(l.head_seq ORDER BY l.name) INTO names, heads
    FROM (SELECT name, head_seq FROM projects WHERE name = ANY(group_projects) ORDER BY name FOR UPDATE) l;
  IF coalesce(array_length(names, 1), 0) < coalesce(array_length(group_projects, 1), 0) THEN
    SELECT g.name INTO missing FROM unnest(group_projects) WITH ORDINALITY AS g(name, ord)
     WHERE NOT (g.name = ANY(coalesce(names, '{}'))) ORDER BY g.ord LIMIT 1;
    RAISE EXCEPTION 'project % does not exist', missing USING ERRCODE = 'SH404', DETAIL = missing;
  END IF;
  IF coalesce(array_length(ev_project, 1), 0) = 0 THEN
    seqs := '{}';
    stored := '{}';
    RETURN;
  END IF;

  -- Dedup keys already stored, per event (NULL: new). Under the locks nobody can add one meanwhile.
  SELECT array_agg(e.server_seq ORDER BY k.ord) INTO known
    FROM unnest(ev_project, ev_device, ev_session, ev_action) WITH ORDINALITY AS k(project, device_id, session_id, client_action_id, ord)
    LEFT JOIN events e ON e.project = k.project AND e.device_id = k.device_id
                      AND e.session_id = k.session_id AND e.client_action_id = k.client_action_id;

  -- Seqs per project in array order after its head; every new event in one INSERT.
  WITH fresh AS (
    SELECT i.*, h.head + row_number() OVER (PARTITION BY i.project ORDER BY i.ord) AS seq
      FROM unnest(ev_project, ev_device, ev_session, ev_action, ev_rest, known) WITH ORDINALITY
        AS i(project, device_id, session_id, client_action_id, rest, old_seq, ord)
      JOIN unnest(names, heads) AS h(name, head) ON h.name = i.project
     WHERE i.old_seq IS NULL
  ), ins AS (
    INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body)
    SELECT project, seq, device_id, session_id, client_action_id, '{"serverSeq":' || seq || rest FROM fresh
  ), new_heads AS (
    SELECT project, max(seq) AS head FROM fresh GROUP BY project
  )
  SELECT (SELECT array_agg(coalesce(k.old_seq, f.seq) ORDER BY k.ord)
            FROM unnest(known) WITH ORDINALITY AS k(old_seq, ord) LEFT JOIN fresh f ON f.ord = k.ord),
         (SELECT array_agg(k.old_seq IS NULL ORDER BY k.ord) FROM unnest(known) WITH ORDINALITY AS k(old_seq, ord)),
         (SELECT array_agg(project ORDER BY project) FROM new_heads),
         (SELECT array_agg(head ORDER BY project) FROM new_heads)
    INTO seqs, stored, moved, moved_heads;
  IF moved IS NULL THEN
    RETURN;
  END IF;

  UPDATE projects AS p SET head_seq = v.head
    FROM unnest(moved, moved_heads) AS v(name, head) WHERE p.name = v.name;
  -- Delivered to every listener at COMMIT, never before, and not at all on a rollback.
  PERFORM pg_notify('synchub_commits', v.head || ':' || v.name) FROM unnest(moved, moved_heads) AS v(name, head);
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
