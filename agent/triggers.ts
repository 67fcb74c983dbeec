// `synchub agent init`: capture triggers that write action_log for an app that
// does not write its outbox itself. They skip writes made by the agent's own
// apply (APPLYING_GUARD_SQL), so applying remote events never echoes back.
import { APPLYING_GUARD_SQL, quoteIdent, tableColumns, type Db } from './app-db.ts';

const NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
// The device's stable fallback session: td's action_log has session_id NOT NULL.
const SESSION = '(SELECT session_id FROM sync_state ORDER BY rowid LIMIT 1)';

/** td's action_log numbers its rows (id INTEGER PRIMARY KEY): let SQLite pick; otherwise a random hex id. */
function newIdSql(db: Db): string {
  const id = tableColumns(db, 'action_log').find((c) => c.name === 'id');
  return id && id.pk === 1 && /INT/i.test(id.type) ? 'NULL' : 'lower(hex(randomblob(16)))';
}

function rowJson(ref: 'NEW' | 'OLD', columns: string[]): string {
  return `json_object(${columns.map((c) => `'${c}', ${ref}.${quoteIdent(c)}`).join(', ')})`;
}

/** (Re)create the insert/update/delete capture triggers of each table. */
export function installTriggers(db: Db, tables: string[]): void {
  const newId = newIdSql(db);
  for (const table of tables) {
    const columns = tableColumns(db, table).map((c) => c.name);
    const t = quoteIdent(table);
    const log = (action: string, id: string, prev: string, next: string) =>
      `INSERT INTO action_log (id, session_id, action_type, entity_type, entity_id, previous_data, new_data, timestamp)
       VALUES (${newId}, ${SESSION}, '${action}', '${table}', ${id}, ${prev}, ${next}, ${NOW});`;
    const triggers = {
      insert: `AFTER INSERT ON ${t} WHEN ${APPLYING_GUARD_SQL} BEGIN ${log('create', 'NEW.id', 'NULL', rowJson('NEW', columns))} END`,
      update: `AFTER UPDATE ON ${t} WHEN ${APPLYING_GUARD_SQL} BEGIN ${log('update', 'NEW.id', rowJson('OLD', columns), rowJson('NEW', columns))} END`,
      // `hard_delete`, not td's `delete` (which td means as a soft delete).
      delete: `AFTER DELETE ON ${t} WHEN ${APPLYING_GUARD_SQL} BEGIN ${log('hard_delete', 'OLD.id', rowJson('OLD', columns), 'NULL')} END`,
    };
    for (const [kind, body] of Object.entries(triggers)) {
      const name = quoteIdent(`synchub_${table}_${kind}`);
      db.exec(`DROP TRIGGER IF EXISTS ${name}; CREATE TRIGGER ${name} ${body}`);
    }
  }
}
