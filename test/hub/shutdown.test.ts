// Clean stop (Hub.close()) with pushes in flight: what was acked is stored, what
// was stored was acked, every socket is closed with 1001 after a shutting_down error.
import { afterEach, describe, expect, it } from 'vitest';
import type { AckFrame } from '../../shared/protocol.ts';
import { CloseCode, ErrorCode } from '../../shared/errors.ts';
import { openStoreAt, startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, delay, eventually, makeEvents, range, SyncClient, upgradeRefusal } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

describe('graceful shutdown', () => {
  it('acks exactly what it stored, then closes every socket with 1001', async () => {
    h = await startHub();
    const dbPath = h.dbPath;
    const writers = await Promise.all(range(1, 4).map((i) => SyncClient.open(h!.url, 'p1', h!.token, `dev-${i}`, 0, { keepEvents: false })));
    const reader = await SyncClient.open(h.url, 'p1', h.token, 'reader', 0, { keepEvents: false });
    const acks = new Map<string, AckFrame[]>(writers.map((w) => [w.deviceId, []]));
    const IN_FLIGHT = 8;
    let sent = 0;
    // Every writer keeps IN_FLIGHT pushes outstanding until its socket closes; the hub is
    // closed while they keep arriving.
    const pushing = writers.map(async (w) => {
      let batch = 0;
      const lane = async () => {
        while (!w.closeInfo) {
          const b = ++batch;
          sent++;
          try {
            acks.get(w.deviceId)!.push(await w.push(b, makeEvents(b * 10, 10, { payloadBytes: 300 }), 15_000));
          } catch {
            return; // closed before its ack: never acked
          }
        }
      };
      await Promise.all(range(1, IN_FLIGHT).map(lane));
    });
    // Close the hub from inside a commit (the 20th), while it is under way and more pushes
    // wait behind it: the one moment where an ack could be lost or a commit cut short.
    const store = h.store;
    const append = store.append.bind(store);
    let commits = 0;
    let closing: Promise<void> | undefined;
    store.append = async (...args) => {
      if (++commits === 20) {
        closing = h!.hub.close();
        await delay(20);
      }
      return append(...args);
    };
    await eventually(() => closing !== undefined, 'the 20th commit', 10_000);
    await closing;
    await Promise.all(pushing);

    for (const c of [...writers, reader]) {
      const close = await c.waitForClose(5000);
      expect(close.code).toBe(CloseCode.GoingAway);
      expect(c.errors.map((e) => e.code)).toEqual([ErrorCode.ShuttingDown]);
      expect(c.inbox.at(-1)).toMatchObject({ type: 'error', code: ErrorCode.ShuttingDown });
    }
    const ackedCount = [...acks.values()].reduce((n, list) => n + list.length, 0);
    // The close really happened with pushes in flight.
    expect(ackedCount).toBeGreaterThan(0);
    expect(ackedCount).toBeLessThan(sent);

    const reopened = await openStoreAt(dbPath);
    try {
      const rows = (await reopened.readAfter('p1', 0, 1_000_000)).map((r) => JSON.parse(r.json) as { serverSeq: number; deviceId: string; clientActionId: number });
      expect(rows.map((r) => r.serverSeq)).toEqual(range(1, rows.length));
      expect(await reopened.headSeq('p1')).toBe(rows.length);
      const stored = new Map(rows.map((r) => [`${r.deviceId}/${r.clientActionId}`, r.serverSeq]));
      const acked = new Map<string, number>();
      for (const [deviceId, list] of acks) {
        for (const ack of list) {
          expect(ack.rejected).toEqual([]);
          for (const a of ack.acks) acked.set(`${deviceId}/${a.clientActionId}`, a.serverSeq);
        }
      }
      // Acked => stored under the acked seq; stored => acked (no commit without its ack going out).
      expect(stored).toEqual(acked);
      // Pushes are all-or-nothing: every stored push is complete.
      for (const [deviceId, list] of acks) for (const ack of list) expect(ack.acks, deviceId).toHaveLength(10);
      // The reader saw a clean prefix of the log.
      expect(reader.seqs).toEqual(range(1, reader.seqs.length));
    } finally {
      await reopened.close();
    }
  });

  it('refuses new connections once closing, and close() is idempotent', async () => {
    h = await startHub();
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    const url = h.url;
    await Promise.all([h.hub.close(), h.hub.close()]);
    expect((await c.waitForClose()).code).toBe(CloseCode.GoingAway);
    await expect(upgradeRefusal(`${url}/v1/projects/p1/sync`, { authorization: `Bearer ${h.token}` })).rejects.toThrow();
  });
});
