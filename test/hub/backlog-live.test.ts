// Guarantee 3 at the backlog-to-live switch: readers joining at a random cursor
// while writers keep committing get exactly K+1..head, in order, once each.
import { afterEach, describe, expect, it } from 'vitest';
import type { HubOptionsInput } from '../../hub/config.ts';
import { metricValue, startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, delay, makeEvent, makeEvents, range, seededRandom, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

const ITERATIONS = 30;

interface Reader {
  client: SyncClient;
  afterSeq: number;
  /** The hub's head in the welcome. */
  headAtHello: number;
}

async function switchScenario(options: HubOptionsInput, seed: number) {
  h = await startHub({ options });
  const rnd = seededRandom(seed);
  const writers = await Promise.all(range(1, 3).map((i) => SyncClient.open(h!.url, 'p1', h!.token, `writer-${i}`, 0, { keepEvents: false })));
  let ackedHead = 0;
  let stop = false;
  const loops = writers.map(async (w, wi) => {
    const r = seededRandom(seed * 31 + wi);
    let id = 1;
    let batch = 1;
    while (!stop) {
      const n = 1 + Math.floor(r() * 6);
      const ack = await w.push(batch++, makeEvents(id, n, { payloadBytes: 300 }));
      id += n;
      ackedHead = Math.max(ackedHead, ...ack.acks.map((a) => a.serverSeq));
      if (r() < 0.3) await delay(Math.floor(r() * 3));
    }
  });
  const loopsDone = Promise.all(loops);
  // A backlog to start from.
  while (ackedHead < 300) await delay(5);

  const readers: Reader[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    await delay(Math.floor(rnd() * 25));
    // Anywhere in the log, sometimes right at the live edge or at 0.
    const p = rnd();
    const afterSeq = p < 0.15 ? ackedHead : p < 0.25 ? 0 : Math.floor(rnd() * (ackedHead + 1));
    const client = await SyncClient.connect(h.url, 'p1', h.token, { keepEvents: false });
    const welcome = await client.hello(`reader-${i}`, afterSeq);
    readers.push({ client, afterSeq, headAtHello: welcome.headSeq });
  }
  stop = true;
  await loopsDone;

  // A last event after the writers stopped: once a reader has it, it has had every chance
  // to show a gap, a repeat or a disorder anywhere before it.
  const last = await writers[0]!.push(1_000_000, [makeEvent(1_000_000)]);
  const head = last.acks[0]!.serverSeq;
  expect(await h.store.headSeq('p1')).toBe(head);
  await Promise.all(readers.map((r) => r.client.waitForSeq(head, 30_000)));
  for (const r of readers) {
    expect(r.client.seqs.length, `reader after ${r.afterSeq}`).toBe(head - r.afterSeq);
    expect(r.client.seqs).toEqual(range(r.afterSeq + 1, head));
    // Every frame's headSeq is at least its throughSeq.
    expect(r.client.headBehindFrames).toBe(0);
  }
  // Writers receive the whole log too.
  await Promise.all(writers.map((w) => w.waitForSeq(head)));
  for (const w of writers) expect(w.seqs).toEqual(range(1, head));
  // The readers really joined a moving log.
  expect(readers.some((r) => r.headAtHello > r.afterSeq + 50)).toBe(true);
  expect(head).toBeGreaterThan(readers[0]!.headAtHello);
  return { readers, head };
}

describe('backlog-to-live switch', () => {
  it(`default options: ${ITERATIONS} readers at random cursors (seed 1)`, async () => {
    await switchScenario({}, 1);
  });

  it(`small in-memory tail: readers cross from store pages to the tail (seed 2)`, async () => {
    const { readers } = await switchScenario({ tailEvents: 16, pageEvents: 5 }, 2);
    // Readers behind the 16-event tail must have been served from the store.
    expect(readers.some((r) => r.headAtHello - r.afterSeq > 100)).toBe(true);
    expect(await metricValue(h!.hub, 'synchub_backlog_reads_total')).toBeGreaterThan(0);
  });

  it(`small tail and a tiny socket high-water mark: readers block and resume repeatedly (seed 3)`, async () => {
    await switchScenario({ tailEvents: 16, pageEvents: 5, highWaterBytes: 4096 }, 3);
    expect(await metricValue(h!.hub, 'synchub_backlog_reads_total')).toBeGreaterThan(0);
    expect(await metricValue(h!.hub, 'synchub_slow_consumers_total')).toBe(0);
  });
});
