// Guarantee 1 (durable ack): the real CLI hub as a child process, killed with
// SIGKILL mid-load or stopped with SIGTERM, then restarted on the same file.
import { afterEach, describe, expect, it } from 'vitest';
import type { SyncEvent } from '../../shared/event.ts';
import type { AckFrame } from '../../shared/protocol.ts';
import { CloseCode } from '../../shared/errors.ts';
import { freshStoreLocation, initHubDb, removeTempDirs, spawnHub, type SpawnedHub } from '../kit/hub.ts';
import { closeAllClients, makeEvents, range, SyncClient } from '../kit/ws-client.ts';

const spawned: SpawnedHub[] = [];
afterEach(async () => {
  await closeAllClients();
  await Promise.all(spawned.splice(0).map((s) => s.stop()));
  removeTempDirs();
});

async function start(dbPath: string): Promise<SpawnedHub> {
  const s = await spawnHub(dbPath);
  spawned.push(s);
  return s;
}

/** Read the whole log through a fresh connection with afterSeq 0. */
async function readAll(url: string, token: string): Promise<SyncEvent[]> {
  const r = await SyncClient.connect(url, 'p1', token);
  const welcome = await r.hello('auditor', 0);
  if (welcome.headSeq > 0) await r.waitForSeq(welcome.headSeq, 20_000);
  await r.close();
  return r.events;
}

describe('durability', () => {
  it('keeps every acked event, with its seq and body, across kill -9 and restart', async () => {
    const dbPath = await freshStoreLocation();
    const token = await initHubDb(dbPath);
    const hub1 = await start(dbPath);

    const writers = await Promise.all(range(1, 3).map((i) => SyncClient.open(hub1.url, 'p1', token, `dev-${i}`)));
    const acked: { deviceId: string; ack: AckFrame }[] = [];
    // Phase 1: pushes we wait for.
    await Promise.all(
      writers.map(async (w) => {
        for (let b = 1; b <= 10; b++) acked.push({ deviceId: w.deviceId, ack: await w.push(b, makeEvents(b * 100, 20, { payloadBytes: 300 })) });
      }),
    );
    // Phase 2: keep pushing, pipelined, and kill the hub while acks are still arriving.
    const inFlight = writers.flatMap((w) =>
      range(11, 60).map((b) =>
        w.push(b, makeEvents(b * 100, 20, { payloadBytes: 300 }), 20_000).then(
          (ack) => void acked.push({ deviceId: w.deviceId, ack }),
          () => {},
        ),
      ),
    );
    const seenBeforeKill = writers[0]!;
    await seenBeforeKill.waitForSeq(700);
    hub1.kill('SIGKILL');
    const exit = await hub1.exited;
    expect(exit.signal).toBe('SIGKILL');
    await Promise.all(inFlight);
    await Promise.all(writers.map((w) => w.closed));
    // The kill hit before all 3 x 60 pushes were acked (else the test proves little).
    expect(acked.length).toBeGreaterThanOrEqual(30);

    const hub2 = await start(dbPath);
    const log = await readAll(hub2.url, token);
    // Contiguous from 1, nothing lost that was acked.
    expect(log.map((e) => e.serverSeq)).toEqual(range(1, log.length));
    const bySeq = new Map(log.map((e) => [e.serverSeq, e]));
    let ackedEvents = 0;
    for (const { deviceId, ack } of acked) {
      for (const a of ack.acks) {
        const e = bySeq.get(a.serverSeq);
        expect(e, `acked seq ${a.serverSeq} is missing after restart`).toBeDefined();
        expect(e!.deviceId).toBe(deviceId);
        expect(e!.clientActionId).toBe(a.clientActionId);
        ackedEvents++;
      }
    }
    expect(log.length).toBeGreaterThanOrEqual(ackedEvents);
    // Bodies are byte-for-byte what was streamed before the crash.
    for (const e of seenBeforeKill.events) expect(bySeq.get(e.serverSeq)).toEqual(e);

    // The restarted hub continues the sequence without reuse.
    const w = await SyncClient.open(hub2.url, 'p1', token, 'dev-after');
    const ack = await w.push(1, makeEvents(1, 2));
    expect(ack.acks.map((x) => x.serverSeq)).toEqual([log.length + 1, log.length + 2]);
  });

  it('exits 0 on SIGTERM, closing sockets with 1001, and keeps what it acked', async () => {
    const dbPath = await freshStoreLocation();
    const token = await initHubDb(dbPath);
    const hub1 = await start(dbPath);
    const w = await SyncClient.open(hub1.url, 'p1', token, 'dev-a');
    const acks: AckFrame[] = [];
    for (let b = 1; b <= 5; b++) acks.push(await w.push(b, makeEvents(b * 10, 5)));
    await w.waitForSeq(25);

    hub1.kill('SIGTERM');
    const close = await w.waitForClose(10_000);
    expect(close.code).toBe(CloseCode.GoingAway);
    expect(w.errors.map((e) => e.code)).toEqual(['shutting_down']);
    const exit = await hub1.exited;
    expect(exit).toEqual({ code: 0, signal: null });

    const hub2 = await start(dbPath);
    const log = await readAll(hub2.url, token);
    expect(log.map((e) => e.serverSeq)).toEqual(range(1, 25));
    for (const ack of acks) for (const a of ack.acks) expect(log[a.serverSeq - 1]!.clientActionId).toBe(a.clientActionId);
    expect(log).toEqual(w.events);
  });
});
