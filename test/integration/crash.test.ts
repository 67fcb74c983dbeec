// Crash safety of the real agent process: kill -9 in the middle of applying a long
// backlog and in the middle of pushing; after a restart nothing is applied twice or skipped.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAppDb } from '../../agent/app-db.ts';
import { HEARTBEAT_MS, readStatus } from '../../agent/status.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { dumpTables, makeAppDb, replayInto, tempDir, type TempDir } from '../kit/app-db.ts';
import { checkConverged, Device, hubLog, makeDevices, quiesce, spawnAgent } from '../kit/devices.ts';
import { eventually, makeEvents } from '../kit/ws-client.ts';

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-crash-');
});

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

/** The cursor of an app DB, read from a separate connection like `agent status`. */
function cursorOf(path: string): number {
  const db = openAppDb(path);
  try {
    const r = db.prepare("SELECT last_pulled_server_seq AS c FROM sync_state LIMIT 1").get() as { c: number } | undefined;
    return r?.c ?? 0;
  } catch {
    return 0; // sync tables not created yet
  } finally {
    db.close();
  }
}

describe('kill -9 of the agent', () => {
  it('in the middle of applying a backlog leaves a whole-frame state and resumes without loss or repeats', async () => {
    const total = 60_000;
    for (let first = 1; first <= total; first += 1000) {
      // Creates, then updates of the same rows: applying one twice or skipping one shows.
      const events = makeEvents(first, 1000, { payloadBytes: 300 });
      for (const e of events) if (e.clientActionId > total / 2) {
        const n = e.clientActionId - total / 2;
        e.actionType = 'update';
        e.entityId = `i-${n}`;
        e.payload = { schemaVersion: 1, newData: { id: `i-${n}`, title: `updated ${e.clientActionId}` }, previousData: { id: `i-${n}`, title: `issue ${n}` } };
      }
      await hub.store.append([{ project: hub.project, deviceId: 'loader', events }], new Date().toISOString());
    }
    const path = tmp.path('victim.db');
    makeAppDb(path);
    // A replay of the backlog (a snapshot bootstrap is crash-tested in bootstrap.test.ts).
    const child = spawnAgent(tmp.dir, path, hub, {}, ['--no-snapshot']);
    await eventually(() => cursorOf(path) > 0, 'the agent to start applying', 20_000, 2);
    child.proc.kill('SIGKILL');
    await child.exited;

    const cursor = cursorOf(path);
    expect(cursor).toBeGreaterThan(0);
    expect(cursor).toBeLessThan(total); // killed mid-way (the backlog takes far longer than one poll)
    // The DB holds exactly events 1..cursor: nothing half-applied, nothing beyond the cursor.
    const log = await hubLog(hub.store, hub.project);
    const replay = replayInto(tmp.path('replay.db'), log.slice(0, cursor));
    const victim = openAppDb(path);
    expect(dumpTables(victim)).toEqual(dumpTables(replay));
    victim.close();
    replay.close();

    // Restart (in-process this time) and catch up the rest.
    const resumed = new Device('victim', path, hub);
    devices = [...makeDevices(tmp.dir, hub, ['other']), resumed];
    await resumed.start();
    await devices[0]!.start();
    await quiesce(hub, devices, 60_000);
    await checkConverged(hub, devices, tmp.dir);
    expect(resumed.writer.row('issues', 'i-1')).toMatchObject({ title: `updated ${total / 2 + 1}` });
  });

  it('in the middle of pushing: every local change reaches the hub exactly once after restart', async () => {
    devices = makeDevices(tmp.dir, hub, ['pusher', 'reader']);
    const [pusher, reader] = devices as [Device, Device];
    // One app transaction (nested ones become savepoints): 20,000 fsyncs would dominate the test.
    pusher.writer.db.transaction(() => {
      for (let i = 0; i < 20_000; i++) {
        if (i % 2 === 0) pusher.writer.create('issues', { id: `p-${i}`, title: `p ${i}`, priority: i });
        else pusher.writer.update('issues', `p-${i - 1}`, { status: 'done' });
      }
    })();
    const child = spawnAgent(tmp.dir, pusher.path, hub);
    await eventually(async () => (await hub.store.headSeq(hub.project)) > 0, 'the first acked push', 20_000, 1);
    child.proc.kill('SIGKILL');
    await child.exited;
    const head = await hub.store.headSeq(hub.project);
    expect(head).toBeLessThan(20_000);
    // kill -9 left status = connected behind; once the heartbeat is stale, status says no agent runs.
    expect(pusher.status()).toMatchObject({ status: 'connected' });
    const db = openAppDb(pusher.path);
    expect(readStatus(db, Date.now() + 3 * HEARTBEAT_MS + 1000)).toMatchObject({ running: false, connected: false });
    db.close();

    await pusher.start();
    await reader.start();
    await quiesce(hub, devices, 60_000);
    const log = await checkConverged(hub, devices, tmp.dir); // exactly once per action_log row
    expect(log).toHaveLength(20_000);
    expect(reader.writer.row('issues', 'p-19998')).toMatchObject({ status: 'done' });
  });

  it('SIGTERM stops the daemon cleanly: exit 0, status stopped, unpushed changes still pending', async () => {
    devices = makeDevices(tmp.dir, hub, ['calm']);
    const [calm] = devices as [Device];
    calm.writer.create('issues', { id: 'before', title: 'pushed' });
    const child = spawnAgent(tmp.dir, calm.path, hub);
    await eventually(async () => (await hub.store.headSeq(hub.project)) === 1 && calm.status().pending === 0, 'first change pushed', 20_000);
    child.proc.kill('SIGTERM');
    expect(await child.exited).toBe(0);
    expect(calm.status()).toMatchObject({ status: 'stopped', running: false, connected: false, cursor: 1, pending: 0 });
    calm.writer.create('issues', { id: 'after', title: 'written while stopped' });
    expect(calm.status().pending).toBe(1);
  });
});
