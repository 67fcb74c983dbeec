// Test kit for history: seeded streams of events over a few entities (every action type, many updates
// per entity), written straight into a hub store, and snapshot frames read with a raw client.
import Database from 'better-sqlite3';
import { applyEffect, effectOf, RuleError, type Row } from '../../shared/apply-rules.ts';
import { chainDigest } from '../../shared/digest.ts';
import type { ActionType, PushEvent } from '../../shared/event.ts';
import { entityTable } from '../../shared/td-actions.ts';
import { serializeEvent } from '../../hub/store/serialize.ts';
import { SqliteEventStore } from '../../hub/store/sqlite.ts';
import type { SnapshotFrame } from '../../shared/protocol.ts';
import type { EventStore } from '../../hub/store/event-store.ts';
import { seededRandom, type SyncClient } from './ws-client.ts';

const STATUSES = ['open', 'doing', 'done'];

/**
 * `count` events from one device (clientActionIds first, first+1, ...) over `entities` issues and a
 * few comments: creates (sometimes of a partial row), updates with and without previousData, soft
 * deletes, restores and hard deletes, so a replay and a state differ if any rule differs.
 */
export function randomHistory(seed: number, count: number, entities: number, first = 1): PushEvent[] {
  const rnd = seededRandom(seed);
  const out: PushEvent[] = [];
  const ts = (i: number) => new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
  for (let i = 0; i < count; i++) {
    const n = Math.floor(rnd() * entities);
    const id = `i-${n}`;
    const r = rnd();
    const cid = first + i;
    const base = { clientActionId: cid, sessionId: 's1', entityType: 'issues', entityId: id, clientTimestamp: ts(cid) };
    if (r < 0.15) {
      const full = rnd() < 0.7;
      const newData = full
        ? { id, title: `t${cid}`, status: STATUSES[cid % 3], priority: cid % 5, labels: ['a', cid % 7], deleted_at: null, updated_at: ts(cid) }
        : { id, title: `partial ${cid}` };
      out.push({ ...base, actionType: 'create', payload: { schemaVersion: 1, newData, previousData: null } });
    } else if (r < 0.75) {
      const field = rnd() < 0.5 ? 'title' : 'status';
      const value = field === 'title' ? `u${cid}` : STATUSES[Math.floor(rnd() * 3)];
      const withPrev = rnd() < 0.8;
      out.push({
        ...base,
        actionType: 'update',
        payload: { schemaVersion: 1, newData: { id, [field]: value, priority: cid % 9 }, previousData: withPrev ? { id, [field]: 'old', priority: -1 } : null },
      });
    } else if (r < 0.85) {
      out.push({ ...base, actionType: 'soft_delete', payload: { schemaVersion: 1, newData: null, previousData: null } });
    } else if (r < 0.93) {
      out.push({ ...base, actionType: 'restore', payload: { schemaVersion: 1, newData: null, previousData: null } });
    } else if (r < 0.97) {
      out.push({ ...base, actionType: 'delete', payload: { schemaVersion: 1, newData: null, previousData: null } });
    } else {
      const cidText = `c-${n % 50}`;
      out.push({
        ...base,
        entityType: 'comment', // td's alias: the state and the device both file it under comments
        entityId: cidText,
        actionType: 'create',
        payload: { schemaVersion: 1, newData: { id: cidText, issue_id: id, body: `b${cid}`, created_at: ts(cid) }, previousData: null },
      });
    }
  }
  return out;
}

/** Append events to a project in commits of `batch`, as a device `deviceId` would have pushed them. */
export async function loadHistory(store: EventStore, project: string, events: PushEvent[], deviceId = 'loader', batch = 1000): Promise<void> {
  for (let i = 0; i < events.length; i += batch) {
    await store.append([{ project, deviceId, events: events.slice(i, i + batch) }], new Date().toISOString());
  }
}

/** Send hello with bootstrap: true and collect snapshot pages up to the last one. */
export async function readSnapshot(c: SyncClient, deviceId: string, afterSeq = 0, timeoutMs = 20_000): Promise<SnapshotFrame[]> {
  c.send({ type: 'hello', protocol: 1, deviceId, afterSeq, bootstrap: true });
  await c.nextFrame('welcome', timeoutMs);
  const pages: SnapshotFrame[] = [];
  for (;;) {
    const page = await c.nextFrame('snapshot', timeoutMs);
    pages.push(page);
    if (page.done) return pages;
  }
}

/**
 * Write a project's whole log straight into a hub database file, in one transaction: events with
 * their digests and the state table computed in memory with the shared rules. The same result as
 * pushing them (the bootstrap tests compare a snapshot of it with a replay of its log), in a fraction
 * of the time: for the 200,000-event tests.
 */
export function writeHubLog(dbPath: string, project: string, events: PushEvent[], deviceId = 'loader', serverTimestamp = '2026-01-01T00:00:00.000Z'): void {
  // The store creates (or upgrades) the schema when it opens; then the file is written raw.
  void new SqliteEventStore(dbPath).close();
  const db = new Database(dbPath);
  try {
    db.prepare('INSERT INTO projects (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING').run(project, serverTimestamp);
    const info = db.prepare('SELECT head_seq AS seq, head_digest AS digest FROM projects WHERE name = ?').get(project) as { seq: number; digest: string };
    const insert = db.prepare('INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body, digest) VALUES (?, ?, ?, ?, ?, ?, ?)');
    const state = new Map<string, { table: string; id: string; row: Row }>();
    const existing = db.prepare('SELECT entity_type AS t, entity_id AS id, data FROM entity_state WHERE project = ?').all(project) as { t: string; id: string; data: string }[];
    for (const r of existing) state.set(`${r.t}\u0000${r.id}`, { table: r.t, id: r.id, row: JSON.parse(r.data) as Row });
    db.transaction(() => {
      let seq = info.seq;
      let digest = info.digest;
      for (const e of events) {
        seq++;
        const json = serializeEvent(seq, deviceId, serverTimestamp, e);
        digest = chainDigest(digest, json);
        insert.run(project, seq, deviceId, e.sessionId, e.clientActionId, json, digest);
        let effect;
        try {
          effect = effectOf({ actionType: e.actionType as ActionType, newData: e.payload.newData, previousData: e.payload.previousData, clientTimestamp: e.clientTimestamp });
        } catch (err) {
          if (err instanceof RuleError) continue;
          throw err;
        }
        const table = entityTable(e.entityType);
        const key = `${table}\u0000${e.entityId}`;
        const next = applyEffect(state.get(key)?.row, effect);
        if (next === undefined) state.delete(key);
        else state.set(key, { table, id: e.entityId, row: next });
      }
      db.prepare('DELETE FROM entity_state WHERE project = ?').run(project);
      const put = db.prepare('INSERT INTO entity_state (project, entity_type, entity_id, data) VALUES (?, ?, ?, ?)');
      for (const s of state.values()) put.run(project, s.table, s.id, JSON.stringify(s.row));
      db.prepare('UPDATE projects SET head_seq = ?, head_digest = ? WHERE name = ?').run(seq, digest, project);
    }).immediate();
  } finally {
    db.close();
  }
}
