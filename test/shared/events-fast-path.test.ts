// The hand-written events-frame check against its reference, the zod schema: on every frame it
// accepts, zod accepts the same frame and returns the same value (keys, their order, every value,
// rows passed through as the same objects); it accepts every valid events frame; whatever it
// refuses, zod decides. Frames are built as the hub builds them (serializeEvent) and mutated.
import { expect, it } from 'vitest';
import { ServerFrame, type EventsFrame } from '../../shared/protocol.ts';
import { fastEventsFrame } from '../../shared/events-fast-path.ts';
import { ACTION_TYPES } from '../../shared/event.ts';
import { serializeEvent } from '../../hub/store/serialize.ts';
import { mutateAt } from '../kit/mutate.ts';
import { makeEvents, seededRandom } from '../kit/ws-client.ts';

/** A frame's JSON text with its rows left out: keys, their order and every other value. */
const outline = (f: EventsFrame) => JSON.stringify({ ...f, events: f.events.map((e) => ({ ...e, payload: { ...e.payload, newData: 'ROW', previousData: 'ROW' } })) });

/** Compare the two on one JSON value; returns whether zod accepted it as an events frame. */
function compare(json: unknown, where: string): boolean {
  const fast = fastEventsFrame(json);
  const ref = ServerFrame.safeParse(json);
  if (fast !== null) {
    expect(ref.success, `${where}: fast path accepted what zod refuses`).toBe(true);
    const data = ref.data as EventsFrame;
    expect(outline(fast), where).toBe(outline(data));
    expect(Object.keys(fast), where).toEqual(Object.keys(data));
    fast.events.forEach((e, i) => {
      expect(e.payload.newData).toBe(data.events[i]!.payload.newData);
      expect(e.payload.previousData).toBe(data.events[i]!.payload.previousData);
    });
  } else if (ref.success && ref.data.type === 'events') {
    expect.fail(`${where}: a valid events frame fell through to zod: ${JSON.stringify(json).slice(0, 200)}`);
  }
  return ref.success && ref.data.type === 'events';
}

/** An events frame's text as the hub sends it (hub/fanout.ts buildFrame around serializeEvent). */
function hubFrame(first: number, count: number, rnd: () => number, digest = true): string {
  const events = makeEvents(first, count).map((e, i) => {
    const actionType = ACTION_TYPES[Math.floor(rnd() * ACTION_TYPES.length)]!;
    const previousData = actionType === 'update' && rnd() < 0.5 ? { title: 'before', n: 1 } : null;
    return serializeEvent(first + i, `dev-${i % 3}`, '2026-11-28T00:00:00.000Z', { ...e, actionType, payload: { ...e.payload, previousData } });
  });
  const through = first + count - 1;
  return `{"type":"events","events":[${events.join(',')}],"throughSeq":${through},"headSeq":${through + 5}${digest ? `,"throughDigest":"${'ab'.repeat(32)}"` : ''}}`;
}

it('takes every frame the hub builds, with the value zod returns', () => {
  const rnd = seededRandom(3);
  for (let i = 0; i < 200; i++) {
    const json = JSON.parse(hubFrame(1 + i * 10, 1 + (i % 10), rnd, i % 4 !== 0)) as unknown;
    expect(compare(json, `frame ${i}`)).toBe(true);
    expect(fastEventsFrame(json)).not.toBeNull();
  }
});

it('agrees with zod on seeded mutations of valid events frames', () => {
  const rnd = seededRandom(11);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const odd: unknown[] = [
    null, undefined, 0, -0, 1, -1, 1.5, 2 ** 53, -(2 ** 53), 2 ** 53 - 1, NaN, '', 'x', 'x'.repeat(201), 'x'.repeat(1001),
    [], {}, [1], { a: 1 }, true, false, '1', 'create', 'update', 'upsert', 'constructor', '__proto__', 'ab'.repeat(32), 'AB'.repeat(32), 'a'.repeat(63),
  ];
  const paths = [
    ['type'], ['events'], ['throughSeq'], ['headSeq'], ['throughDigest'], ['extra'],
    ['events', 0], ['events', 0, 'serverSeq'], ['events', 0, 'deviceId'], ['events', 0, 'sessionId'], ['events', 0, 'clientActionId'],
    ['events', 0, 'actionType'], ['events', 0, 'entityType'], ['events', 0, 'entityId'], ['events', 0, 'clientTimestamp'],
    ['events', 0, 'serverTimestamp'], ['events', 0, 'payload'], ['events', 0, 'extra'],
    ['events', 0, 'payload', 'schemaVersion'], ['events', 0, 'payload', 'newData'], ['events', 0, 'payload', 'previousData'], ['events', 0, 'payload', 'extra'],
    ['events', 1, 'payload', 'newData', 'title'], ['events', 1, 'serverSeq'],
  ] as const;
  let accepted = 0;
  for (let i = 0; i < 6000; i++) {
    const frame = JSON.parse(hubFrame(1 + i, 2, rnd, rnd() < 0.8)) as Record<string, unknown>;
    const path = pick(paths);
    const value = pick(odd);
    mutateAt(frame, path, value, rnd);
    if (compare(frame, `mutation ${i}: ${path.join('.')} = ${String(value)}`)) accepted++;
  }
  // Some mutations keep the frame valid (an extra key, another action, a fitting string): those took the fast path.
  expect(accepted).toBeGreaterThan(1000);
});

it('leaves other frames to zod', () => {
  for (const json of [
    { type: 'welcome', project: 'p', deviceId: 'd', headSeq: 0 },
    { type: 'ack', batch: 0, acks: [], rejected: [] },
    { type: 'events', events: [], throughSeq: 0, headSeq: 0 },
    [{ type: 'events' }],
    'events',
  ]) {
    expect(fastEventsFrame(json)).toBeNull();
    compare(json, JSON.stringify(json));
  }
});
