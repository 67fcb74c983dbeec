// The hub's state table on SQLite: the current row of every entity per project, kept by applying each
// committed event with the agent's own rules (shared/apply-rules.ts) inside the commit transaction,
// so a snapshot is one scan of this table instead of a replay of the log.
import type Database from 'better-sqlite3';
import { applyEffect, effectOf, RuleError, type Row, type RuleChange } from '../../shared/apply-rules.ts';
import type { ActionType } from '../../shared/event.ts';
import { entityTable } from '../../shared/td-actions.ts';

export const STATE_SCHEMA = `
CREATE TABLE IF NOT EXISTS entity_state (
  project     TEXT NOT NULL,
  entity_type TEXT NOT NULL,          -- the table, after td alias normalisation (as the agent applies it)
  entity_id   TEXT NOT NULL,
  data        TEXT NOT NULL,          -- the row as a JSON object
  PRIMARY KEY (project, entity_type, entity_id)
) WITHOUT ROWID;`;

/** What the state needs of an event. */
export interface StateEvent extends RuleChange {
  entityType: string;
  entityId: string;
}

export class EntityStateWriter {
  private readonly s;
  /**
   * Rows touched by the commit under way, by table and id (undefined: deleted). Each entity is read
   * once and written once per commit, however many of its events the commit holds.
   */
  private pending = new Map<string, { table: string; id: string; row: Row | undefined; existed: boolean }>();

  constructor(db: Database.Database) {
    this.s = {
      get: db.prepare('SELECT data FROM entity_state WHERE project = ? AND entity_type = ? AND entity_id = ?').pluck(),
      put: db.prepare(
        `INSERT INTO entity_state (project, entity_type, entity_id, data) VALUES (?, ?, ?, ?)
         ON CONFLICT (project, entity_type, entity_id) DO UPDATE SET data = excluded.data`,
      ),
      del: db.prepare('DELETE FROM entity_state WHERE project = ? AND entity_type = ? AND entity_id = ?'),
    };
  }

  /** Start a commit: forget what an earlier (possibly rolled back) one left. */
  begin(): void {
    this.pending.clear();
  }

  /**
   * Apply one event (between begin and flush, inside the transaction that stores it). An event the
   * rules refuse (a create or update without newData) changes nothing, as on a device, where it lands
   * in sync_failed_events.
   */
  apply(project: string, e: StateEvent): void {
    let effect;
    try {
      effect = effectOf({ actionType: e.actionType as ActionType, newData: e.newData, previousData: e.previousData, clientTimestamp: e.clientTimestamp });
    } catch (err) {
      if (err instanceof RuleError) return;
      throw err;
    }
    const table = entityTable(e.entityType);
    const key = `${project}\u0000${table}\u0000${e.entityId}`;
    let entry = this.pending.get(key);
    if (!entry) {
      const text = this.s.get.get(project, table, e.entityId) as string | undefined;
      const row = text === undefined ? undefined : (JSON.parse(text) as Row);
      entry = { table, id: e.entityId, row, existed: row !== undefined };
      this.pending.set(key, entry);
    }
    entry.row = applyEffect(entry.row, effect);
  }

  /** Write every row the commit touched (still inside its transaction). */
  flush(): void {
    for (const [key, p] of this.pending) {
      const project = key.slice(0, key.indexOf('\u0000'));
      if (p.row === undefined) {
        if (p.existed) this.s.del.run(project, p.table, p.id);
      } else {
        this.s.put.run(project, p.table, p.id, JSON.stringify(p.row));
      }
    }
    this.pending.clear();
  }
}
