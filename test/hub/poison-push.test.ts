// One client's event must never fail other clients' pushes (found by an attacker with one write token):
// an event nesting 4,200 levels deep parsed, then overflowed the stack when the hub serialised it at
// commit; the group commit is shared by every project, so every push in that transaction failed with
// store_unavailable and those sockets were closed, again on every retry. Now such an event is rejected
// alone (invalid_payload), and a push the store cannot take fails alone even inside a shared commit.
import { afterEach, describe, expect, it } from 'vitest';
import { EarlierPushFailed, GroupCommitter, PushCancelled } from '../../hub/commit.ts';
import { RejectReason } from '../../shared/errors.ts';
import { MAX_PAYLOAD_DEPTH } from '../../shared/limits.ts';
import { freshStoreLocation, openStoreAt, startHub, type TestHub } from '../kit/hub.ts';
import { failInsertsOf } from '../kit/store-faults.ts';
import { closeAllClients, makeEvent, makeEvents, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

/** A row whose `deep` field nests `levels` objects. */
function nested(levels: number): Record<string, unknown> {
  let v: Record<string, unknown> = { leaf: true };
  for (let i = 1; i < levels; i++) v = { v };
  return v;
}

describe('a poison event', () => {
  it('nesting thousands of levels is rejected alone while other projects push at the same instant; everyone else is acked', async () => {
    h = await startHub();
    await h.createProject('p2');
    const token2 = await h.createToken('p2');
    const attacker = await SyncClient.open(h.url, 'p1', h.token, 'attacker');
    const others = await Promise.all([
      SyncClient.open(h.url, 'p1', h.token, 'neighbour'),
      SyncClient.open(h.url, 'p2', token2, 'other-project'),
    ]);
    // Everything sent in one turn: the pushes share a group commit.
    // Encoded by hand: JSON.stringify itself cannot encode 4,200 levels.
    const deepText = `${'{"v":'.repeat(4200)}{"leaf":true}${'}'.repeat(4200)}`;
    const deep = JSON.stringify(makeEvent(2, { payload: { schemaVersion: 1, newData: { id: 'x', deep: 'DEEP' }, previousData: null } })).replace('"DEEP"', deepText);
    const attack = attacker.pushText(1, `{"type":"push","batch":1,"events":[${JSON.stringify(makeEvent(1))},${deep},${JSON.stringify(makeEvent(3))}]}`);
    const pushes = others.map((c, i) => c.push(1, makeEvents(100 * (i + 1), 50)));
    const [a, ...rest] = await Promise.all([attack, ...pushes]);
    expect(a.rejected).toEqual([{ clientActionId: 2, reason: RejectReason.InvalidPayload }]);
    expect(a.acks.map((x) => x.clientActionId)).toEqual([1, 3]);
    for (const ack of rest) {
      expect(ack.acks).toHaveLength(50);
      expect(ack.rejected).toEqual([]);
    }
    for (const c of [attacker, ...others]) expect(c.closeInfo).toBeNull();
  });

  it('nesting up to the limit is accepted; one level more is rejected', async () => {
    h = await startHub();
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev');
    // payload (1) > newData (2) > deep: MAX_PAYLOAD_DEPTH - 2 levels fit, one more does not.
    const fits = makeEvent(1, { payload: { schemaVersion: 1, newData: { id: 'a', deep: nested(MAX_PAYLOAD_DEPTH - 2) }, previousData: null } });
    const over = makeEvent(2, { payload: { schemaVersion: 1, newData: { id: 'b', deep: nested(MAX_PAYLOAD_DEPTH - 1) }, previousData: null } });
    const ack = await c.push(1, [fits, over]);
    expect(ack.acks.map((x) => x.clientActionId)).toEqual([1]);
    expect(ack.rejected).toEqual([{ clientActionId: 2, reason: RejectReason.InvalidPayload }]);
  });

  it('a push the store cannot take fails alone inside a shared group commit; the others in it are stored, gap-free', async () => {
    const location = await freshStoreLocation();
    const store = await openStoreAt(location);
    await store.createProject('p1');
    await store.createProject('p2');
    const heal = await failInsertsOf(location, 666);
    const commits: number[] = [];
    const committer = new GroupCommitter(store, 20_000, (_c, _ms, n) => commits.push(n));
    try {
      // Submitted in one turn: one transaction unless a push fails it.
      const good1 = committer.submit({ project: 'p1', deviceId: 'a', events: makeEvents(1, 3) });
      const bad = committer.submit({ project: 'p2', deviceId: 'b', events: [makeEvent(1), makeEvent(666)] });
      const good2 = committer.submit({ project: 'p2', deviceId: 'c', events: makeEvents(1, 2) });
      await expect(bad).rejects.toThrow(/injected failure/);
      expect((await good1).map((o) => o.seq)).toEqual([1, 2, 3]);
      expect((await good2).map((o) => o.seq)).toEqual([1, 2]);
      expect(await store.headSeq('p2')).toBe(2);
      expect((await store.readAfter('p2', 0, 10)).map((e) => JSON.parse(e.json).deviceId)).toEqual(['c', 'c']);
      await committer.drain();
      expect(commits).toEqual([3, 2]);
    } finally {
      await heal();
      await store.close();
    }
  });

  it("never stores a device's later push when an earlier one of it failed, nor a push whose connection is gone", async () => {
    // Found by the two-node PostgreSQL soak: a shared commit failed (connections killed), the one-by-one
    // retry failed a device's push k and stored its push k+1: k then landed after k+1 on re-push.
    const location = await freshStoreLocation();
    const store = await openStoreAt(location);
    await store.createProject('p1');
    const heal = await failInsertsOf(location, 666);
    const committer = new GroupCommitter(store, 20_000, () => {});
    try {
      const failing = committer.submit({ project: 'p1', deviceId: 'b', events: [makeEvent(1), makeEvent(666)] });
      const later = committer.submit({ project: 'p1', deviceId: 'b', events: makeEvents(700, 2) });
      const other = committer.submit({ project: 'p1', deviceId: 'c', events: makeEvents(1, 2) });
      const gone = committer.submit({ project: 'p1', deviceId: 'd', events: makeEvents(1, 1) }, () => true);
      const [f, l, o, g] = await Promise.allSettled([failing, later, other, gone]);
      expect(f.status === 'rejected' && String(f.reason)).toMatch(/injected failure/);
      expect(l.status === 'rejected' && l.reason).toBeInstanceOf(EarlierPushFailed);
      expect(g.status === 'rejected' && g.reason).toBeInstanceOf(PushCancelled);
      expect(o.status === 'fulfilled' && o.value.map((x) => x.seq)).toEqual([1, 2]);
      expect((await store.readAfter('p1', 0, 10)).map((e) => JSON.parse(e.json).deviceId)).toEqual(['c', 'c']);
    } finally {
      await heal();
      await store.close();
    }
  });

  it('an event whose payload is over maxEventBytes is rejected alone; one exactly at the limit is stored', async () => {
    h = await startHub({ options: { maxEventBytes: 10_000 } });
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-big');
    // A payload whose JSON is exactly `bytes` long.
    const sized = (id: number, bytes: number) => {
      const base = { schemaVersion: 1 as const, newData: { id: `e-${id}`, body: '' }, previousData: null };
      base.newData.body = 'x'.repeat(bytes - Buffer.byteLength(JSON.stringify(base)));
      return makeEvent(id, { payload: base });
    };
    const ack = await c.push(1, [makeEvent(1), sized(2, 10_001), sized(3, 10_000), makeEvent(4)]);
    expect(ack.rejected).toEqual([{ clientActionId: 2, reason: RejectReason.PayloadTooLarge }]);
    expect(ack.acks.map((a) => a.clientActionId)).toEqual([1, 3, 4]);
    expect(await h.store.headSeq('p1')).toBe(3);
  });
});
