// Guarantee 6: bad input gets a clear answer (an `error` frame with a stable code,
// then a close) and changes nothing; other connections carry on. Well-formed but
// unacceptable events are rejected one by one, the rest of their batch is kept.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CloseCode, ErrorCode, RejectReason } from '../../shared/errors.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { failInsertsOf } from '../kit/store-faults.ts';
import { closeAllClients, makeEvent, makeEvents, SyncClient } from '../kit/ws-client.ts';

const MAX_FRAME = 64 * 1024;
const MAX_BATCH = 10;

let h: TestHub;
let witness: SyncClient;
let witnessBatch = 0;

beforeEach(async () => {
  h = await startHub({ options: { maxFrameBytes: MAX_FRAME, maxBatchEvents: MAX_BATCH, helloTimeoutMs: 2000 } });
  witness = await SyncClient.open(h.url, 'p1', h.token, 'witness');
  witnessBatch = 0;
});
afterEach(async () => {
  await closeAllClients();
  await h.close();
});

/** The witness, connected all along, can still push and see its event streamed. */
async function witnessStillWorks(): Promise<void> {
  witnessBatch++;
  const ack = await witness.push(witnessBatch, [makeEvent(1000 + witnessBatch)]);
  expect(ack.acks).toHaveLength(1);
  await witness.waitForSeq(ack.acks[0]!.serverSeq);
  expect(witness.closeInfo).toBeNull();
}

type Step = (c: SyncClient) => Promise<unknown> | void;
const hello: Step = (c) => c.hello('dev-bad', 0);
const raw =
  (frame: object | string | Buffer): Step =>
  (c) =>
    c.send(frame);
const steps =
  (...list: Step[]): Step =>
  async (c) => {
    for (const s of list) await s(c);
  };
const push = (events: unknown[], extra: object = {}) => raw({ type: 'push', batch: 1, events, ...extra });
const helloFrame = (fields: object) => raw({ type: 'hello', protocol: 1, deviceId: 'dev-bad', afterSeq: 0, ...fields });

const { payload: _payload, ...eventWithoutPayload } = makeEvent(1);

const cases: [string, Step, string][] = [
  ['not JSON, before hello', raw('this is {not json'), ErrorCode.BadJson],
  ['not JSON, after hello', steps(hello, raw('{"type":"push",')), ErrorCode.BadJson],
  ['a JSON array', raw('[{"type":"hello","protocol":1,"deviceId":"d","afterSeq":0}]'), ErrorCode.InvalidFrame],
  ['a JSON scalar', raw('42'), ErrorCode.InvalidFrame],
  ['JSON null', raw('null'), ErrorCode.InvalidFrame],
  ['an object without type', raw({ protocol: 1, deviceId: 'd', afterSeq: 0 }), ErrorCode.InvalidFrame],
  ['an unknown type, before hello', raw({ type: 'subscribe', project: 'p1' }), ErrorCode.InvalidFrame],
  ['an unknown type, after hello', steps(hello, raw({ type: 'pull', afterSeq: 0 })), ErrorCode.InvalidFrame],
  ['push before hello', push([makeEvent(1)]), ErrorCode.HelloRequired],
  ['a second hello', steps(hello, helloFrame({})), ErrorCode.DuplicateHello],
  ['hello with afterSeq as a string', helloFrame({ afterSeq: '0' }), ErrorCode.InvalidFrame],
  ['hello with a negative afterSeq', helloFrame({ afterSeq: -1 }), ErrorCode.InvalidFrame],
  ['hello with a fractional protocol', helloFrame({ protocol: 1.5 }), ErrorCode.InvalidFrame],
  ['hello with an empty deviceId', helloFrame({ deviceId: '' }), ErrorCode.InvalidFrame],
  ['hello without deviceId', raw({ type: 'hello', protocol: 1, afterSeq: 0 }), ErrorCode.InvalidFrame],
  ['push with entityId as a number (valid event beside it)', steps(hello, push([makeEvent(1), { ...makeEvent(2), entityId: 5 }])), ErrorCode.InvalidFrame],
  ['push with clientActionId as a string', steps(hello, push([{ ...makeEvent(1), clientActionId: '1' }])), ErrorCode.InvalidFrame],
  ['push with a fractional clientActionId', steps(hello, push([{ ...makeEvent(1), clientActionId: 1.5 }])), ErrorCode.InvalidFrame],
  ['push with payload.schemaVersion 2', steps(hello, push([{ ...makeEvent(1), payload: { schemaVersion: 2, newData: {}, previousData: null } }])), ErrorCode.InvalidFrame],
  ['push with newData an array', steps(hello, push([{ ...makeEvent(1), payload: { schemaVersion: 1, newData: [1], previousData: null } }])), ErrorCode.InvalidFrame],
  ['push of an event without payload', steps(hello, push([makeEvent(1), eventWithoutPayload])), ErrorCode.InvalidFrame],
  ['push without batch', steps(hello, raw({ type: 'push', events: [makeEvent(1)] })), ErrorCode.InvalidFrame],
  ['push with events not an array', steps(hello, raw({ type: 'push', batch: 1, events: makeEvent(1) })), ErrorCode.InvalidFrame],
  ['push of zero events', steps(hello, push([])), ErrorCode.InvalidFrame],
  ['a binary frame, before hello', raw(Buffer.from(JSON.stringify({ type: 'hello', protocol: 1, deviceId: 'd', afterSeq: 0 }))), ErrorCode.InvalidFrame],
  ['a binary frame, after hello', steps(hello, raw(Buffer.from(JSON.stringify({ type: 'push', batch: 1, events: [makeEvent(1)] })))), ErrorCode.InvalidFrame],
  ['a frame just over maxFrameBytes', steps(hello, push([makeEvent(1, { payloadBytes: MAX_FRAME + 100 })])), ErrorCode.FrameTooLarge],
  ['too many events in one push', steps(hello, push(makeEvents(1, MAX_BATCH + 1))), ErrorCode.BatchTooLarge],
  ['unsupported protocol version 2', helloFrame({ protocol: 2 }), ErrorCode.UnsupportedProtocol],
  ['unsupported protocol version 0', helloFrame({ protocol: 0 }), ErrorCode.UnsupportedProtocol],
  ['afterSeq beyond the head', helloFrame({ afterSeq: 1_000_000 }), ErrorCode.CursorAhead],
  ['no hello within helloTimeoutMs', () => {}, ErrorCode.HelloRequired],
];

describe('bad frames', () => {
  it.each(cases)('%s -> error frame with its code, close, nothing stored', async (_name, step, code) => {
    // Something in the log first, so "nothing stored" is a real check and afterSeq is meaningful.
    await witnessStillWorks();
    const headBefore = await h.store.headSeq('p1');
    const c = await SyncClient.connect(h.url, 'p1', h.token);
    await step(c);
    const close = await c.waitForClose(5000);
    expect(c.errors.map((e) => e.code)).toEqual([code]);
    expect(c.errors[0]!.message.length).toBeGreaterThan(0);
    // The error frame is the last frame before the close; no ack went out.
    expect(c.inbox.at(-1)).toMatchObject({ type: 'error', code });
    expect(c.acks.size).toBe(0);
    expect(close).toEqual({ code: CloseCode.PolicyViolation, reason: code });
    expect(await h.store.headSeq('p1')).toBe(headBefore);
    await witnessStillWorks();
    expect(await h.store.headSeq('p1')).toBe(headBefore + 1);
  });

  it('a frame far over the limit is cut off unread with close 1009; nothing stored, the hub carries on', async () => {
    const headBefore = await h.store.headSeq('p1');
    const c = await SyncClient.connect(h.url, 'p1', h.token);
    await c.hello('dev-big', 0);
    c.send({ type: 'push', batch: 1, events: [makeEvent(1, { payloadBytes: 3 * MAX_FRAME })] });
    const close = await c.waitForClose(5000);
    expect(close.code).toBe(CloseCode.TooBig);
    expect(c.acks.size).toBe(0);
    expect(await h.store.headSeq('p1')).toBe(headBefore);
    await witnessStillWorks();
  });

  it('rejects unacceptable events one by one and stores the rest of the batch', async () => {
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-mixed');
    const headBefore = await h.store.headSeq('p1');
    const batch = [
      makeEvent(1),
      makeEvent(2, { entityId: '' }),
      makeEvent(3, { entityType: 'bad-type' }),
      makeEvent(4, { entityType: 'issues; DROP TABLE issues' }),
      makeEvent(5, { actionType: 'frobnicate' }),
      makeEvent(6, { clientTimestamp: 'yesterday' }),
      makeEvent(7, { clientTimestamp: '2025-13-45T99:00:00Z' }),
      makeEvent(8, { sessionId: '' }),
      makeEvent(9, { entityType: '' }),
      makeEvent(10, { actionType: 'update', entityType: 'boards', entityId: 'b-1' }),
    ];
    const ack = await c.push(1, batch);
    expect(ack.rejected).toEqual([
      { clientActionId: 2, reason: RejectReason.InvalidEntityId },
      { clientActionId: 3, reason: RejectReason.InvalidEntityType },
      { clientActionId: 4, reason: RejectReason.InvalidEntityType },
      { clientActionId: 5, reason: RejectReason.InvalidActionType },
      { clientActionId: 6, reason: RejectReason.InvalidTimestamp },
      { clientActionId: 7, reason: RejectReason.InvalidTimestamp },
      { clientActionId: 8, reason: RejectReason.InvalidSessionId },
      { clientActionId: 9, reason: RejectReason.InvalidEntityType },
    ]);
    expect(ack.acks).toEqual([
      { clientActionId: 1, serverSeq: headBefore + 1 },
      { clientActionId: 10, serverSeq: headBefore + 2 },
    ]);
    expect(await h.store.headSeq('p1')).toBe(headBefore + 2);
    await c.waitForSeq(headBefore + 2);
    expect(c.events.map((e) => e.clientActionId)).toEqual([1, 10]);
    expect(c.events[1]).toMatchObject({ actionType: 'update', entityType: 'boards', entityId: 'b-1' });

    // A push whose events are all rejected gets an ack with no acks, stores nothing, keeps the socket.
    const none = await c.push(2, [makeEvent(11, { entityId: '' }), makeEvent(12, { actionType: 'nope' })]);
    expect(none.acks).toEqual([]);
    expect(none.rejected.map((r) => r.reason)).toEqual([RejectReason.InvalidEntityId, RejectReason.InvalidActionType]);
    expect(await h.store.headSeq('p1')).toBe(headBefore + 2);
    // A rejected event was not burnt by the dedup key: fixed, it is accepted.
    const fixed = await c.push(3, [makeEvent(2)]);
    expect(fixed.acks).toEqual([{ clientActionId: 2, serverSeq: headBefore + 3 }]);
    expect(c.closeInfo).toBeNull();
    expect(c.errors).toEqual([]);
  });

  it('pushes pipelined behind a refused hello are dropped, not stored', async () => {
    await witnessStillWorks();
    const headBefore = await h.store.headSeq('p1');
    const c = await SyncClient.connect(h.url, 'p1', h.token);
    c.send({ type: 'hello', protocol: 1, deviceId: 'dev-ahead', afterSeq: headBefore + 5 });
    c.send({ type: 'push', batch: 1, events: [makeEvent(1)] });
    c.send({ type: 'push', batch: 2, events: [makeEvent(2)] });
    await c.waitForClose();
    expect(c.errors.map((e) => e.code)).toEqual([ErrorCode.CursorAhead]);
    expect(c.acks.size).toBe(0);
    expect(await h.store.headSeq('p1')).toBe(headBefore);
    await witnessStillWorks();
  });

  it('limits are inclusive: a frame of exactly maxFrameBytes and a push of exactly maxBatchEvents are accepted', async () => {
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-limits');
    const event = makeEvent(1, { payloadBytes: MAX_FRAME - 1000 });
    const frame = { type: 'push', batch: 1, events: [event] };
    const body = event.payload.newData as { body: string };
    body.body += 'y'.repeat(MAX_FRAME - Buffer.byteLength(JSON.stringify(frame)));
    expect(Buffer.byteLength(JSON.stringify(frame))).toBe(MAX_FRAME);
    const ack = await c.push(1, [event]);
    expect(ack.acks).toHaveLength(1);
    const full = await c.push(2, makeEvents(100, MAX_BATCH));
    expect(full.acks).toHaveLength(MAX_BATCH);
    expect(c.closeInfo).toBeNull();
  });

  it('a commit that fails in the store stores nothing of the push, answers store_unavailable, and leaves no gap', async () => {
    await witnessStillWorks();
    const headBefore = await h.store.headSeq('p1');
    // Make the store's transaction fail on its third insert, after two rows were written.
    const heal = await failInsertsOf(h.dbPath, 666);
    try {
      const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-fail');
      c.send({ type: 'push', batch: 1, events: [makeEvent(1), makeEvent(2), makeEvent(666)] });
      const close = await c.waitForClose();
      expect(c.errors.map((e) => e.code)).toEqual([ErrorCode.StoreUnavailable]);
      expect(close.code).toBe(CloseCode.Internal);
      expect(c.acks.size).toBe(0);
      expect(await h.store.headSeq('p1')).toBe(headBefore);
      expect(await h.store.readAfter('p1', headBefore, 10)).toEqual([]);
    } finally {
      await heal();
    }
    // The retry is stored in full, right after the old head, and the stream has no gap.
    const retry = await SyncClient.open(h.url, 'p1', h.token, 'dev-fail', headBefore);
    const ack = await retry.push(1, [makeEvent(1), makeEvent(2), makeEvent(666)]);
    expect(ack.acks.map((a) => a.serverSeq)).toEqual([headBefore + 1, headBefore + 2, headBefore + 3]);
    await retry.waitForSeq(headBefore + 3);
    expect(retry.seqs).toEqual([headBefore + 1, headBefore + 2, headBefore + 3]);
    await witnessStillWorks();
    await witness.waitForSeq(headBefore + 4);
    expect(witness.seqs).toEqual(Array.from({ length: headBefore + 4 }, (_, i) => i + 1));
  });

  it('accepts the timestamp formats the protocol allows', async () => {
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-ts');
    const ack = await c.push(1, [
      makeEvent(1, { clientTimestamp: '2025-01-02T03:04:05Z' }),
      makeEvent(2, { clientTimestamp: '2025-01-02T03:04:05.123456+02:00' }),
      makeEvent(3, { clientTimestamp: '2025-01-02T03:04-05:00' }),
    ]);
    expect(ack.rejected).toEqual([]);
    expect(ack.acks).toHaveLength(3);
  });
});
