// Backfill (agent rule 7): adopting a database that already holds rows. Before the first pull, every
// row of a synced table that no action_log create covers gets a synthetic `create` row, so pushing
// the outbox publishes the existing data.
import type Database from 'better-sqlite3';
import { IDENTIFIER_RE } from '../shared/limits.ts';
import { entityTable, mapActionType } from '../shared/td-actions.ts';
import { nowIso } from '../shared/time.ts';
import { getSyncState, quoteIdent, tableColumns } from './app-db.ts';

type Db = Database.Database;

/** Columns per json_object call: SQLite caps function arguments (127 in older builds; 2 per column). */
const JSON_CHUNK = 60;

/** SQL building a JSON object of the given columns of alias `t`, safe for any number of columns. */
function rowJsonSql(cols: string[]): string {
  const pair = (c: string) => `'${c}', t."${c}"`;
  let sql = `json_object(${cols.slice(0, JSON_CHUNK).map(pair).join(', ')})`;
  for (let i = JSON_CHUNK; i < cols.length; i += JSON_CHUNK) {
    const rest = cols.slice(i, i + JSON_CHUNK).map((c) => `'$."${c}"', t."${c}"`);
    sql = `json_insert(${sql}, ${rest.join(', ')})`;
  }
  return sql;
}

/**
 * Insert synthetic `create` rows for rows no create covers; returns how many. Runs only while the cursor
 * is 0: once anything was pulled, rows may have come from the hub and must not be pushed back as new.
 *
 * Like td, a row counts as covered when it has a non-undone action_log row whose action maps to
 * create (td's names included) — a row that only has updates logged is backfilled too, since
 * other devices could not apply those updates without it. A create that was already marked synced
 * when the agent adopted the file (by td's own sync, to another server) does not count. Unlike td, soft-deleted rows are included:
 * they are rows like any other and every device should hold them. new_data is the whole row
 * (json_object over table_info, one INSERT ... SELECT per table), previous_data NULL, timestamp now.
 * BLOB values cannot travel in JSON events: a table holding one fails with an error naming it.
 */
export function backfill(db: Db, tables: string[], sessionId: string): number {
  return db.transaction(() => {
    const state = getSyncState(db);
    if (state.cursor !== 0) return 0;
    // Creates an earlier sync system (td's HTTP sync) marked synced never reached this hub: they do not
    // cover their rows. Only pending creates, or ones this agent pushed, do.
    const adopted = state.adoptedRowid;
    const wanted = new Set(tables);
    db.exec('CREATE TEMP TABLE IF NOT EXISTS sync_backfill_seen (tbl TEXT NOT NULL, entity_id TEXT NOT NULL, PRIMARY KEY (tbl, entity_id)) WITHOUT ROWID');
    db.exec('DELETE FROM temp.sync_backfill_seen');
    try {
      // Which (entity_type, action_type) pairs are creates of a synced table: decided in JS, where the
      // td vocabulary lives; then one indexed copy of the ids they cover.
      const pairs = db
        .prepare('SELECT DISTINCT entity_type, action_type FROM action_log WHERE IFNULL(undone, 0) = 0 AND (synced_at IS NULL OR rowid > ?)')
        .all(adopted) as Array<{ entity_type: string | null; action_type: string | null }>;
      const copy = db.prepare(
        `INSERT OR IGNORE INTO temp.sync_backfill_seen (tbl, entity_id)
         SELECT ?, entity_id FROM action_log WHERE entity_type = ? AND action_type = ? AND IFNULL(undone, 0) = 0
           AND entity_id IS NOT NULL AND (synced_at IS NULL OR rowid > ?)`,
      );
      for (const p of pairs) {
        if (p.entity_type === null || p.action_type === null) continue;
        const table = entityTable(p.entity_type);
        if (wanted.has(table) && mapActionType(p.action_type) === 'create') copy.run(table, p.entity_type, p.action_type, adopted);
      }

      // td's action_log has `id INTEGER PRIMARY KEY AUTOINCREMENT` (the rowid): let SQLite number it.
      const idCol = tableColumns(db, 'action_log').find((c) => c.name === 'id');
      const rowidAlias = idCol !== undefined && idCol.pk === 1 && idCol.type.toUpperCase() === 'INTEGER';
      const newId = rowidAlias ? 'NULL' : "'bf-' || lower(hex(randomblob(8)))";
      const now = nowIso();
      let total = 0;
      for (const table of tables) {
        const q = quoteIdent(table);
        // Only columns the apply rules can write (a name outside IDENTIFIER_RE would fail the event everywhere).
        const cols = tableColumns(db, table)
          .map((c) => c.name)
          .filter((c) => IDENTIFIER_RE.test(c));
        if (!cols.includes('id')) continue;
        const sql = `INSERT INTO action_log (id, session_id, action_type, entity_type, entity_id, previous_data, new_data, timestamp, undone)
          SELECT ${newId}, ?, 'create', ?, t."id", NULL, ${rowJsonSql(cols)}, ?, 0
          FROM ${q} t
          WHERE t."id" IS NOT NULL AND t."id" <> ''
            AND NOT EXISTS (SELECT 1 FROM temp.sync_backfill_seen s WHERE s.tbl = ? AND s.entity_id = t."id")`;
        try {
          total += db.prepare(sql).run(sessionId, table, now, table).changes;
        } catch (err) {
          const message = (err as Error).message;
          if (/BLOB/i.test(message)) throw new Error(`backfill of table ${table}: it holds BLOB values, which JSON events cannot carry`);
          throw err;
        }
      }
      return total;
    } finally {
      db.exec('DROP TABLE IF EXISTS temp.sync_backfill_seen');
    }
  }).immediate();
}
