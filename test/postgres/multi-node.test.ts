// Several hub nodes on one PostgreSQL: seqs stay gap-free across nodes, every commit reaches the
// devices of every node at once, a node that loses its LISTEN connection catches up, and a node
// that cannot reach PostgreSQL refuses pushes (store_unavailable) and says so on /readyz.
// Runs in the "postgres" vitest project only (a real cluster; the outage test starts its own).
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PostgresEventStore } from '../../hub/store/postgres.ts';
import { MIGRATIONS } from '../../hub/store/postgres-schema.ts';
import { ErrorCode } from '../../shared/errors.ts';
import type { EventStore } from '../../hub/store/event-store.ts';
import { freshStoreLocation, initHubDb, openStoreAt, removeTempDirs, runCli, spawnHub, startHub, type SpawnedHub, type TestHub } from '../kit/hub.ts';
import { createDatabase, startCluster, type Cluster } from '../kit/postgres.ts';
import { closeAllClients, eventually, makeEvents, range, SyncClient, syncUrl, upgradeRefusal } from '../kit/ws-client.ts';

const hubs: TestHub[] = [];
const procs: SpawnedHub[] = [];
afterEach(async () => {
  await closeAllClients();
  for (const h of hubs.splice(0)) await h.close();
  for (const p of procs.splice(0)) await p.stop();
});
afterAll(() => removeTempDirs());

/** Two (or more) hub nodes, in this process, on one fresh database; the first creates project p1 and a token. */
async function nodes(n: number, url?: string): Promise<{ url: string; token: string; nodes: TestHub[] }> {
  const location = url ?? (await freshStoreLocation());
  const first = await startHub({ dbPath: location });
  hubs.push(first);
  const rest: TestHub[] = [];
  for (let i = 1; i < n; i++) {
    const h = await startHub({ dbPath: location, project: null });
    hubs.push(h);
    rest.push(h);
  }
  return { url: location, token: first.token, nodes: [first, ...rest] };
}

/** Two real `synchub hub serve --postgres` processes on one fresh database, with project p1 and a token. */
async function processNodes(): Promise<{ token: string; store: EventStore; nodes: SpawnedHub[] }> {
  const location = await freshStoreLocation();
  const token = await initHubDb(location);
  const store = await openStoreAt(location);
  cleanupStores.push(store);
  const started = [await spawnHub(location), await spawnHub(location)];
  procs.push(...started);
  return { token, store, nodes: started };
}
const cleanupStores: EventStore[] = [];
afterEach(async () => {
  for (const s of cleanupStores.splice(0)) await s.close();
});

async function readyz(h: TestHub): Promise<number> {
  return (await fetch(`http://127.0.0.1:${h.port}/readyz`)).status;
}

describe('several hub nodes on one PostgreSQL', () => {
  it('fans every commit out to the devices of every node, gap-free, while both nodes (processes) take pushes', async () => {
    const { token, store, nodes: [a, b] } = await processNodes();
    const readers = [
      await SyncClient.open(a!.url, 'p1', token, 'reader-a', 0, { keepEvents: false }),
      await SyncClient.open(b!.url, 'p1', token, 'reader-b', 0, { keepEvents: false }),
    ];
    const writers = await Promise.all(
      ['w-a1', 'w-a2', 'w-b1', 'w-b2'].map((d, i) => SyncClient.open((i < 2 ? a! : b!).url, 'p1', token, d, 0, { keepEvents: false })),
    );
    // Concurrent pushes through both nodes: the project row lock orders them.
    const perWriter = 400;
    await Promise.all(
      writers.map(async (w) => {
        for (let batch = 0; batch < perWriter / 50; batch++) await w.push(batch + 1, makeEvents(1 + batch * 50, 50));
      }),
    );
    const head = 4 * perWriter;
    for (const r of [...readers, ...writers]) {
      await r.waitForSeq(head, 20_000);
      expect(r.seqs).toEqual(range(1, head));
    }
    expect(await store.headSeq('p1')).toBe(head);
  });

  it('answers a re-push on the other node (process) as a duplicate with the original seq', async () => {
    const { token, nodes: [a, b] } = await processNodes();
    const first = await (await SyncClient.open(a!.url, 'p1', token, 'dev-1')).push(1, makeEvents(1, 3));
    const again = await (await SyncClient.open(b!.url, 'p1', token, 'dev-1')).push(1, makeEvents(1, 3));
    expect(again.acks).toEqual([]);
    expect(again.rejected.map((r) => r.serverSeq)).toEqual(first.acks.map((x) => x.serverSeq));
  });

  it('a device whose cursor is past what its node has heard is not refused as cursor_ahead', async () => {
    const { token, nodes: [a, b] } = await nodes(2);
    const w = await SyncClient.open(a!.url, 'p1', token, 'w');
    const ack = await w.push(1, makeEvents(1, 5));
    // At once on node b, with the cursor node a just gave: b may not have heard the NOTIFY yet.
    const c = await SyncClient.connect(b!.url, 'p1', token);
    const welcome = await c.hello('w', ack.acks.at(-1)!.serverSeq);
    expect(welcome.headSeq).toBe(5);
    const more = await w.push(2, makeEvents(6, 1));
    await c.waitForSeq(more.acks[0]!.serverSeq);
    expect(c.seqs).toEqual([6]);
  });

  it('sees projects created and tokens revoked through another node', async () => {
    const { token, nodes: [a, b] } = await nodes(2);
    await a!.createProject('p2');
    const t2 = await a!.createToken('p2');
    const c = await SyncClient.open(b!.url, 'p2', t2, 'dev');
    expect((await c.push(1, makeEvents(1, 1))).acks).toHaveLength(1);
    await a!.store.revokeToken(/^shub_([0-9a-f]{16})_/.exec(token)![1]!, new Date().toISOString());
    expect((await upgradeRefusal(syncUrl(b!.url, 'p1'), { authorization: `Bearer ${token}` })).status).toBe(401);
  });

  it('a node that loses its LISTEN connection reconnects and delivers what it missed', async () => {
    const { url, token, nodes: [a, b] } = await nodes(2);
    const reader = await SyncClient.open(b!.url, 'p1', token, 'reader-b', 0, { keepEvents: false });
    const w = await SyncClient.open(a!.url, 'p1', token, 'w');
    await w.push(1, makeEvents(1, 10));
    await reader.waitForSeq(10);
    // Kill every LISTEN backend (both nodes'): commits made meanwhile are not heard.
    const admin = new pg.Client({ connectionString: url });
    admin.on('error', () => {});
    await admin.connect();
    try {
      const killed = await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()");
      expect(killed.rowCount).toBeGreaterThanOrEqual(2);
      await w.push(2, makeEvents(11, 10));
      await reader.waitForSeq(20, 15_000);
      expect(reader.seqs).toEqual(range(1, 20));
      await eventually(async () => (await readyz(b!)) === 200, 'node b ready again', 10_000);
      const after = await w.push(3, makeEvents(21, 1));
      await reader.waitForSeq(after.acks[0]!.serverSeq);
    } finally {
      await admin.end();
    }
  });

  it('migrates once when several nodes start at once', async () => {
    const url = await createDatabase(process.env.SYNCHUB_TEST_POSTGRES_URL!, 'migrate');
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresEventStore.open(url)));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const applied = (await client.query('SELECT version FROM synchub_migrations ORDER BY version')).rows;
      expect(applied).toEqual(MIGRATIONS.map((m) => ({ version: m.version })));
    } finally {
      await client.end();
      for (const s of stores) await s.close();
    }
  });

  it('the admin CLI refuses a bad or unreachable --postgres URL with one line, and works on a good one', async () => {
    const bad = await runCli(['hub', 'project', 'list', '--postgres', 'mysql://x']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    const down = await runCli(['hub', 'project', 'list', '--postgres', 'postgres://postgres:secret@127.0.0.1:1/none']);
    expect(down.code).not.toBe(0);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toContain('store_unavailable');
    expect(down.stderr).not.toContain('secret');
    const url = await freshStoreLocation();
    expect((await runCli(['hub', 'project', 'create', 'cli-p', '--postgres', url])).code).toBe(0);
    const list = await runCli(['hub', 'project', 'list', '--postgres', url]);
    expect(list.stdout).toMatch(/^cli-p\thead=0\t/);
  });
});

describe('a PostgreSQL outage', () => {
  let cluster: Cluster | null = null;
  afterAll(async () => cluster?.stop());

  it('refuses pushes with store_unavailable and reports 503 on /readyz; after it, carries on gap-free', async () => {
    cluster = await startCluster();
    const { token, nodes: [a, b] } = await nodes(2, await createDatabase(cluster.url));
    const reader = await SyncClient.open(b!.url, 'p1', token, 'reader', 0, { keepEvents: false });
    const w1 = await SyncClient.open(a!.url, 'p1', token, 'w');
    await w1.push(1, makeEvents(1, 5));
    await reader.waitForSeq(5);
    expect(await readyz(a!)).toBe(200);

    await cluster.halt();
    await eventually(async () => (await readyz(a!)) === 503, 'node a to report not ready', 10_000);
    expect(await readyz(b!)).toBe(503);
    w1.send({ type: 'push', batch: 2, events: makeEvents(6, 3) });
    await w1.waitForClose(10_000);
    expect(w1.errors.map((e) => e.code)).toEqual([ErrorCode.StoreUnavailable]);

    await cluster.start();
    await eventually(async () => (await readyz(a!)) === 200 && (await readyz(b!)) === 200, 'both nodes ready again', 20_000);
    const w2 = await SyncClient.open(a!.url, 'p1', token, 'w', 5);
    const ack = await w2.push(2, makeEvents(6, 3));
    expect(ack.acks.map((x) => x.serverSeq)).toEqual([6, 7, 8]);
    await reader.waitForSeq(8, 10_000);
    expect(reader.seqs).toEqual(range(1, 8));
  });

  it('restarted under load: nodes recover and every acked event is in the log exactly once, gap-free', async () => {
    cluster ??= await startCluster();
    const { token, nodes: [a, b] } = await nodes(2, await createDatabase(cluster.url));
    const acked = new Map<string, number>();
    let stop = false;
    // A device that pushes without pause through one node, reconnecting and re-sending what was
    // not acked (the hub's dedup answers a re-send with the original seq).
    const writer = async (node: TestHub, deviceId: string) => {
      let next = 1;
      let batch = 0;
      while (!stop) {
        let c: SyncClient | null = null;
        try {
          c = await SyncClient.open(node.url, 'p1', token, deviceId, 0, { keepEvents: false });
          while (!stop) {
            const events = makeEvents(next, 20);
            const ack = await c.push(++batch, events, 5_000);
            for (const x of ack.acks) acked.set(`${deviceId}/${x.clientActionId}`, x.serverSeq);
            for (const r of ack.rejected) acked.set(`${deviceId}/${r.clientActionId}`, r.serverSeq!);
            next += 20;
          }
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        } finally {
          c?.terminate();
        }
      }
    };
    const running = [writer(a!, 'load-a'), writer(b!, 'load-b')];
    try {
      await eventually(() => acked.size >= 200, 'some load acked first', 10_000);
      await cluster.restart();
      const before = acked.size;
      await eventually(() => acked.size >= before + 400, 'pushes acked again after the restart', 30_000);
    } finally {
      stop = true;
      await Promise.all(running);
    }

    const store = a!.store;
    {
      const head = await store.headSeq('p1');
      const log = (await store.readAfter('p1', 0, 1_000_000)).map((e) => JSON.parse(e.json) as { serverSeq: number; deviceId: string; clientActionId: number });
      expect(log.map((e) => e.serverSeq)).toEqual(range(1, head));
      const keys = log.map((e) => `${e.deviceId}/${e.clientActionId}`);
      expect(new Set(keys).size).toBe(keys.length);
      const bySeq = new Map(log.map((e) => [e.serverSeq, `${e.deviceId}/${e.clientActionId}`]));
      for (const [key, seq] of acked) expect(bySeq.get(seq), key).toBe(key);
      const reader = await SyncClient.open(b!.url, 'p1', token, 'reader-after', 0, { keepEvents: false });
      await reader.waitForSeq(head, 20_000);
      expect(reader.seqs).toEqual(range(1, head));
    }
  });
});
