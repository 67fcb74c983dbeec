// Two real hub processes (`synchub hub serve --postgres`) and real agent daemons: devices on
// different nodes converge, and when one node is killed (-9) its agents move to the other
// (`--hub a,b`) with nothing acked lost. Runs in the "postgres" vitest project only.
import { afterEach, describe, expect, it } from 'vitest';
import { openStoreAt, freshStoreLocation, initHubDb, removeTempDirs, spawnHub, type SpawnedHub } from '../kit/hub.ts';
import { AppWriter, dumpTables, makeAppDb, replayInto, tempDir, type TempDir } from '../kit/app-db.ts';
import { hubLog, spawnAgent } from '../kit/devices.ts';
import { eventually } from '../kit/ws-client.ts';
import { openAppDb } from '../../agent/app-db.ts';
import type { EventStore } from '../../hub/store/event-store.ts';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  removeTempDirs();
});

function statusOf(path: string): { cursor: number; pending: number } | null {
  const db = openAppDb(path);
  try {
    const s = db.prepare('SELECT last_pulled_server_seq AS cursor FROM sync_state LIMIT 1').get() as { cursor: number } | undefined;
    const p = db.prepare('SELECT count(*) AS n FROM action_log WHERE synced_at IS NULL AND undone = 0').get() as { n: number };
    return s ? { cursor: s.cursor, pending: p.n } : null;
  } catch {
    return null; // the agent has not prepared its tables yet
  } finally {
    db.close();
  }
}

async function converged(store: EventStore, paths: string[], tmp: TempDir): Promise<void> {
  await eventually(
    async () => {
      const head = await store.headSeq('p1');
      return paths.every((p) => {
        const s = statusOf(p);
        return s !== null && s.pending === 0 && s.cursor === head;
      });
    },
    'every device to push everything and reach the head',
    45_000,
    50,
  );
  const log = await hubLog(store, 'p1');
  expect(log.map((e) => e.serverSeq)).toEqual(log.map((_, i) => i + 1));
  const replay = replayInto(tmp.path(`replay-${Date.now()}.db`), log);
  const expected = JSON.stringify(dumpTables(replay));
  replay.close();
  for (const p of paths) {
    const db = openAppDb(p);
    try {
      expect(JSON.stringify(dumpTables(db)), p).toBe(expected);
    } finally {
      db.close();
    }
  }
}

describe('two hub processes on one PostgreSQL', () => {
  it('agents on different nodes converge; after kill -9 of a node its agent moves to the other, nothing acked lost', async () => {
    const tmp = tempDir('synchub-two-nodes-');
    cleanups.push(() => tmp.cleanup());
    const location = await freshStoreLocation();
    const token = await initHubDb(location);
    const store = await openStoreAt(location);
    cleanups.push(() => store.close());
    const a: SpawnedHub = await spawnHub(location);
    const b: SpawnedHub = await spawnHub(location);
    cleanups.push(() => a.stop(), () => b.stop());

    const paths = ['dev-a', 'dev-b'].map((n) => tmp.path(`${n}.db`));
    for (const p of paths) makeAppDb(p);
    const writers = paths.map((p, i) => new AppWriter(p, `ses-${i}`));
    cleanups.push(() => writers.forEach((w) => w.close()));
    // dev-a talks to node a first (then b); dev-b only to node b.
    const agentA = spawnAgent(tmp.dir, paths[0]!, { url: `${a.url},${b.url}`, project: 'p1', token, store });
    const agentB = spawnAgent(tmp.dir, paths[1]!, { url: b.url, project: 'p1', token, store });
    cleanups.push(
      () => agentA.proc.kill('SIGKILL'),
      () => agentB.proc.kill('SIGKILL'),
    );
    for (let i = 0; i < 30; i++) {
      writers[0]!.create('issues', { id: `a-${i}`, title: `from a ${i}`, status: 'open' });
      writers[1]!.create('issues', { id: `b-${i}`, title: `from b ${i}`, status: 'open' });
    }
    await converged(store, paths, tmp);

    // Node a dies; dev-a keeps writing and must reach everyone through node b.
    a.kill('SIGKILL');
    await a.exited;
    for (let i = 0; i < 30; i++) {
      writers[0]!.update('issues', `b-${i}`, { title: `edited on a ${i}` });
      writers[1]!.create('comments', { id: `c-${i}`, issue_id: `a-${i}`, body: `comment ${i}` });
    }
    await converged(store, paths, tmp);
    expect(writers[1]!.row('issues', 'b-29')!.title).toBe('edited on a 29');
    expect(agentA.proc.exitCode).toBeNull();
    expect(agentB.proc.exitCode).toBeNull();
  });
});
