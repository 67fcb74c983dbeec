// Regression: a device far behind on a slow link (a phone reading a few KB/s) never got anywhere.
// Backlog frames were pages of up to 1000 events (hundreds of KB), built without regard to how fast
// the device reads, so one frame took minutes to arrive; and the hub judged a reader stalled by its
// send buffer not emptying within stallTimeoutMs, so below ~7 KB/s it closed the connection as
// `slow_consumer` mid-frame, and the reconnect fetched the same frame again, forever. Now frames
// are sized to about a second of the device's measured reading, and a reader is stalled only when
// it reads nothing at all for stallTimeoutMs. A reader that stops reading is still closed.
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../shared/errors.ts';
import { metricValue, serverSocketOf, startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, eventually, makeEvents, range, SyncClient } from '../kit/ws-client.ts';
import { FaultProxy } from '../chaos/proxy.ts';

let hub: TestHub | undefined;
let proxy: FaultProxy | undefined;

afterEach(async () => {
  await closeAllClients();
  await proxy?.close();
  await hub?.close();
  hub = proxy = undefined;
});

const STALL_MS = 3000;
const RATE = 3000; // bytes/s, hub -> device
const BACKLOG = 3000; // events of ~500-byte payloads: ~2 MB, minutes of reading at RATE

/** A hub with a backlog, a 3 KB/s link to it, and a device at cursor 0 on the far side. */
async function farBehindOnSlowLink(): Promise<SyncClient> {
  // The hub's liveness pings at their default interval: they wait behind little of the stream now.
  hub = await startHub({ options: { stallTimeoutMs: STALL_MS } });
  await hub.store.append([{ project: hub.project, deviceId: 'loader', events: makeEvents(1, BACKLOG, { payloadBytes: 500 }) }], new Date().toISOString());
  proxy = new FaultProxy(hub.port);
  await proxy.listen();
  proxy.slow(RATE);
  return SyncClient.open(proxy.url, hub.project, hub.token, 'phone', 0, { keepEvents: false });
}

describe('a device far behind on a slow link', () => {
  it('keeps making progress in small frames and is not closed as slow_consumer', async () => {
    const phone = await farBehindOnSlowLink();
    // Before the fix: the first frame was ~370 KB (2 minutes at 3 KB/s); none arrived in time.
    await eventually(() => phone.eventFrames >= 3, 'three backlog frames over the 3 KB/s link', 25_000, 50);
    const reached = phone.maxSeq();
    // Still connected well past the stall timeout, and still moving.
    await eventually(() => phone.maxSeq() > reached, 'the cursor to move again', 15_000, 50);
    expect(phone.closeInfo).toBeNull();
    expect(phone.errors).toEqual([]);
    expect(await metricValue(hub!.hub, 'synchub_slow_consumers_total')).toBe(0);
    expect(proxy!.stats.connections).toBe(1);
    // Frames sized to the link: a few seconds of reading each, not pages of hundreds of KB.
    for (const f of phone.eventFrameSizes) expect(f.bytes).toBeLessThanOrEqual(32 * 1024);
    // A clean prefix of the log, once each.
    expect(phone.seqs).toEqual(range(1, phone.maxSeq()));
  }, 50_000);

  it('is still closed as slow_consumer within about stallTimeoutMs once it stops reading', async () => {
    const phone = await farBehindOnSlowLink();
    await eventually(() => phone.eventFrames >= 1, 'a first backlog frame', 20_000, 50);
    phone.pause();
    await eventually(async () => (await metricValue(hub!.hub, 'synchub_slow_consumers_total')) === 1, 'the stopped reader to be closed', 5 * STALL_MS, 50);
    expect(await metricValue(hub!.hub, 'synchub_connection_errors_total', { code: ErrorCode.SlowConsumer })).toBe(1);
    await eventually(() => serverSocketOf(hub!.hub, 'phone') === undefined, 'the hub to drop the connection');
    // Once it reads again it finds a clean prefix of the log, then the close.
    phone.resume();
    await phone.waitForClose(10_000);
    expect(phone.seqs).toEqual(range(1, phone.seqs.length));
    expect(phone.seqs.length).toBeLessThan(BACKLOG);
  }, 50_000);

  it('leaves a fast reader whole pages', async () => {
    hub = await startHub();
    const backlog = 20_000; // ~15 MB
    await hub.store.append([{ project: hub.project, deviceId: 'loader', events: makeEvents(1, backlog, { payloadBytes: 500 }) }], new Date().toISOString());
    const fast = await SyncClient.open(hub.url, hub.project, hub.token, 'fast', 0, { keepEvents: false });
    await fast.waitForSeq(backlog, 30_000);
    expect(fast.seqs).toEqual(range(1, backlog));
    // Small first frames until its read rate shows within a few round trips, then pages of
    // hundreds of events (1000 at most), not the dozen of a slow link's frame.
    expect(Math.max(...fast.eventFrameSizes.map((f) => f.events))).toBeGreaterThanOrEqual(500);
    expect(fast.eventFrames).toBeLessThan(200);
  });
});
