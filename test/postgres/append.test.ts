// PostgresEventStore.append, the store alone: one statement (synchub_append) per group commit.
// Duplicates inside one commit and against stored events, several projects in one commit with
// their NOTIFYs, an unknown project, concurrent commits from several pools (nodes), and the
// migration of a version-2 database that already holds events. Runs in the "postgres" project.
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresEventStore } from '../../hub/store/postgres.ts';
import { MIGRATIONS } from '../../hub/store/postgres-schema.ts';
import { serializeEvent } from '../../hub/store/serialize.ts';
import { SyncError } from '../../shared/errors.ts';
import { createDatabase } from '../kit/postgres.ts';
import { eventually, makeEvents, range } from '../kit/ws-client.ts';

const TS = '2026-01-01T00:00:00.000Z';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function freshUrl(): Promise<string> {
  return createDatabase(process.env.SYNCHUB_TEST_POSTGRES_URL!, 'append');
}

async function openStore(url: string): Promise<PostgresEventStore> {
  const store = await PostgresEventStore.open(url);
  cleanups.push(() => store.close());
  return store;
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  cleanups.push(() => client.end());
  return client;
}

/** Every stored row of a project, in seq order: the dedup key and the body. */
async function rows(client: pg.Client, project: string): Promise<{ seq: number; key: string; body: string }[]> {
  const r = await client.query<{ server_seq: string; device_id: string; session_id: string; client_action_id: string; body: string }>(
    'SELECT server_seq, device_id, session_id, client_action_id, body FROM events WHERE project = $1 ORDER BY server_seq',
    [project],
  );
  return r.rows.map((x) => ({ seq: Number(x.server_seq), key: `${x.device_id}/${x.session_id}/${x.client_action_id}`, body: x.body }));
}

describe('PostgresEventStore.append', () => {
  it('answers duplicates, within one commit and against stored events, with the original seq; stores the JSON it returns', async () => {
    const url = await freshUrl();
    const store = await openStore(url);
    await store.createProject('p1');
    const [a1, a2, a3] = makeEvents(1, 3);
    const first = await store.append([{ project: 'p1', deviceId: 'd1', events: [a1!, a2!] }], TS);
    expect(first).toEqual([
      [
        { stored: true, seq: 1, json: serializeEvent(1, 'd1', TS, a1!) },
        { stored: true, seq: 2, json: serializeEvent(2, 'd1', TS, a2!) },
      ],
    ]);
    // a3 twice in one group and once more in a later group; a2 again (stored already); a1 from
    // another device (a different key); and the given payload text is the one stored.
    const payload = JSON.stringify(a3!.payload);
    const out = await store.append(
      [
        { project: 'p1', deviceId: 'd1', events: [a3!, a2!, a3!], payloadJson: [payload, JSON.stringify(a2!.payload), payload] },
        { project: 'p1', deviceId: 'd2', events: [a1!] },
        { project: 'p1', deviceId: 'd1', events: [a3!, a1!] },
      ],
      TS,
    );
    expect(out).toEqual([
      [{ stored: true, seq: 3, json: serializeEvent(3, 'd1', TS, a3!, payload) }, { stored: false, seq: 2 }, { stored: false, seq: 3 }],
      [{ stored: true, seq: 4, json: serializeEvent(4, 'd2', TS, a1!) }],
      [
        { stored: false, seq: 3 },
        { stored: false, seq: 1 },
      ],
    ]);
    const client = await connect(url);
    const stored = await rows(client, 'p1');
    expect(stored.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(stored.map((r) => r.body)).toEqual([...first[0]!, out[0]![0]!, out[1]![0]!].map((o) => (o.stored ? o.json : '')));
    expect(await store.headSeq('p1')).toBe(4);
    // A commit of duplicates only stores nothing and leaves the head alone.
    expect(await store.append([{ project: 'p1', deviceId: 'd1', events: [a1!, a3!, a1!] }], TS)).toEqual([
      [
        { stored: false, seq: 1 },
        { stored: false, seq: 3 },
        { stored: false, seq: 1 },
      ],
    ]);
    expect(await store.headSeq('p1')).toBe(4);
  });

  it('numbers each project of one commit in array order and NOTIFYs each new head in the same transaction', async () => {
    const url = await freshUrl();
    const store = await openStore(url);
    for (const p of ['p1', 'p2', 'p3']) await store.createProject(p);
    await store.append([{ project: 'p2', deviceId: 'd', events: makeEvents(1, 2) }], TS);
    const listener = await connect(url);
    const heard: string[] = [];
    listener.on('notification', (m) => heard.push(m.payload!));
    await listener.query('LISTEN synchub_commits');

    const out = await store.append(
      [
        { project: 'p2', deviceId: 'd', events: makeEvents(10, 2) },
        { project: 'p1', deviceId: 'd', events: makeEvents(10, 3) },
        { project: 'p2', deviceId: 'e', events: makeEvents(10, 1) },
        { project: 'p3', deviceId: 'd', events: makeEvents(1, 1) },
        { project: 'p2', deviceId: 'd', events: makeEvents(1, 1) }, // a duplicate only: p2 still moves
      ],
      TS,
    );
    expect(out.map((g) => g.map((o) => `${o.stored ? '+' : '='}${o.seq}`))).toEqual([['+3', '+4'], ['+1', '+2', '+3'], ['+5'], ['+1'], ['=1']]);
    await eventually(() => heard.length >= 3, 'the notifications');
    expect(heard.sort()).toEqual(['1:p3', '3:p1', '5:p2']);
    // A commit that stores nothing notifies nobody.
    await store.append([{ project: 'p1', deviceId: 'd', events: makeEvents(10, 1) }], TS);
    await store.append([{ project: 'p3', deviceId: 'd', events: makeEvents(2, 1) }], TS);
    await eventually(() => heard.length >= 4, 'the next notification');
    expect(heard.slice(3)).toEqual(['2:p3']);
    expect((await rows(listener, 'p2')).map((r) => r.seq)).toEqual(range(1, 5));
  });

  it('refuses a commit naming an unknown project with unknown_project and stores nothing of it', async () => {
    const url = await freshUrl();
    const store = await openStore(url);
    await store.createProject('p1');
    const refused = store.append(
      [
        { project: 'p1', deviceId: 'd', events: makeEvents(1, 2) },
        { project: 'zz', deviceId: 'd', events: makeEvents(1, 1) },
        { project: 'nope', deviceId: 'd', events: [] },
      ],
      TS,
    );
    await expect(refused).rejects.toBeInstanceOf(SyncError);
    await expect(refused).rejects.toMatchObject({ code: 'unknown_project', message: 'project nope does not exist' });
    expect(await store.headSeq('p1')).toBe(0);
    expect(await store.readAfter('p1', 0, 10)).toEqual([]);
    // The pool's connection is fine afterwards.
    expect((await store.append([{ project: 'p1', deviceId: 'd', events: makeEvents(1, 1) }], TS))[0]![0]!.seq).toBe(1);
  });

  it('several pools (nodes) committing to the same projects at once: no deadlock, gap-free seqs, each key stored once', async () => {
    const url = await freshUrl();
    const stores = [await openStore(url), await openStore(url), await openStore(url)];
    await stores[0]!.createProject('a');
    await stores[0]!.createProject('b');
    // Every store pushes the same keys (each device's events, re-sent by every node) to both
    // projects, in opposite project orders: the later commits must answer them as duplicates.
    const results = await Promise.all(
      stores.flatMap((store, n) =>
        range(0, 19).map((i) => {
          const groups = [
            { project: 'a', deviceId: `d${i % 4}`, events: makeEvents(1 + 5 * i, 5) },
            { project: 'b', deviceId: `d${i % 4}`, events: makeEvents(1 + 5 * i, 5) },
          ];
          return store.append(n % 2 ? groups.reverse() : groups, TS).then((out) => (n % 2 ? out.reverse() : out));
        }),
      ),
    );
    const client = await connect(url);
    for (const [g, project] of ['a', 'b'].entries()) {
      const log = await rows(client, project);
      expect(log.map((r) => r.seq)).toEqual(range(1, 100));
      expect(new Set(log.map((r) => r.key)).size).toBe(100);
      const byKeySeq = new Map(log.map((r) => [r.seq, r]));
      let storedNow = 0;
      for (const out of results) {
        for (const o of out[g]!) {
          expect(byKeySeq.has(o.seq)).toBe(true);
          if (o.stored) {
            storedNow++;
            expect(byKeySeq.get(o.seq)!.body).toBe(o.json);
          }
        }
      }
      expect(storedNow).toBe(100);
      expect(await stores[1]!.headSeq(project)).toBe(100);
    }
  });

  it('migrates a version-2 database holding events to version 3 and carries on from its heads', async () => {
    const url = await freshUrl();
    const client = await connect(url);
    // The database as a node of the previous version left it.
    await client.query('CREATE TABLE synchub_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    for (const m of MIGRATIONS.filter((x) => x.version <= 2)) {
      await client.query(m.sql);
      await client.query('INSERT INTO synchub_migrations (version, applied_at) VALUES ($1, $2)', [m.version, TS]);
    }
    const old = makeEvents(1, 3);
    await client.query("INSERT INTO projects (name, head_seq, created_at) VALUES ('p1', 3, $1)", [TS]);
    for (const [i, e] of old.entries()) {
      await client.query('INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body) VALUES ($1, $2, $3, $4, $5, $6)', [
        'p1',
        i + 1,
        'd',
        e.sessionId,
        e.clientActionId,
        serializeEvent(i + 1, 'd', TS, e),
      ]);
    }

    const store = await openStore(url);
    const versions = (await client.query<{ version: number }>('SELECT version FROM synchub_migrations ORDER BY version')).rows.map((r) => r.version);
    expect(versions).toEqual(MIGRATIONS.map((m) => m.version));
    expect(versions).toContain(3);
    const out = await store.append([{ project: 'p1', deviceId: 'd', events: makeEvents(2, 3) }], TS);
    expect(out[0]!.map((o) => `${o.stored ? '+' : '='}${o.seq}`)).toEqual(['=2', '=3', '+4']);
    expect((await store.readAfter('p1', 0, 10)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(await store.headSeq('p1')).toBe(4);
  });
});
