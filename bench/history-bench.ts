// History figures for a project with a long log: bootstrap from a snapshot vs a full replay for a new
// device (real hub on 127.0.0.1, real agents, real SQLite files), and the hub file's size before and
// after compaction. Prints one JSON line.
//   npx tsx bench/history-bench.ts [events=200000] [entities=20000] [keepEvents=10000]
// The log is written straight into the hub's file (test/kit/history.ts: the same digests and state as
// pushing it, in seconds); the devices then sync it over WebSockets as any device would.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Agent } from '../agent/agent.ts';
import { Hub } from '../hub/server.ts';
import { SqliteEventStore } from '../hub/store/sqlite.ts';
import { createToken } from '../hub/tokens.ts';
import { APP_TABLES, makeAppDb } from '../test/kit/app-db.ts';
import { randomHistory, writeHubLog } from '../test/kit/history.ts';

const events = Number(process.argv[2] ?? 200_000);
const entities = Number(process.argv[3] ?? 20_000);
const keepEvents = Number(process.argv[4] ?? 10_000);
const dir = mkdtempSync(join(tmpdir(), 'synchub-history-bench-'));
const hubDb = join(dir, 'hub.db');

/** Size of the hub's data once the WAL is folded into the main file. */
function fileBytes(path: string): number {
  const db = new Database(path);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return statSync(path).size;
}

/** Start a device on an empty app DB and resolve with the ms until it has applied the whole log. */
async function syncNewDevice(url: string, token: string, name: string, snapshot: boolean, head: number): Promise<{ ms: number; bootstrapRows: number }> {
  const path = join(dir, `${name}.db`);
  makeAppDb(path);
  const agent = new Agent({ db: path, hub: url, project: 'p1', token, tables: APP_TABLES, snapshot });
  let bootstrapRows = 0;
  agent.on('bootstrap', (b) => (bootstrapRows = b.rows));
  const started = performance.now();
  const done = new Promise<void>((resolve) => {
    const check = () => {
      if (agent.status().cursor >= head) resolve();
    };
    agent.on('applied', check);
    agent.on('bootstrap', check);
  });
  await agent.start();
  await done;
  const ms = performance.now() - started;
  await agent.stop();
  return { ms: Math.round(ms), bootstrapRows };
}

try {
  let t = performance.now();
  writeHubLog(hubDb, 'p1', randomHistory(11, events, entities));
  const generateMs = Math.round(performance.now() - t);
  const store = new SqliteEventStore(hubDb);
  const { token } = await createToken(store, 'p1', 'write');
  const hub = new Hub(store, { port: 0, host: '127.0.0.1' });
  const port = await hub.listen();
  const url = `ws://127.0.0.1:${port}`;
  const head = await store.headSeq('p1');

  const bootstrap = await syncNewDevice(url, token, 'snapshot', true, head);
  const replay = await syncNewDevice(url, token, 'replay', false, head);
  await hub.close();

  const beforeBytes = fileBytes(hubDb);
  const compactStore = new SqliteEventStore(hubDb);
  t = performance.now();
  const compacted = await compactStore.compact('p1', keepEvents);
  const compactMs = Math.round(performance.now() - t);
  const backupPath = join(dir, 'backup.db');
  await compactStore.backup(backupPath);
  await compactStore.close();
  const afterBytes = fileBytes(hubDb);
  const vac = new Database(hubDb);
  vac.exec('VACUUM');
  vac.close();
  const afterVacuumBytes = fileBytes(hubDb);

  process.stdout.write(
    `${JSON.stringify({
      events,
      entities,
      generateMs,
      bootstrap: { ms: bootstrap.ms, snapshotRows: bootstrap.bootstrapRows },
      fullReplay: { ms: replay.ms },
      speedup: Number((replay.ms / bootstrap.ms).toFixed(2)),
      compaction: {
        keepEvents,
        dropped: compacted.dropped,
        ms: compactMs,
        hubFileBytesBefore: beforeBytes,
        hubFileBytesAfterCompact: afterBytes,
        hubFileBytesAfterVacuum: afterVacuumBytes,
        backupFileBytes: statSync(backupPath).size,
      },
    })}\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
