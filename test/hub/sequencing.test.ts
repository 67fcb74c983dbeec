// Guarantee 2 (gap-free order) and the ack/stream agreement, under concurrent pushes.
import { afterEach, describe, expect, it } from 'vitest';
import type { AckFrame } from '../../shared/protocol.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvents, range, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

describe('sequencing', () => {
  it('assigns 1..N with no gap or repeat under concurrent pipelined pushes from several connections', async () => {
    h = await startHub();
    const CONNS = 5;
    const PUSHES = 20;
    const PER_PUSH = 10;
    const total = CONNS * PUSHES * PER_PUSH;
    const clients = await Promise.all(range(1, CONNS).map((i) => SyncClient.open(h!.url, 'p1', h!.token, `dev-${i}`)));

    // Every connection pipelines all its pushes without waiting for acks.
    const acks: AckFrame[][] = await Promise.all(
      clients.map((c) => Promise.all(range(1, PUSHES).map((b) => c.push(b, makeEvents((b - 1) * PER_PUSH + 1, PER_PUSH, { payloadBytes: 300 }))))),
    );

    const acked: number[] = [];
    for (const perClient of acks) {
      for (const ack of perClient) {
        expect(ack.rejected).toEqual([]);
        expect(ack.acks).toHaveLength(PER_PUSH);
        const seqs = ack.acks.map((a) => a.serverSeq);
        // Within one push, array order is seq order.
        for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
        acked.push(...seqs);
      }
    }
    expect([...acked].sort((a, b) => a - b)).toEqual(range(1, total));

    // Every connection streams exactly 1..N in order, its own events included.
    await Promise.all(clients.map((c) => c.waitForSeq(total)));
    for (const c of clients) expect(c.seqs).toEqual(range(1, total));

    // Each ack names the seq under which the stream shows that very event.
    const bySeq = new Map(clients[0]!.events.map((e) => [e.serverSeq, e]));
    acks.forEach((perClient, ci) => {
      perClient.forEach((ack, bi) => {
        ack.acks.forEach((a, k) => {
          const e = bySeq.get(a.serverSeq)!;
          expect(e.deviceId).toBe(`dev-${ci + 1}`);
          expect(e.clientActionId).toBe(a.clientActionId);
          expect(e.clientActionId).toBe(bi * PER_PUSH + k + 1);
          expect(e.entityId).toBe(`i-${a.clientActionId}`);
        });
      });
    });

    // The store agrees with the stream.
    expect(await h.store.headSeq('p1')).toBe(total);
    const stored = await h.store.readAfter('p1', 0, total + 10);
    expect(stored.map((s) => s.seq)).toEqual(range(1, total));
    expect(stored.map((s) => JSON.parse(s.json))).toEqual(clients[1]!.events);
  });

  it('numbers each project independently, both starting at 1', async () => {
    h = await startHub();
    await h.createProject('p2');
    const token2 = await h.createToken('p2');
    const a = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const b = await SyncClient.open(h.url, 'p2', token2, 'dev-b');
    const N = 8;
    // Interleave pushes to both projects so they share group commits.
    const pending: Promise<AckFrame>[] = [];
    for (let i = 1; i <= N; i++) {
      pending.push(a.push(i, makeEvents(i * 10, 3)));
      pending.push(b.push(i, makeEvents(i * 10, 2)));
    }
    const results = await Promise.all(pending);
    const p1Seqs = results.filter((_, i) => i % 2 === 0).flatMap((r) => r.acks.map((x) => x.serverSeq));
    const p2Seqs = results.filter((_, i) => i % 2 === 1).flatMap((r) => r.acks.map((x) => x.serverSeq));
    expect(p1Seqs.sort((x, y) => x - y)).toEqual(range(1, 3 * N));
    expect(p2Seqs.sort((x, y) => x - y)).toEqual(range(1, 2 * N));

    await a.waitForSeq(3 * N);
    await b.waitForSeq(2 * N);
    expect(a.seqs).toEqual(range(1, 3 * N));
    expect(b.seqs).toEqual(range(1, 2 * N));
    // No event crosses projects.
    expect(a.events.every((e) => e.deviceId === 'dev-a')).toBe(true);
    expect(b.events.every((e) => e.deviceId === 'dev-b')).toBe(true);
    expect(await h.store.headSeq('p1')).toBe(3 * N);
    expect(await h.store.headSeq('p2')).toBe(2 * N);

    // A late joiner of p2 gets only p2's log, from 1.
    const late = await SyncClient.open(h.url, 'p2', token2, 'dev-late');
    await late.waitForSeq(2 * N);
    expect(late.seqs).toEqual(range(1, 2 * N));
  });

  it('accepts pushes pipelined right behind the hello, before the welcome', async () => {
    h = await startHub();
    const w = await SyncClient.open(h.url, 'p1', h.token, 'writer');
    await w.push(1, makeEvents(1, 5));
    const c = await SyncClient.connect(h.url, 'p1', h.token);
    c.deviceId = 'eager';
    c.send({ type: 'hello', protocol: 1, deviceId: 'eager', afterSeq: 2 });
    const acks = await Promise.all([c.push(1, makeEvents(1, 3)), c.push(2, makeEvents(4, 3))]);
    expect(acks.map((a) => a.acks.map((x) => x.serverSeq))).toEqual([
      [6, 7, 8],
      [9, 10, 11],
    ]);
    // The welcome came first, then the stream from afterSeq.
    expect(c.inbox[0]).toMatchObject({ type: 'welcome', headSeq: 5 });
    await c.waitForSeq(11);
    expect(c.seqs).toEqual(range(3, 11));
    expect(c.events.slice(3).every((e) => e.deviceId === 'eager')).toBe(true);
  });

  it('welcome and events frames report the head and throughSeq consistently', async () => {
    h = await startHub({ options: { pageEvents: 7 } });
    const w = await SyncClient.open(h.url, 'p1', h.token, 'writer');
    for (let b = 1; b <= 5; b++) await w.push(b, makeEvents(b * 100, 10));
    const r = await SyncClient.connect(h.url, 'p1', h.token);
    const welcome = await r.hello('reader', 3);
    expect(welcome).toMatchObject({ type: 'welcome', project: 'p1', deviceId: 'reader', headSeq: 50 });
    await r.waitForSeq(50);
    expect(r.seqs).toEqual(range(4, 50));
    const frames = r.inbox.filter((f) => f.type === 'events');
    for (const f of frames) {
      expect(f.throughSeq).toBe(f.events[f.events.length - 1]!.serverSeq);
      expect(f.events.length).toBeLessThanOrEqual(7);
      expect(f.headSeq).toBeGreaterThanOrEqual(f.throughSeq);
    }
  });
});
