// Apply throughput: a 100,000-event backlog (creates and field-level updates from another device,
// in frames of 500, as the hub pages a backlog) applied to an app DB file. Prints one JSON line.
//   npx tsx bench/apply-bench.ts [events] [frameSize] [remote|adopt|own|acked]
// `adopt`: a freshly backfilled device gets its own 100k creates back (one pending row per entity).
// `own`: the events are this device's own pushes coming back while every one of them is still
// pending in action_log: each is confirmed and its entity's later changes rebased (worst case).
// `acked`: the same, but every push was acked before the stream delivers it (the acked-but-
// undelivered set starts at 100k rows and shrinks frame by frame).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ensureSyncSchema, getSyncState, openAppDb } from '../agent/app-db.ts';
import { ApplyEngine } from '../agent/apply.ts';
import type { SyncEvent } from '../shared/event.ts';

const total = Number(process.argv[2] ?? 100_000);
const frameSize = Number(process.argv[3] ?? 500);
const mode = ['adopt', 'own', 'acked'].includes(process.argv[4] ?? '') ? process.argv[4]! : 'remote';
const dir = mkdtempSync(join(tmpdir(), 'synchub-apply-bench-'));
const path = join(dir, 'app.db');

try {
  const app = new Database(path);
  app.pragma('journal_mode = WAL');
  app.exec(`CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT, status TEXT, priority INTEGER, labels TEXT,
    description TEXT, deleted_at TEXT, created_at TEXT, updated_at TEXT)`);
  app.close();

  const db = openAppDb(path);
  ensureSyncSchema(db);
  // A few local changes waiting to be pushed, as on a live device: the rebase lookup runs every frame.
  db.exec(`INSERT INTO action_log (action_type, entity_type, entity_id, new_data, timestamp, undone)
           VALUES ('create', 'issues', 'local-1', '{"title":"mine"}', '2026-01-01T00:00:00Z', 0)`);
  const me = getSyncState(db).deviceId;
  const engine = new ApplyEngine(db, { deviceId: me, tables: ['issues'] });

  // Build the backlog first (the link hands the engine parsed events): 60% creates, 40% updates.
  const events: SyncEvent[] = [];
  let created = 0;
  for (let seq = 1; seq <= total; seq++) {
    const ts = new Date(Date.UTC(2026, 0, 1) + seq).toISOString();
    const isUpdate = mode !== 'adopt' && created > 0 && seq % 5 >= 3;
    const id = isUpdate ? `i${(seq * 7919) % created}` : `i${created++}`;
    const row = { id, title: `title ${seq}`, status: 'open', priority: seq % 4, labels: ['a', 'b'], description: 'x'.repeat(80), deleted_at: null, created_at: ts, updated_at: ts };
    events.push({
      serverSeq: seq,
      deviceId: mode === 'remote' ? 'dev-remote' : me,
      sessionId: 'ses',
      clientActionId: seq + 1,
      actionType: isUpdate ? 'update' : 'create',
      entityType: 'issues',
      entityId: id,
      payload: isUpdate
        ? { schemaVersion: 1, newData: { ...row, status: 'done' }, previousData: { ...row, title: 'old', status: 'open' } }
        : { schemaVersion: 1, newData: row, previousData: null },
      clientTimestamp: ts,
      serverTimestamp: ts,
    });
  }

  if (mode !== 'remote') {
    // The outbox rows those events came from (rowid = clientActionId), all still unacked.
    const insert = db.prepare(
      `INSERT INTO action_log (rowid, action_type, entity_type, entity_id, previous_data, new_data, timestamp, undone) VALUES (?, ?, 'issues', ?, ?, ?, ?, 0)`,
    );
    db.transaction(() => {
      for (const e of events) {
        const p = e.payload;
        insert.run(e.clientActionId, e.actionType, e.entityId, p.previousData && JSON.stringify(p.previousData), JSON.stringify(p.newData), e.clientTimestamp);
      }
      if (mode === 'acked') db.exec("UPDATE action_log SET synced_at = '2026-01-01T00:00:00Z', server_seq = rowid - 1 WHERE rowid > 1");
    })();
  }

  const t0 = process.hrtime.bigint();
  let failed = 0;
  for (let i = 0; i < events.length; i += frameSize) {
    const frame = events.slice(i, i + frameSize);
    failed += engine.applyFrame(frame, frame[frame.length - 1]!.serverSeq, total).failed.length;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const rows = (db.prepare('SELECT COUNT(*) AS n FROM issues').get() as { n: number }).n;
  db.close();
  if (failed > 0 || rows !== created) throw new Error(`bench sanity check failed: ${failed} failed, ${rows} rows, ${created} created`);
  process.stdout.write(
    `${JSON.stringify({ bench: 'apply', mode, events: total, frameSize, seconds: Number(seconds.toFixed(3)), eventsPerSec: Math.round(total / seconds) })}\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
