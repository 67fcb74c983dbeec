// The hand-written push check against its reference, the zod schema: on every frame it accepts,
// zod accepts the same frame and returns the same value (same JSON text, so the same stored
// payload); it accepts every valid push; whatever it refuses, zod decides. Frames come from the
// fuzz suite's hostile generator and from seeded mutations of valid pushes.
import { expect, it } from 'vitest';
import { ClientFrame, type PushFrame } from '../../shared/protocol.ts';
import { fastPushFrame } from '../../shared/push-fast-path.ts';
import { HostileGenerator } from '../fuzz/hostile.ts';
import { mutateAt } from '../kit/mutate.ts';
import { makeEvents, seededRandom } from '../kit/ws-client.ts';

const cfg = { projectA: 'p1', projectB: 'p2', appTables: ['issues', 'comments'], maxFrameBytes: 64 * 1024, maxBatchEvents: 50, maxEventBytes: 8 * 1024 };

/** A frame's JSON text with its rows left out: keys, their order and every other value. */
const outline = (f: PushFrame) => JSON.stringify({ ...f, events: f.events.map((e) => ({ ...e, payload: { ...e.payload, newData: 'ROW', previousData: 'ROW' } })) });

/** Compare the two on one JSON value; returns whether zod accepted it. */
function compare(json: unknown, where: string): boolean {
  const fast = fastPushFrame(json);
  const ref = ClientFrame.safeParse(json);
  if (fast !== null) {
    expect(ref.success, `${where}: fast path accepted what zod refuses`).toBe(true);
    const data = ref.data as PushFrame;
    expect(outline(fast), where).toBe(outline(data));
    // Rows are passed through as they are (and may nest too deep to serialise here).
    fast.events.forEach((e, i) => {
      expect(e.payload.newData).toBe(data.events[i]!.payload.newData);
      expect(e.payload.previousData).toBe(data.events[i]!.payload.previousData);
    });
  } else if (ref.success && ref.data.type === 'push') {
    expect.fail(`${where}: a valid push fell through to zod: ${JSON.stringify(json).slice(0, 200)}`);
  }
  return ref.success;
}

it('agrees with zod on the hostile generator frames', () => {
  const g = new HostileGenerator(20261128, cfg);
  let checked = 0;
  let valid = 0;
  for (let i = 0; i < 1500; i++) {
    const s = g.nextScript(10);
    for (const f of s.frames) {
      if (f.binary) continue;
      let json: unknown;
      try {
        json = JSON.parse(f.data as string);
      } catch {
        continue;
      }
      checked++;
      if (compare(json, `script ${s.id} (${s.kind})`)) valid++;
    }
  }
  expect(checked).toBeGreaterThan(5_000);
  expect(valid).toBeGreaterThan(1_000);
});

it('agrees with zod on seeded mutations of valid pushes', () => {
  const rnd = seededRandom(7);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const odd: unknown[] = [null, undefined, 0, -0, 1, -1, 1.5, 2 ** 53, -(2 ** 53), NaN, '', 'x', 'x'.repeat(65), 'x'.repeat(201), 'x'.repeat(1001), [], {}, [1], { a: 1 }, true, false, '1'];
  const paths = [
    ['type'], ['batch'], ['events'], ['extra'],
    ['events', 0], ['events', 0, 'clientActionId'], ['events', 0, 'sessionId'], ['events', 0, 'actionType'], ['events', 0, 'entityType'],
    ['events', 0, 'entityId'], ['events', 0, 'clientTimestamp'], ['events', 0, 'payload'], ['events', 0, 'extra'],
    ['events', 0, 'payload', 'schemaVersion'], ['events', 0, 'payload', 'newData'], ['events', 0, 'payload', 'previousData'], ['events', 0, 'payload', 'extra'],
    ['events', 1, 'payload', 'newData', 'title'],
  ] as const;
  let accepted = 0;
  for (let i = 0; i < 5000; i++) {
    const frame = JSON.parse(JSON.stringify({ type: 'push', batch: i, events: makeEvents(1, 2) })) as Record<string, unknown>;
    const path = pick(paths);
    const value = pick(odd);
    mutateAt(frame, path, value, rnd);
    if (compare(frame, `mutation ${i}: ${path.join('.')} = ${String(value)}`)) accepted++;
  }
  // Some mutations keep the push valid (an extra key, a fitting string): those took the fast path.
  expect(accepted).toBeGreaterThan(500);
});
