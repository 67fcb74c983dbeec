// Test kit for history: seeded streams of events over a few entities (every action type, many updates
// per entity), written straight into a hub store, and snapshot frames read with a raw client.
import type { PushEvent } from '../../shared/event.ts';
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
