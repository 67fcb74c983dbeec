// The app side of the write-to-visible scenario: an app's SQLite file as the agent expects it
// (README "How an app integrates", docs/agent.md), and the app's write: the row and its
// action_log outbox row in one transaction. Copied from the test kit (test/kit/app-db.ts) so
// that the benchmark depends on the product only, never on its tests.
import Database from 'better-sqlite3';

/** The synced table. `written_us`: when the app wrote the row, on CLOCK_MONOTONIC (nowUs()). */
export const ITEMS_SCHEMA = 'CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER, written_us INTEGER, body TEXT, deleted_at TEXT)';

/** td's outbox, as an app creates it (the agent would create it too if missing). */
export const ACTION_LOG_SCHEMA = `CREATE TABLE action_log (id TEXT, session_id TEXT, action_type TEXT, entity_type TEXT, entity_id TEXT,
  previous_data TEXT, new_data TEXT, timestamp TEXT, undone INTEGER DEFAULT 0, synced_at TEXT, server_seq INTEGER)`;

/** Create an app DB the way an app would (WAL, its tables, its outbox), then close it for the agent. */
export function makeAppDb(path: string): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(ITEMS_SCHEMA);
  db.exec(ACTION_LOG_SCHEMA);
  db.close();
}

export interface AppWriter {
  /** Write row `n` as the app does; returns its stamp (µs, CLOCK_MONOTONIC). */
  write(n: number, stampUs: number): void;
  close(): void;
}

/**
 * The app's own connection. Each write takes the lock up front (BEGIN IMMEDIATE, as an app
 * sharing its file with the agent should) and commits the row and its action_log row together.
 * synchronous=NORMAL: what apps in WAL mode commonly use and how the agent opens the file, so
 * the figure is sync latency, not the app's own fsync.
 */
export function openAppWriter(path: string, sessionId = 'bench-app'): AppWriter {
  const db = new Database(path);
  db.pragma('busy_timeout = 5000');
  db.pragma('synchronous = NORMAL');
  const insert = db.prepare('INSERT INTO items (id, n, written_us, body) VALUES (?, ?, ?, ?)');
  const log = db.prepare(
    `INSERT INTO action_log (id, session_id, action_type, entity_type, entity_id, previous_data, new_data, timestamp, undone)
     VALUES (?, ?, 'create', 'items', ?, '', ?, ?, 0)`,
  );
  const tx = db.transaction((n: number, stampUs: number) => {
    const row = { id: `v${n}`, n, written_us: stampUs, body: 'x'.repeat(64) };
    insert.run(row.id, row.n, row.written_us, row.body);
    log.run(`al-${n}`, sessionId, row.id, JSON.stringify(row), new Date().toISOString());
  });
  return {
    write: (n, stampUs) => tx.immediate(n, stampUs),
    close: () => db.close(),
  };
}
