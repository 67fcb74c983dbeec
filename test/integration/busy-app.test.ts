// An app that holds its own database: the real agent daemon (`synchub agent run`, a child process)
// beside an app that keeps the write lock for 8 s at a time (longer than any busy timeout), or keeps
// a read transaction open while it goes on writing. The daemon must never exit, must say that it is
// waiting (log and `agent status`), and must converge afterwards with nothing lost or applied twice.
// Before the write policy (write-queue.ts) the daemon exited about a second into such a lock.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readStatus } from '../../agent/status.ts';
import { tempDir, type AppWriter, type TempDir } from '../kit/app-db.ts';
import { checkConverged, makeDevices, quiesce, spawnAgent, type Device } from '../kit/devices.ts';
import { runCli, startHub, type TestHub } from '../kit/hub.ts';
import { delay, eventually } from '../kit/ws-client.ts';
import Database from 'better-sqlite3';

const TUNING = { SYNCHUB_AGENT_TUNING: JSON.stringify({ pingIntervalMs: 1000, backoffBaseMs: 20, backoffCapMs: 300 }) };
const LOCK_MS = 8_000;

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];
let daemons: Array<ReturnType<typeof spawnAgent>> = [];

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-busy-app-');
});

afterEach(async () => {
  for (const d of daemons) if (d.proc.exitCode === null) d.proc.kill('SIGKILL');
  await Promise.all(daemons.map((d) => d.exited));
  daemons = [];
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

/**
 * The app holds the write lock for `ms`, with `during` writing inside its transaction (committed at
 * the end), and past `ms` until `seen` resolves (what the test waits to observe under the lock, so
 * a slow start of the daemon on a loaded machine cannot make the lock end first; at most 40 s more).
 */
async function holdWriteLock(writer: AppWriter, ms: number, during: () => void = () => {}, seen: Promise<unknown> = Promise.resolve()): Promise<void> {
  writer.db.exec('BEGIN IMMEDIATE');
  try {
    during();
    await delay(ms);
    await Promise.race([seen, delay(40_000)]);
    // A failed test may have closed the app's database meanwhile (afterEach).
    if (writer.db.open) writer.db.exec('COMMIT');
  } finally {
    if (writer.db.open && writer.db.inTransaction) writer.db.exec('ROLLBACK');
  }
}

/** Another connection of the app keeps a read transaction (a snapshot) open for `ms`. */
async function holdReadTransaction(path: string, ms: number): Promise<void> {
  const reader = new Database(path);
  try {
    reader.exec('BEGIN');
    reader.prepare('SELECT COUNT(*) FROM issues').get();
    await delay(ms);
    reader.exec('COMMIT');
  } finally {
    reader.close();
  }
}

/** Remote changes, one every `everyMs`, some on the entity the busy device also edits. */
async function remoteWrites(remote: Device, tag: string, n: number, everyMs: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (i % 3 === 0) remote.writer.update('issues', 'shared', { title: `remote ${tag} ${i}` });
    else remote.writer.create('comments', { id: `rc-${tag}-${i}`, issue_id: 'shared', body: `remote ${tag} ${i}` });
    await delay(everyMs);
  }
}

/** `synchub agent status --json` for a device, as an operator would run it. */
async function statusCli(device: Device): Promise<{ running: boolean; waitingForLock: { sinceMs: number } | null }> {
  const r = await runCli(['agent', 'status', '--db', device.path, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

function expectAlive(daemon: ReturnType<typeof spawnAgent>): void {
  expect(daemon.proc.exitCode, `the daemon exited:\n${daemon.stderr()}`).toBeNull();
  // Nothing at error level or above (pino: 50 error, 60 fatal).
  expect(daemon.stderr()).not.toMatch(/"level":(50|60)/);
}

async function stopDaemon(daemon: ReturnType<typeof spawnAgent>): Promise<void> {
  daemon.proc.kill('SIGTERM');
  expect(await daemon.exited, daemon.stderr()).toBe(0);
}

describe('an app that holds its database', () => {
  it('holds the write lock for 8 s, three times, while remote events arrive and local changes wait: the daemon waits, says so, and converges', async () => {
    devices = makeDevices(tmp.dir, hub, ['busy', 'remote']);
    const [busy, remote] = devices as [Device, Device];
    busy.writer.create('issues', { id: 'shared', title: 'start' });
    const daemon = spawnAgent(tmp.dir, busy.path, hub, TUNING);
    daemons.push(daemon);
    await remote.start();
    await quiesce(hub, devices, 20_000);

    for (let round = 1; round <= 3; round++) {
      let observed!: () => void;
      // Round 1 holds the lock until status was read under it (a loaded machine may take seconds).
      const seen = round === 1 ? new Promise<void>((r) => (observed = r)) : Promise.resolve();
      const lock = holdWriteLock(
        busy.writer,
        LOCK_MS,
        () => {
          // Local changes written inside the app's transaction: pending once it commits.
          busy.writer.update('issues', 'shared', { status: `busy ${round}` });
          busy.writer.create('issues', { id: `busy-${round}`, title: `written under lock ${round}` });
        },
        seen,
      );
      const remoteDone = remoteWrites(remote, `r${round}`, 12, 500);
      if (round === 1) {
        // Once the daemon has a write to make (the remote events, which arrive within moments, or on a
        // loaded machine a second or two) and has waited past the report threshold (3 s), status says so.
        try {
          await eventually(() => busy.status().waitingForLock !== null, 'status to report the wait', 30_000, 100);
          const s = await statusCli(busy);
          expect(s.running).toBe(true);
          expect(s.waitingForLock).not.toBeNull();
          expect(s.waitingForLock!.sinceMs).toBeGreaterThanOrEqual(3_000);
        } finally {
          observed();
        }
      }
      await Promise.all([lock, remoteDone]);
      expectAlive(daemon);
      // Something other than the lock must move: the remote device keeps syncing meanwhile.
      expect(remote.status().pending).toBeLessThanOrEqual(1);
    }

    await quiesce(hub, devices, 60_000);
    // Every local change is in the log exactly once and both devices equal a replay of the log.
    const log = await checkConverged(hub, devices, tmp.dir);
    expect(log.filter((e) => e.entityId.startsWith('busy-')).map((e) => e.entityId)).toEqual(['busy-1', 'busy-2', 'busy-3']);
    expect(busy.writer.row('issues', 'shared')).toMatchObject({ status: 'busy 3' });
    expectAlive(daemon);
    expect(daemon.stderr()).toMatch(/held the database's write lock for \d+ s/);
    expect(busy.status().waitingForLock).toBeNull();
    await stopDaemon(daemon);
  }, 120_000);

  it('keeps a read transaction open for 10 s while it and another device write: the daemon carries on', async () => {
    devices = makeDevices(tmp.dir, hub, ['reader', 'remote']);
    const [app, remote] = devices as [Device, Device];
    const daemon = spawnAgent(tmp.dir, app.path, hub, TUNING);
    daemons.push(daemon);
    await remote.start();
    const local = (async () => {
      for (let i = 0; i < 20; i++) {
        app.writer.create('issues', { id: `local-${i}`, title: `beside a reader ${i}` });
        await delay(400);
      }
    })();
    await Promise.all([holdReadTransaction(app.path, 10_000), remoteWrites(remote, 'read', 20, 400), local]);
    await quiesce(hub, devices, 30_000);
    await checkConverged(hub, devices, tmp.dir);
    expectAlive(daemon);
    await stopDaemon(daemon);
  }, 60_000);

  it('starts for the first time while the app holds an 8 s write lock: it waits, then syncs', async () => {
    devices = makeDevices(tmp.dir, hub, ['late', 'remote']);
    const [late, remote] = devices as [Device, Device];
    await remote.start();
    remote.writer.create('issues', { id: 'from-remote', title: 'already on the hub' });
    late.writer.create('issues', { id: 'existing', title: 'written before the agent ever ran' });
    let reported!: () => void;
    const lock = holdWriteLock(late.writer, LOCK_MS, () => late.writer.create('issues', { id: 'under-lock', title: 'x' }), new Promise<void>((r) => (reported = r)));
    await delay(200);
    const daemon = spawnAgent(tmp.dir, late.path, hub, TUNING);
    daemons.push(daemon);
    // It waits (the app holds the database) and says so, without exiting.
    try {
      await eventually(() => /held the database's write lock/.test(daemon.stderr()), 'the daemon to report the lock', 30_000, 100);
      expectAlive(daemon);
    } finally {
      reported();
    }
    await lock;
    await quiesce(hub, devices, 30_000);
    await checkConverged(hub, devices, tmp.dir);
    expect(late.writer.row('issues', 'from-remote')).toMatchObject({ title: 'already on the hub' });
    expectAlive(daemon);
    await stopDaemon(daemon);
  }, 90_000);

  it('restarts while the app holds an 8 s write lock, and again while it writes beside an open read transaction', async () => {
    devices = makeDevices(tmp.dir, hub, ['app', 'remote']);
    const [app, remote] = devices as [Device, Device];
    await remote.start();
    const first = spawnAgent(tmp.dir, app.path, hub, TUNING);
    daemons.push(first);
    app.writer.create('issues', { id: 'a-1', title: 'first run' });
    await quiesce(hub, devices, 20_000);
    await stopDaemon(first);

    // Restart under a write lock: waits, and `agent status` says it runs and waits.
    let reported!: () => void;
    const lock = holdWriteLock(app.writer, LOCK_MS, () => app.writer.create('issues', { id: 'a-2', title: 'under lock' }), new Promise<void>((r) => (reported = r)));
    remote.writer.create('issues', { id: 'r-2', title: 'while the app held its lock' });
    const second = spawnAgent(tmp.dir, app.path, hub, TUNING);
    daemons.push(second);
    try {
      await eventually(() => readStatus(app.writer.db).waitingForLock !== null, 'status to report the wait', 30_000, 100);
      expect(readStatus(app.writer.db)).toMatchObject({ running: true });
    } finally {
      reported();
    }
    await lock;
    await quiesce(hub, devices, 30_000);
    await checkConverged(hub, devices, tmp.dir);
    expectAlive(second);
    await stopDaemon(second);

    // Restart beside an open read transaction while the app keeps writing.
    const writing = (async () => {
      for (let i = 0; i < 15; i++) {
        app.writer.create('issues', { id: `a-3-${i}`, title: 'beside a reader' });
        await delay(300);
      }
    })();
    const reading = holdReadTransaction(app.path, 6_000);
    const third = spawnAgent(tmp.dir, app.path, hub, TUNING);
    daemons.push(third);
    await Promise.all([writing, reading]);
    await quiesce(hub, devices, 30_000);
    await checkConverged(hub, devices, tmp.dir);
    expectAlive(third);
    await stopDaemon(third);
  }, 90_000);
});
