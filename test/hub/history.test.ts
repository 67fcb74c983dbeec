// The hub's history features with raw clients (SQLite store only: the PostgreSQL store does not have
// them yet, and the "postgres" test project skips these): chained digests in events frames, the hello checks
// (cursor_diverged, cursor_too_old, cursor_ahead), snapshot pages read from one consistent state while
// pushes commit, compaction keeping dedup keys, and `hub backup` / `hub compact` on a served file.
import { existsSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chainDigest, EMPTY_DIGEST } from '../../shared/digest.ts';
import { serializeEvent } from '../../hub/store/serialize.ts';
import { SqliteEventStore } from '../../hub/store/sqlite.ts';
import { runCli, startHub, usingPostgres, type TestHub } from '../kit/hub.ts';
import { loadHistory, randomHistory, readSnapshot } from '../kit/history.ts';
import { closeAllClients, eventually, makeEvents, SyncClient } from '../kit/ws-client.ts';

let hub: TestHub;
/** The hub's store: the history features are SQLite's (PostgreSQL does not have them yet). */
let store: SqliteEventStore;

beforeEach(async () => {
  hub = await startHub();
  store = hub.store as SqliteEventStore;
});

afterEach(async () => {
  await closeAllClients();
  await hub.close();
});

function hello(c: SyncClient, deviceId: string, afterSeq: number, extra: Record<string, unknown> = {}): void {
  c.send({ type: 'hello', protocol: 1, deviceId, afterSeq, ...extra });
}

describe.skipIf(usingPostgres())('chained digests', () => {
  it('each events frame carries the digest of the log through its last event', async () => {
    await loadHistory(hub.store, hub.project, randomHistory(1, 300, 20), 'loader', 70);
    const c = await SyncClient.open(hub.url, hub.project, hub.token, 'reader', 0);
    await c.waitForSeq(300);
    let digest = EMPTY_DIGEST;
    const bySeq = new Map<number, string>();
    for (const e of await store.readAfter(hub.project, 0, 1000)) {
      digest = chainDigest(digest, e.json);
      expect(e.digest).toBe(digest);
      bySeq.set(e.seq, digest);
    }
    const frames = c.inbox.filter((f) => f.type === 'events');
    expect(frames.length).toBeGreaterThan(0);
    for (const f of frames) if (f.type === 'events') expect(f.throughDigest).toBe(bySeq.get(f.throughSeq));
    expect((await store.logInfo(hub.project)).headDigest).toBe(digest);
  });
});

describe.skipIf(usingPostgres())('hello checks', () => {
  beforeEach(async () => {
    await loadHistory(hub.store, hub.project, makeEvents(1, 50));
  });

  it('streams when afterDigest matches, and as before when it is absent', async () => {
    const at20 = (await store.digestAt(hub.project, 20))!;
    const c = await SyncClient.connect(hub.url, hub.project, hub.token);
    hello(c, 'd1', 20, { afterDigest: at20 });
    await c.waitForSeq(50);
    expect(c.seqs[0]).toBe(21);
    const old = await SyncClient.open(hub.url, hub.project, hub.token, 'd2', 20);
    await old.waitForSeq(50);
    expect(old.errors).toEqual([]);
  });

  it('answers cursor_diverged when the log at afterSeq is another one, and changes nothing', async () => {
    const c = await SyncClient.connect(hub.url, hub.project, hub.token);
    hello(c, 'd1', 20, { afterDigest: 'f'.repeat(64) });
    const err = await c.nextFrame('error');
    expect(err.code).toBe('cursor_diverged');
    await c.waitForClose();
    expect(c.seqs).toEqual([]);
    expect(await store.headSeq(hub.project)).toBe(50);
  });

  it('refuses a malformed afterDigest as an invalid frame', async () => {
    const c = await SyncClient.connect(hub.url, hub.project, hub.token);
    hello(c, 'd1', 20, { afterDigest: 'not-a-digest' });
    expect((await c.nextFrame('error')).code).toBe('invalid_frame');
  });

  it('answers cursor_ahead for a cursor past the head, also with bootstrap', async () => {
    const c = await SyncClient.connect(hub.url, hub.project, hub.token);
    hello(c, 'd1', 51, { bootstrap: true });
    expect((await c.nextFrame('error')).code).toBe('cursor_ahead');
  });

  it('after compaction: cursor_too_old for an old cursor, a snapshot with bootstrap, a stream from the compaction point on', async () => {
    const r = await store.compact(hub.project, 10);
    expect(r).toEqual({ dropped: 40, baseSeq: 40 });
    const old = await SyncClient.connect(hub.url, hub.project, hub.token);
    hello(old, 'd1', 39);
    expect((await old.nextFrame('error')).code).toBe('cursor_too_old');
    const fresh = await SyncClient.connect(hub.url, hub.project, hub.token);
    hello(fresh, 'd2', 0);
    expect((await fresh.nextFrame('error')).code).toBe('cursor_too_old');

    const boot = await SyncClient.connect(hub.url, hub.project, hub.token);
    const pages = await readSnapshot(boot, 'd3', 12);
    expect(pages.at(-1)).toMatchObject({ throughSeq: 50, done: true, throughDigest: (await store.logInfo(hub.project)).headDigest });
    expect(pages.flatMap((p) => p.rows).map((r) => r.entityId).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `i-${i + 1}`).sort());

    const at40 = (await store.digestAt(hub.project, 40))!;
    const edge = await SyncClient.connect(hub.url, hub.project, hub.token);
    hello(edge, 'd4', 40, { afterDigest: at40 });
    await edge.waitForSeq(50);
    expect(edge.seqs[0]).toBe(41);
  });

  it('compaction keeps the dedup keys: a re-push of a dropped event is a duplicate with its seq', async () => {
    await store.compact(hub.project, 5);
    const c = await SyncClient.open(hub.url, hub.project, hub.token, 'loader', 50);
    const ack = await c.push(1, makeEvents(3, 2));
    expect(ack.acks).toEqual([]);
    expect(ack.rejected).toEqual([
      { clientActionId: 3, reason: 'duplicate', serverSeq: 3 },
      { clientActionId: 4, reason: 'duplicate', serverSeq: 4 },
    ]);
    expect(await store.headSeq(hub.project)).toBe(50);
  });
});

describe.skipIf(usingPostgres())('snapshot', () => {
  it('pages are byte-bounded, hold every live entity (soft-deleted ones with deleted_at) and end with the digest; the stream follows from S+1', async () => {
    const history = randomHistory(7, 4000, 300);
    await loadHistory(hub.store, hub.project, history);
    const c = await SyncClient.connect(hub.url, hub.project, hub.token);
    const pages = await readSnapshot(c, 'boot', 0);
    expect(pages.length).toBeGreaterThan(1);
    for (const p of pages) expect(p.throughSeq).toBe(4000);
    expect(pages.slice(0, -1).every((p) => !p.done && p.throughDigest === undefined)).toBe(true);
    expect(pages.at(-1)!.throughDigest).toBe((await store.digestAt(hub.project, 4000))!);
    const rows = pages.flatMap((p) => p.rows);
    expect(new Set(rows.map((r) => `${r.entityType}/${r.entityId}`)).size).toBe(rows.length);
    expect(rows.some((r) => typeof r.data.deleted_at === 'string')).toBe(true);
    expect(rows.every((r) => r.entityType === 'issues' || r.entityType === 'comments')).toBe(true);

    // Live events after the snapshot arrive on the same socket, from S+1.
    const p = await SyncClient.open(hub.url, hub.project, hub.token, 'pusher', 4000);
    await p.push(1, makeEvents(900_001, 3));
    await c.waitForSeq(4003);
    expect(c.seqs).toEqual([4001, 4002, 4003]);
  });

  it('is one consistent state while pushes keep committing', async () => {
    await loadHistory(hub.store, hub.project, randomHistory(8, 3000, 2000));
    const c = await SyncClient.connect(hub.url, hub.project, hub.token);
    // The device reads slowly: hold its socket while others commit changes to the same entities.
    hello(c, 'boot', 0, { bootstrap: true });
    await c.nextFrame('welcome');
    c.pause();
    const p = await SyncClient.open(hub.url, hub.project, hub.token, 'pusher', 3000);
    const more = randomHistory(9, 1000, 2000, 100_000);
    for (let i = 0; i < more.length; i += 250) await p.push(i, more.slice(i, i + 250));
    c.resume();
    const pages: import('../../shared/protocol.ts').SnapshotFrame[] = [];
    for (;;) {
      const page = await c.nextFrame('snapshot');
      pages.push(page);
      if (page.done) break;
    }
    expect(pages.at(-1)!.throughSeq).toBe(3000);
    // The snapshot equals the state of a store that only ever saw the first 3000 events.
    const dir = (await import('../kit/hub.ts')).makeTempDir();
    const only = new SqliteEventStore(`${dir}/only.db`);
    await only.createProject('p1');
    await loadHistory(only, 'p1', randomHistory(8, 3000, 2000));
    const expected = (await readAll(only)).sort();
    await only.close();
    const got = pages.flatMap((pg) => pg.rows).map((r) => JSON.stringify([r.entityType, r.entityId, r.data])).sort();
    expect(got).toEqual(expected);
    await c.waitForSeq(4000);
    expect(c.seqs[0]).toBe(3001);
  });
});

/** Every state row of p1, as the snapshot sends them. */
async function readAll(store: SqliteEventStore): Promise<string[]> {
  const snap = await store.openSnapshot('p1');
  const out: string[] = [];
  for (;;) {
    const page = await snap.next(64 * 1024);
    for (const r of page.rows) {
      const row = JSON.parse(r.json) as { entityType: string; entityId: string; data: unknown };
      out.push(JSON.stringify([row.entityType, row.entityId, row.data]));
    }
    if (page.done) return out;
  }
}

describe.skipIf(usingPostgres())('hub backup and hub compact (CLI, on a file the hub is serving)', () => {
  it('backup writes one consistent file, no -wal, that a hub serves as it was', async () => {
    await loadHistory(hub.store, hub.project, randomHistory(3, 2000, 100));
    const to = `${hub.dir}/backup.db`;
    const r = await runCli(['hub', 'backup', '--to', to, '--db', hub.dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(`${to}-wal`)).toBe(false);
    const copy = new SqliteEventStore(to);
    expect(await copy.logInfo('p1')).toEqual(await store.logInfo('p1'));
    await copy.close();
    const again = await runCli(['hub', 'backup', '--to', to, '--db', hub.dbPath]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already exists/);
  });

  it('compact drops old events but keeps the head, the state and the dedup keys; bad input changes nothing', async () => {
    await loadHistory(hub.store, hub.project, randomHistory(4, 3000, 100));
    const before = await store.logInfo('p1');
    const bad = await runCli(['hub', 'compact', '--project', 'p1', '--keep-events', '-3', '--db', hub.dbPath]);
    expect(bad.code).toBe(2);
    const unknown = await runCli(['hub', 'compact', '--project', 'nope', '--keep-events', '3', '--db', hub.dbPath]);
    expect(unknown.code).toBe(1);
    expect(await store.logInfo('p1')).toEqual(before);
    const r = await runCli(['hub', 'compact', '--project', 'p1', '--keep-events', '500', '--db', hub.dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/dropped 2500 events/);
    expect(await store.logInfo('p1')).toMatchObject({ headSeq: 3000, headDigest: before.headDigest, baseSeq: 2500 });
    expect((await store.readAfter('p1', 2500, 10))[0]!.seq).toBe(2501);
    expect(statSync(hub.dbPath).size).toBeGreaterThan(0);
  });
});

describe.skipIf(usingPostgres())('retention on serve', () => {
  it('--retain-events keeps each project to its newest N events while the hub serves', async () => {
    const h = await startHub({ options: { retainEvents: 30, retainEveryMs: 50 } });
    try {
      const c = await SyncClient.open(h.url, h.project, h.token, 'd1', 0);
      for (let i = 0; i < 4; i++) await c.push(i, makeEvents(i * 50 + 1, 50));
      await eventually(async () => (await (h.store as SqliteEventStore).logInfo(h.project)).baseSeq === 170, 'the log compacted to its newest 30 events');
      expect((await h.store.readAfter(h.project, 170, 100)).map((e) => e.seq)).toEqual(Array.from({ length: 30 }, (_, i) => 171 + i));
      // The device streaming at the head is unaffected; a new one bootstraps.
      const boot = await SyncClient.connect(h.url, h.project, h.token);
      const pages = await readSnapshot(boot, 'd2', 0);
      expect(pages.flatMap((p) => p.rows)).toHaveLength(200);
    } finally {
      await h.close();
    }
  });

  it('refuses a --retain-events that is not a whole number, writing nothing', async () => {
    const dir = (await import('../kit/hub.ts')).makeTempDir();
    const r = await runCli(['hub', 'serve', '--retain-events', 'lots', '--db', `${dir}/hub.db`, '--port', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/retain-events/);
    expect(existsSync(`${dir}/hub.db`)).toBe(false);
  });
});

describe.skipIf(usingPostgres())('schema upgrade', () => {
  it('a hub file from before history (version 0) gets its digests and state rebuilt from its log at open', async () => {
    const dir = (await import('../kit/hub.ts')).makeTempDir();
    const path = `${dir}/old.db`;
    const events = randomHistory(5, 500, 40);
    // The version-0 schema, as the previous release created it.
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    old.exec(`CREATE TABLE projects (name TEXT PRIMARY KEY, head_seq INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
      CREATE TABLE events (project TEXT NOT NULL, server_seq INTEGER NOT NULL, device_id TEXT NOT NULL, session_id TEXT NOT NULL,
        client_action_id INTEGER NOT NULL, body TEXT NOT NULL, UNIQUE (project, server_seq), UNIQUE (project, device_id, session_id, client_action_id));
      CREATE TABLE tokens (id TEXT PRIMARY KEY, project TEXT NOT NULL REFERENCES projects(name), role TEXT NOT NULL, hash TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT);`);
    old.prepare("INSERT INTO projects VALUES ('p1', ?, '2026-01-01T00:00:00Z')").run(events.length);
    const insert = old.prepare('INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)');
    events.forEach((e, i) => insert.run('p1', i + 1, 'loader', e.sessionId, e.clientActionId, serializeEvent(i + 1, 'loader', '2026-01-01T00:00:00.000Z', e)));
    old.close();

    const upgraded = new SqliteEventStore(path);
    const fresh = new SqliteEventStore(`${dir}/fresh.db`);
    await fresh.createProject('p1');
    try {
      // Digests chained over the stored JSON; the state equals that of the same log pushed into a new store.
      await loadHistory(fresh, 'p1', events, 'loader', 500);
      const a = await upgraded.readAfter('p1', 0, 1000);
      let digest = EMPTY_DIGEST;
      for (const e of a) expect(e.digest).toBe((digest = chainDigest(digest, e.json)));
      expect((await upgraded.logInfo('p1')).headDigest).toBe(digest);
      expect((await readAll(upgraded)).sort()).toEqual((await readAll(fresh)).sort());
    } finally {
      await upgraded.close();
      await fresh.close();
    }
  });
});
