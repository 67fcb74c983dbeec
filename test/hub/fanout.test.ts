// Guarantee 4 (immediate fan-out): a committed event reaches every connected device
// of the project at once, exactly once, the pusher included.
import { afterEach, describe, expect, it } from 'vitest';
import { startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvent, range, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

describe('fan-out', () => {
  it('delivers each push to all 10 other devices and the pusher, once, well within a second', async () => {
    h = await startHub();
    const DEVICES = 11;
    const clients = await Promise.all(range(1, DEVICES).map((i) => SyncClient.open(h!.url, 'p1', h!.token, `dev-${i}`)));
    const ROUNDS = 5;
    const latencies: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // A different device pushes each round.
      const pusher = clients[(round * 3) % DEVICES]!;
      const sentAt = performance.now();
      const ack = await pusher.push(round, [makeEvent(round, { payloadBytes: 300 })]);
      const seq = ack.acks[0]!.serverSeq;
      expect(seq).toBe(round);
      await Promise.all(clients.map((c) => c.waitForSeq(seq, 5000)));
      for (const c of clients) latencies.push(c.arrivals.get(seq)! - sentAt);
      // Everyone got it from the right device.
      for (const c of clients) expect(c.events.at(-1)).toMatchObject({ serverSeq: seq, deviceId: pusher.deviceId, clientActionId: round });
    }
    // No poll interval in sight: far below a second (a 1 s poller would average ~500 ms).
    expect(Math.max(...latencies)).toBeLessThan(1000);
    // One more event as a barrier, then every device has each seq exactly once, in order.
    const barrier = await clients[0]!.push(99, [makeEvent(99)]);
    await Promise.all(clients.map((c) => c.waitForSeq(barrier.acks[0]!.serverSeq)));
    for (const c of clients) expect(c.seqs).toEqual(range(1, ROUNDS + 1));
  });

  it('does not deliver a project’s events to devices of another project', async () => {
    h = await startHub();
    await h.createProject('p2');
    const t2 = await h.createToken('p2');
    const a = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const b = await SyncClient.open(h.url, 'p2', t2, 'dev-b');
    await a.push(1, [makeEvent(1), makeEvent(2)]);
    const ackB = await b.push(1, [makeEvent(1)]);
    await a.waitForSeq(2);
    await b.waitForSeq(ackB.acks[0]!.serverSeq);
    expect(b.seqs).toEqual([1]);
    expect(b.events[0]!.deviceId).toBe('dev-b');
    // A barrier on p1: a must not have received p2's seq 1 in between.
    await a.push(2, [makeEvent(3)]);
    await a.waitForSeq(3);
    expect(a.seqs).toEqual([1, 2, 3]);
    expect(a.events.every((e) => e.deviceId === 'dev-a')).toBe(true);
  });
});
