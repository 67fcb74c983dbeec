// Dedup key (project, deviceId, sessionId, clientActionId): stored once, the repeat
// answered in `rejected` with reason `duplicate` and the original serverSeq.
import { afterEach, describe, expect, it } from 'vitest';
import { RejectReason } from '../../shared/errors.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvent, range, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

async function storedRows(hub: TestHub) {
  return (await hub.store.readAfter('p1', 0, 1_000_000)).map((r) => JSON.parse(r.json) as Record<string, unknown>);
}

describe('dedup', () => {
  it('stores an event repeated within one push once', async () => {
    h = await startHub();
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const ack = await c.push(1, [makeEvent(1), makeEvent(2), makeEvent(1, { payload: { schemaVersion: 1, newData: { id: 'changed' }, previousData: null } })]);
    expect(ack.acks).toEqual([
      { clientActionId: 1, serverSeq: 1 },
      { clientActionId: 2, serverSeq: 2 },
    ]);
    expect(ack.rejected).toEqual([{ clientActionId: 1, reason: RejectReason.Duplicate, serverSeq: 1 }]);
    const rows = await storedRows(h);
    expect(rows).toHaveLength(2);
    // The first version is the one kept.
    expect((rows[0]!.payload as { newData: { id: string } }).newData.id).toBe('i-1');

    // A later push proves the stream carried the pair exactly once.
    const next = await c.push(2, [makeEvent(3)]);
    await c.waitForSeq(next.acks[0]!.serverSeq);
    expect(c.seqs).toEqual([1, 2, 3]);
  });

  it('answers a repeat in a second push with the original seq', async () => {
    h = await startHub();
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const first = await c.push(1, [makeEvent(10), makeEvent(11)]);
    const other = await SyncClient.open(h.url, 'p1', h.token, 'dev-b');
    await other.push(1, [makeEvent(10)]); // same clientActionId, other device: new event
    const again = await c.push(2, [makeEvent(11), makeEvent(12), makeEvent(10)]);
    const seqOf = (id: number) => first.acks.find((a) => a.clientActionId === id)!.serverSeq;
    expect(again.acks).toEqual([{ clientActionId: 12, serverSeq: 4 }]);
    expect(again.rejected).toEqual([
      { clientActionId: 11, reason: 'duplicate', serverSeq: seqOf(11) },
      { clientActionId: 10, reason: 'duplicate', serverSeq: seqOf(10) },
    ]);
    expect(await h.store.headSeq('p1')).toBe(4);
    await c.waitForSeq(4);
    expect(c.seqs).toEqual(range(1, 4));
  });

  it('recognises a repeat pushed again after a reconnect (the lost-ack case)', async () => {
    h = await startHub();
    const c1 = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const acked = await c1.push(1, [makeEvent(1), makeEvent(2), makeEvent(3)]);
    await c1.waitForSeq(3);
    c1.terminate(); // the device never learns about the ack
    await c1.closed;

    const c2 = await SyncClient.open(h.url, 'p1', h.token, 'dev-a', 0);
    const again = await c2.push(1, [makeEvent(1), makeEvent(2), makeEvent(3), makeEvent(4)]);
    expect(again.acks).toEqual([{ clientActionId: 4, serverSeq: 4 }]);
    expect(again.rejected).toEqual(acked.acks.map((a) => ({ clientActionId: a.clientActionId, reason: 'duplicate', serverSeq: a.serverSeq })));
    await c2.waitForSeq(4);
    expect(c2.seqs).toEqual([1, 2, 3, 4]);
    expect(await storedRows(h)).toHaveLength(4);
  });

  it('treats the same clientActionId with another sessionId or deviceId as a different event', async () => {
    h = await startHub();
    const a = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const b = await SyncClient.open(h.url, 'p1', h.token, 'dev-b');
    const r1 = await a.push(1, [makeEvent(7, { sessionId: 's1' }), makeEvent(7, { sessionId: 's2' })]);
    const r2 = await b.push(1, [makeEvent(7, { sessionId: 's1' }), makeEvent(7, { sessionId: 's2' })]);
    expect(r1.rejected).toEqual([]);
    expect(r2.rejected).toEqual([]);
    const seqs = [...r1.acks, ...r2.acks].map((x) => x.serverSeq);
    expect(new Set(seqs).size).toBe(4);
    const rows = await storedRows(h);
    expect(rows.map((r) => `${r.deviceId}/${r.sessionId}/${r.clientActionId}`).sort()).toEqual([
      'dev-a/s1/7',
      'dev-a/s2/7',
      'dev-b/s1/7',
      'dev-b/s2/7',
    ]);
    // And each of those is now deduplicated on its own key.
    const r3 = await b.push(2, [makeEvent(7, { sessionId: 's2' })]);
    expect(r3.rejected).toEqual([{ clientActionId: 7, reason: 'duplicate', serverSeq: r2.acks[1]!.serverSeq }]);
  });

  it('dedups a key pushed at the same moment by two connections of one device', async () => {
    h = await startHub();
    const a1 = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const a2 = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const events = range(1, 50).map((i) => makeEvent(i));
    const [x, y] = await Promise.all([a1.push(1, events), a2.push(1, events)]);
    expect(x.acks.length + y.acks.length).toBe(50);
    expect(x.rejected.length + y.rejected.length).toBe(50);
    const seqById = new Map([...x.acks, ...y.acks].map((a) => [a.clientActionId, a.serverSeq]));
    for (const r of [...x.rejected, ...y.rejected]) {
      expect(r.reason).toBe('duplicate');
      expect(r.serverSeq).toBe(seqById.get(r.clientActionId));
    }
    expect(await h.store.headSeq('p1')).toBe(50);
  });
});
