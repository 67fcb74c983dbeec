// Events frames are bounded in bytes, not only in events: with large events a page of
// `pageEvents` events could otherwise make one frame of gigabytes (past any client's
// maxPayload, or V8's string limit), wedging every reader that has to cross it.
import { afterEach, describe, expect, it } from 'vitest';
import { startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvents, range, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

const MAX_FRAME = 64 * 1024;
const EVENT_BYTES = 20 * 1024;

/** Every events frame of more than one event fits in maxFrameBytes; a single event may exceed it a little (its envelope). */
function expectBounded(c: SyncClient): void {
  expect(c.eventFrameSizes.length).toBeGreaterThan(0);
  for (const f of c.eventFrameSizes) {
    if (f.events > 1) expect(f.bytes).toBeLessThanOrEqual(MAX_FRAME);
    else expect(f.bytes).toBeLessThan(MAX_FRAME + 1024);
  }
}

describe('events frame size', () => {
  it('splits backlog, tail and live frames to stay within maxFrameBytes', async () => {
    // pageEvents would allow 1000 events (20 MB) per frame; the tail holds 40 of the 300 events.
    h = await startHub({ options: { maxFrameBytes: MAX_FRAME, pageEvents: 1000, tailEvents: 40 } });
    const live = await SyncClient.open(h.url, 'p1', h.token, 'live', 0, { keepEvents: false });
    const writers = await Promise.all(range(1, 4).map((i) => SyncClient.open(h!.url, 'p1', h!.token, `w-${i}`, 0, { keepEvents: false })));
    // Concurrent pushes of 3 x 20 KB: group commits of several pushes are larger than one frame.
    await Promise.all(writers.map((w, i) => Promise.all(range(1, 25).map((b) => w.push(b, makeEvents(i * 1000 + b * 3, 3, { payloadBytes: EVENT_BYTES }))))));
    const head = await h.store.headSeq('p1');
    expect(head).toBe(300);
    await live.waitForSeq(head);
    expect(live.seqs).toEqual(range(1, head));
    expectBounded(live);

    // A reader from 0 goes through store pages, then the in-memory tail.
    const backlog = await SyncClient.open(h.url, 'p1', h.token, 'backlog', 0, { keepEvents: false });
    await backlog.waitForSeq(head);
    expect(backlog.seqs).toEqual(range(1, head));
    expectBounded(backlog);
    // A reader inside the tail.
    const tail = await SyncClient.open(h.url, 'p1', h.token, 'tail', head - 30, { keepEvents: false });
    await tail.waitForSeq(head);
    expect(tail.seqs).toEqual(range(head - 29, head));
    expectBounded(tail);
  });
});
