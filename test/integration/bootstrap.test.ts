// Snapshot bootstrap of a 200,000-event project (many updates per entity): a device that bootstraps
// ends with the same tables as one that replays the whole log, and a `kill -9` of the real agent in
// the middle of a bootstrap is finished on restart, its own rows (backfilled) in the log exactly once.
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initHubDb, startHub, type TestHub } from '../kit/hub.ts';
import { dumpTables, makeAppDb, tempDir, type TempDir } from '../kit/app-db.ts';
import { checkConverged, Device, makeDevices, quiesce, spawnAgent, type HubRef } from '../kit/devices.ts';
import { randomHistory, writeHubLog } from '../kit/history.ts';
import { eventually } from '../kit/ws-client.ts';

const EVENTS = 200_000;
const ENTITIES = 20_000;

let tmp: TempDir;
let hub: TestHub;
let ref: HubRef;
const devices: Device[] = [];

beforeAll(async () => {
  tmp = tempDir('synchub-bootstrap-');
  const dbPath = tmp.path('hub.db');
  writeHubLog(dbPath, 'p1', randomHistory(11, EVENTS, ENTITIES));
  const token = await initHubDb(dbPath, 'p1');
  hub = await startHub({ dbPath, project: null });
  ref = { url: hub.url, project: 'p1', token, store: hub.store };
}, 180_000);

afterAll(async () => {
  for (const d of devices) await d.close();
  await hub?.close();
  tmp?.cleanup();
});

/** The cursor and the snapshot rows applied so far, read like `agent status` does (0s before the agent made its tables). */
function progress(path: string): { cursor: number; seen: number } {
  const db = new Database(path, { readonly: true });
  try {
    db.pragma('busy_timeout = 1000');
    const r = db.prepare('SELECT last_pulled_server_seq AS cursor, (SELECT COUNT(*) FROM sync_snapshot_ids) AS seen FROM sync_state LIMIT 1').get() as
      | { cursor: number; seen: number }
      | undefined;
    return r ?? { cursor: 0, seen: 0 };
  } catch {
    return { cursor: 0, seen: 0 };
  } finally {
    db.close();
  }
}

describe(`bootstrap of a ${EVENTS.toLocaleString('en')}-event project`, () => {
  it('gives the same tables as a full replay', async () => {
    const [snap] = makeDevices(tmp.dir, ref, ['snap']) as [Device];
    const [replay] = makeDevices(tmp.dir, ref, ['replay'], { snapshot: false }) as [Device];
    devices.push(snap, replay);
    const bootstraps: { rows: number; done: boolean }[] = [];
    const replays: { rows: number; done: boolean }[] = [];
    (await snap.start()).on('bootstrap', (b) => bootstraps.push(b));
    (await replay.start()).on('bootstrap', (b) => replays.push(b));
    await quiesce(ref, [snap, replay], 150_000);
    expect(snap.status().cursor).toBe(EVENTS);
    // The snapshot device really bootstrapped (and the replay device did not).
    expect(bootstraps.at(-1)).toMatchObject({ done: true });
    expect(bootstraps.at(-1)!.rows).toBeGreaterThan(ENTITIES / 2);
    expect(replays).toEqual([]);
    const tables = dumpTables(snap.writer.db);
    expect(tables.issues!.length).toBeGreaterThan(ENTITIES / 2);
    expect(tables).toEqual(dumpTables(replay.writer.db));
  });

  it('kill -9 in the middle of a bootstrap: a restart finishes it, its backfilled rows pushed exactly once', async () => {
    const path = tmp.path('victim.db');
    makeAppDb(path);
    // Rows the app had before it ever synced: backfilled, pushed while the snapshot is applied.
    const app = new Database(path);
    const insert = app.prepare("INSERT INTO issues (id, title, status, priority) VALUES (?, ?, 'local', ?)");
    app.transaction(() => {
      for (let i = 0; i < 20_000; i++) insert.run(`local-${i}`, `local ${i}`, i);
      insert.run('i-7', 'local copy of a hub entity', 7);
    })();
    app.close();

    const child = spawnAgent(tmp.dir, path, ref);
    await eventually(() => progress(path).seen > 0, 'the agent to apply snapshot pages', 60_000, 2);
    child.proc.kill('SIGKILL');
    await child.exited;
    const killed = progress(path);
    expect(killed.cursor).toBe(0); // the bootstrap had not finished
    expect(killed.seen).toBeGreaterThan(0);

    const victim = new Device('victim', path, ref);
    devices.push(victim);
    await victim.start();
    await quiesce(ref, devices, 150_000);
    expect(victim.status().cursor).toBeGreaterThanOrEqual(EVENTS + 20_001);
    // Equal to a replay of the log, and every outbox row (the backfilled ones) in the log exactly once.
    await checkConverged(ref, devices, tmp.dir);
    expect(victim.writer.row('issues', 'local-19999')).toMatchObject({ title: 'local 19999' });
  });
});
