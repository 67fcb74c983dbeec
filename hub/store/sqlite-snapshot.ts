// A snapshot read on SQLite: its own read-only connection holding one read transaction (WAL lets the
// hub's writer commit meanwhile), so every page comes from the same state, at the head the
// transaction saw when it began.
import Database from 'better-sqlite3';
import { SyncError } from '../../shared/errors.ts';
import type { SnapshotReader, SnapshotRowText } from './event-store.ts';

/** Rows read from SQLite per step while filling a page. */
const STEP_ROWS = 256;

export function openSqliteSnapshot(path: string, project: string): SnapshotReader {
  if (path === ':memory:') throw new SyncError('snapshot_unavailable', 'snapshots need a file-backed store');
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    db.exec('BEGIN');
    // The first read fixes the transaction's snapshot: head and state below are of the same instant.
    const head = db.prepare('SELECT head_seq AS seq, head_digest AS digest FROM projects WHERE name = ?').get(project) as
      | { seq: number; digest: string }
      | undefined;
    if (!head) throw new SyncError('unknown_project', `project ${project} does not exist`);
    const page = db.prepare(
      `SELECT entity_type AS t, entity_id AS id, data FROM entity_state
       WHERE project = ? AND (entity_type, entity_id) > (?, ?) ORDER BY entity_type, entity_id LIMIT ?`,
    );
    let lastType = '';
    let lastId = '';
    let finished = false;
    const close = () => {
      if (db.open) db.close(); // ends the read transaction
    };
    return {
      throughSeq: head.seq,
      throughDigest: head.digest,
      async next(maxBytes: number) {
        const rows: SnapshotRowText[] = [];
        let bytes = 0;
        while (!finished && (rows.length === 0 || bytes < maxBytes)) {
          const step = page.all(project, lastType, lastId, STEP_ROWS) as { t: string; id: string; data: string }[];
          let used = 0;
          for (const r of step) {
            const json = `{"entityType":${JSON.stringify(r.t)},"entityId":${JSON.stringify(r.id)},"data":${r.data}}`;
            rows.push({ json });
            bytes += json.length + 1;
            lastType = r.t;
            lastId = r.id;
            used++;
            if (bytes >= maxBytes) break;
          }
          // A short step read to its end was the last one; a page cut inside a step goes on from its last key.
          if (step.length < STEP_ROWS && used === step.length) finished = true;
        }
        if (finished) close();
        return { rows, done: finished };
      },
      close,
    };
  } catch (err) {
    db.close();
    throw err;
  }
}
