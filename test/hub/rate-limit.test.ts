// Events per second per connection: over the rate the hub stops reading that socket until its
// bucket refills (nothing dropped, other devices not slowed); a client that stays over the rate
// for floodMs is closed with rate_limited.
import { describe, expect, it, afterEach } from 'vitest';
import { EventBucket } from '../../hub/rate-limit.ts';
import { CloseCode, ErrorCode } from '../../shared/errors.ts';
import { metricValue, startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvents, range, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

describe('EventBucket', () => {
  it('lets a burst through, then asks to wait in proportion to the deficit, and flags a flood', () => {
    const b = new EventBucket(100, 200, 5_000, 0);
    expect(b.take(200, 0)).toBe(0);
    expect(b.take(50, 0)).toBe(500); // 50 events at 100/s; held back from now on
    expect(b.take(50, 1_000)).toBe(0); // refilled 100, not to full: still held back
    expect(b.take(300, 1_000)).toBe(3_000);
    expect(b.take(1_000, 4_999)).toBeGreaterThan(0);
    expect(b.take(1, 5_000)).toBe(-1); // over the rate since 0: floodMs
    // A client that slows down until the bucket is full again starts afresh.
    const c = new EventBucket(100, 200, 5_000, 0);
    expect(c.take(300, 0)).toBe(1_000);
    expect(c.take(0, 4_000)).toBe(0);
    expect(c.take(300, 6_000)).toBe(1_000);
  });
});

describe('rate limit on a connection', () => {
  it('holds a flooding client to its rate without dropping anything; another device is served meanwhile', async () => {
    h = await startHub({ options: { maxEventsPerSecond: 1_000, maxBatchEvents: 500 } });
    const flooder = await SyncClient.open(h.url, 'p1', h.token, 'flooder', 0, { keepEvents: false });
    const other = await SyncClient.open(h.url, 'p1', h.token, 'other', 0, { keepEvents: false });
    const started = Date.now();
    // 5,000 events at once: a 1,000-event burst, then 1,000/s.
    const acks = Promise.all(range(0, 9).map((i) => flooder.push(i + 1, makeEvents(1 + i * 500, 500), 30_000)));
    const otherAck = await other.push(1, makeEvents(1, 10));
    const flooderDone = await acks;
    const elapsed = Date.now() - started;
    expect(flooderDone.flatMap((a) => a.acks)).toHaveLength(5_000);
    expect(flooderDone.every((a) => a.rejected.length === 0)).toBe(true);
    // The rate held (a lower bound: a busy machine only makes it slower).
    expect(elapsed).toBeGreaterThanOrEqual(3_500);
    // The other device was answered while the flooder was still held back.
    expect(otherAck.acks).toHaveLength(10);
    expect(otherAck.acks[0]!.serverSeq).toBeLessThan(5_000);
    expect(await metricValue(h.hub, 'synchub_rate_limited_total')).toBeGreaterThan(0);
    expect(flooder.closeInfo).toBeNull();
  });

  it('closes a client that stays over its rate for floodMs with rate_limited', async () => {
    h = await startHub({ options: { maxEventsPerSecond: 200, maxBatchEvents: 100, floodMs: 1_000 } });
    const flooder = await SyncClient.open(h.url, 'p1', h.token, 'flooder', 0, { keepEvents: false });
    let id = 1;
    // Pushes without waiting for acks, for as long as the socket is open.
    while (flooder.closeInfo === null && id < 20_000) {
      flooder.send({ type: 'push', batch: id, events: makeEvents(id, 100) });
      id += 100;
      await new Promise((r) => setTimeout(r, 20));
    }
    const close = await flooder.waitForClose(10_000);
    expect(flooder.errors.map((e) => e.code)).toEqual([ErrorCode.RateLimited]);
    expect(close.code).toBe(CloseCode.PolicyViolation);
  });
});
