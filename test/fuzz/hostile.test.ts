// The generator itself: same seed, same scripts; every kind of hostile input shows up in a short
// run; well-formed pushes fit the frame limit and say which of their events must be rejected.
import { expect, it } from 'vitest';
import { HostileGenerator } from './hostile.ts';

const cfg = { projectA: 'p1', projectB: 'p2', appTables: ['issues', 'comments'], maxFrameBytes: 64 * 1024, maxBatchEvents: 50, maxEventBytes: 8 * 1024 };
const scripts = (seed: number, n: number) => {
  const g = new HostileGenerator(seed, cfg);
  return Array.from({ length: n }, () => g.nextScript(40));
};

it('is deterministic for a seed and differs across seeds', () => {
  const text = (seed: number) => JSON.stringify(scripts(seed, 100).map((s) => [s.kind, s.urlProject, s.hello, s.frames.map((f) => f.data.toString('base64' as never))]));
  expect(text(7)).toBe(text(7));
  expect(text(7)).not.toBe(text(8));
});

it('covers every kind of hostile input, and pushes fit the frame limit', () => {
  const all = scripts(1, 1000);
  const kinds = new Set(all.map((s) => s.kind));
  for (const k of ['upgrade-no-token', 'upgrade-malformed-token', 'upgrade-unknown-token', 'upgrade-other-project', 'upgrade-path-trick', 'upgrade-wrong-project', 'silent', 'push-before-hello', 'hello-bad-protocol', 'hello-future-cursor', 'hello-hijack-device', 'read-token-push', 'binary-random', 'binary-json', 'text-random', 'truncated-json', 'deep-json', 'deep-events', 'huge-frame', 'batch-too-large', 'wrong-type', 'big-number', 'nan-like', 'unknown-type', 'second-hello', 'empty-push', 'proto-only-frame', 'invalid-utf8', 'bad-payload-shape', 'flood', 'pushes']) {
    expect(kinds, k).toContain(k);
  }
  const pushes = all.flatMap((s) => s.frames.filter((f) => f.push));
  for (const f of pushes) expect(Buffer.byteLength(f.data)).toBeLessThanOrEqual(cfg.maxFrameBytes);
  const reasons = new Set(pushes.flatMap((f) => f.push!.events.map((e) => e.reject)));
  expect([...reasons].sort()).toEqual([null, 'invalid_action_type', 'invalid_entity_id', 'invalid_entity_type', 'invalid_payload', 'invalid_session_id', 'invalid_timestamp', 'payload_too_large'].sort((a, b) => String(a).localeCompare(String(b))));
  // Prototype keys really travel as own keys of the JSON text, rows included.
  expect(pushes.some((f) => (f.data as string).includes('"newData":{"__proto__"'))).toBe(true);
});
