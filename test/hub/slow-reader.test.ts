// Guarantee 3, the slow-reader clause: a reader that stops reading never makes the
// hub buffer without bound; it is closed if it stays stuck past the stall timeout,
// and it gets everything exactly once if it resumes before that. Other readers carry on.
import { afterEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { ErrorCode } from '../../shared/errors.ts';
import { connectionCount, metricValue, serverSocketOf, startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, eventually, makeEvents, range, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

const PAYLOAD = 4000;
const PER_PUSH = 100;

/** Record the largest amount the hub ever had queued on this server-side socket, right after each send. */
function trackBuffered(ws: WebSocket): { max: () => number } {
  let max = 0;
  const send = ws.send.bind(ws) as (...args: unknown[]) => void;
  (ws as unknown as { send: (...args: unknown[]) => void }).send = (...args: unknown[]) => {
    send(...args);
    max = Math.max(max, ws.bufferedAmount);
  };
  return { max: () => max };
}

/** Push `totalBytes` of ~4 KB events from two writers, a few pushes in flight each; resolves with the last seq. */
async function pushLoad(writers: SyncClient[], totalBytes: number): Promise<number> {
  const pushes = Math.ceil(totalBytes / (PAYLOAD * PER_PUSH));
  let next = 0;
  let head = 0;
  await Promise.all(
    writers.flatMap((w) =>
      range(1, 4).map(async () => {
        while (next < pushes) {
          const b = ++next;
          const ack = await w.push(b, makeEvents(b * PER_PUSH, PER_PUSH, { payloadBytes: PAYLOAD }), 30_000);
          expect(ack.acks).toHaveLength(PER_PUSH);
          head = Math.max(head, ...ack.acks.map((a) => a.serverSeq));
        }
      }),
    ),
  );
  return head;
}

describe('slow reader', () => {
  it('bounds what the hub buffers for a reader that stopped, serves the others, and resumes it exactly once', async () => {
    h = await startHub({ options: { pageEvents: 100, highWaterBytes: 1024 * 1024, stallTimeoutMs: 120_000 } });
    const opts = { keepEvents: false };
    const slow = await SyncClient.open(h.url, 'p1', h.token, 'slow', 0, opts);
    const fast = await Promise.all(['fast-1', 'fast-2'].map((d) => SyncClient.open(h!.url, 'p1', h!.token, d, 0, opts)));
    const writers = await Promise.all(['w-1', 'w-2'].map((d) => SyncClient.open(h!.url, 'p1', h!.token, d, 0, opts)));
    const tracked = trackBuffered(serverSocketOf(h.hub, 'slow')!);
    slow.pause();

    const TOTAL = 50 * 1024 * 1024;
    const head = await pushLoad(writers, TOTAL);
    expect(head).toBe(Math.ceil(TOTAL / (PAYLOAD * PER_PUSH)) * PER_PUSH);

    // Everyone else keeps receiving everything, while the slow reader is stuck.
    await Promise.all([...fast, ...writers].map((c) => c.waitForSeq(head, 60_000)));
    for (const c of [...fast, ...writers]) expect(c.seqs).toEqual(range(1, head));

    // The hub's queue for the stuck socket stayed at the high-water mark plus about one frame
    // (100 events of ~4 KB), not the 50 MB pushed.
    const maxBuffered = tracked.max();
    expect(maxBuffered).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThan(3 * 1024 * 1024);
    expect(serverSocketOf(h.hub, 'slow')!.bufferedAmount).toBeLessThan(3 * 1024 * 1024);
    // It is still connected (resumed before the stall timeout) and has not been fed the log.
    expect(slow.closeInfo).toBeNull();
    expect(slow.maxSeq()).toBeLessThan(head);

    slow.resume();
    await slow.waitForSeq(head, 60_000);
    expect(slow.seqs).toEqual(range(1, head));
    expect(await metricValue(h.hub, 'synchub_slow_consumers_total')).toBe(0);
  });

  it('closes a reader stuck past stallTimeoutMs with slow_consumer; the others carry on', async () => {
    // Long enough that the readers sharing this test process's event loop with the writers (busy
    // building 24 MB of pushes; on a loaded machine, seconds) are never judged stuck: only the paused one.
    h = await startHub({ options: { pageEvents: 100, highWaterBytes: 512 * 1024, stallTimeoutMs: 2_000 } });
    const opts = { keepEvents: false };
    const slow = await SyncClient.open(h.url, 'p1', h.token, 'slow', 0, opts);
    const fast = await SyncClient.open(h.url, 'p1', h.token, 'fast', 0, opts);
    const writers = await Promise.all(['w-1', 'w-2'].map((d) => SyncClient.open(h!.url, 'p1', h!.token, d, 0, opts)));
    slow.pause();
    expect(connectionCount(h.hub)).toBe(4);

    // Enough to fill the loopback socket buffers on both sides and then the hub's high-water mark.
    const head = await pushLoad(writers, 24 * 1024 * 1024);
    await eventually(async () => (await metricValue(h!.hub, 'synchub_slow_consumers_total')) === 1, 'the slow consumer to be closed', 20_000);
    expect(await metricValue(h.hub, 'synchub_connection_errors_total', { code: ErrorCode.SlowConsumer })).toBe(1);
    await eventually(() => connectionCount(h!.hub) === 3, 'the hub to drop the connection');
    expect(serverSocketOf(h.hub, 'slow')).toBeUndefined();

    // The stuck client, once it reads again, finds a clean prefix of the log and then the close.
    slow.resume();
    const close = await slow.waitForClose(10_000);
    // Terminated without a closing handshake: the close frame could only sit behind the unread data.
    expect(close.code).toBe(1006);
    expect(slow.seqs).toEqual(range(1, slow.seqs.length));
    expect(slow.seqs.length).toBeLessThan(head);

    // The others were not affected.
    await fast.waitForSeq(head, 30_000);
    expect(fast.seqs).toEqual(range(1, head));
    const more = await writers[0]!.push(10_000, makeEvents(1_000_000, 1));
    await fast.waitForSeq(more.acks[0]!.serverSeq);
    expect(fast.closeInfo).toBeNull();
  });

  it('drops a connection that stops answering pings; live ones stay', async () => {
    h = await startHub({ options: { pingIntervalMs: 100 } });
    const dead = await SyncClient.open(h.url, 'p1', h.token, 'dead');
    const live = await SyncClient.open(h.url, 'p1', h.token, 'live');
    dead.pause(); // reads nothing, so never answers a ping
    await eventually(() => serverSocketOf(h!.hub, 'dead') === undefined, 'the dead connection to be dropped', 5000);
    // By then at least two ping rounds passed; the live client answered them and still works.
    expect(serverSocketOf(h.hub, 'live')).toBeDefined();
    const ack = await live.push(1, makeEvents(1, 1));
    await live.waitForSeq(ack.acks[0]!.serverSeq);
    expect(live.closeInfo).toBeNull();
  });
});
