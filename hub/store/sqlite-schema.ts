// The event log's table in its own module (no imports), so the benchmark's SQLite
// floor can measure exactly this schema without loading the store.

export const EVENTS_SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  project          TEXT NOT NULL,
  server_seq       INTEGER NOT NULL,
  device_id        TEXT NOT NULL,
  session_id       TEXT NOT NULL,
  client_action_id INTEGER NOT NULL,
  body             TEXT NOT NULL,          -- the event as streamed, serialised once at commit
  digest           TEXT,                   -- chained log digest through this event (shared/digest.ts)
  UNIQUE (project, server_seq),
  UNIQUE (project, device_id, session_id, client_action_id)
);`;

