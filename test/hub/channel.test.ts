// ProjectChannel: commits are framed once and shared by every reader at the same cursor.
import { describe, expect, it } from 'vitest';
import { ProjectChannel } from '../../hub/fanout.ts';

const events = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ seq: from + i, json: JSON.stringify({ serverSeq: from + i, pad: 'x'.repeat(100) }) }));

describe('ProjectChannel', () => {
  it('cuts a large commit into page-sized frames that readers at a frame boundary share', () => {
    const ch = new ProjectChannel('p', 0, 10_000, 1000);
    ch.publish(events(1, 2500));
    const a = ch.frameAfter(0)!;
    expect(ch.frameAfter(0)).toBe(a); // the same buffer, not a copy
    expect([a.firstSeq, a.throughSeq]).toEqual([1, 1000]);
    expect([ch.frameAfter(1000)!.firstSeq, ch.frameAfter(2000)!.throughSeq]).toEqual([1001, 2500]);
    expect(ch.frameAfter(2000)).toBe(ch.frameAfter(2000));
    // A reader in the middle of a frame gets its own frame from the tail, then joins the shared ones.
    const mid = ch.frameAfter(500)!;
    expect([mid.firstSeq, mid.throughSeq]).toEqual([501, 1500]);
    expect(ch.frameAfter(500)).not.toBe(mid);
    const parsed = JSON.parse(a.data.toString());
    expect(parsed.events.map((e: { serverSeq: number }) => e.serverSeq)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(parsed).toMatchObject({ type: 'events', throughSeq: 1000, headSeq: 2500 });
  });

  it('keeps shared frames within its byte budget and falls back to the tail', () => {
    const ch = new ProjectChannel('p', 0, 100_000, 100, Infinity, 50_000);
    for (let i = 0; i < 20; i++) ch.publish(events(i * 100 + 1, 100));
    const first = ch.frameAfter(0)!;
    expect(ch.frameAfter(0)).not.toBe(first); // evicted: built afresh from the tail each time
    expect(ch.frameAfter(1900)).toBe(ch.frameAfter(1900)); // recent: shared
    expect([first.firstSeq, first.throughSeq]).toEqual([1, 100]);
  });

  it('answers null for a reader behind the tail (it must read the store)', () => {
    const ch = new ProjectChannel('p', 5000, 100, 50);
    ch.publish(events(5001, 300)); // the tail keeps ~the last 100-150 events
    expect(ch.frameAfter(4000)).toBeNull();
    expect(ch.frameAfter(5000)).not.toBeNull();
  });

  it('bounds its tail in bytes as well as in events: large events push the oldest out', () => {
    const big = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ seq: from + i, json: JSON.stringify({ serverSeq: from + i, pad: 'x'.repeat(10_000) }) }));
    const ch = new ProjectChannel('p', 0, 10_000, 100, Infinity, 0, 100_000);
    ch.publish(big(1, 50));
    // 50 events of ~10 KB against a 100 KB budget: only the newest ~9 stay.
    expect(ch.tailSize).toBeLessThanOrEqual(100_000);
    expect(ch.tailSize).toBeGreaterThan(80_000);
    expect(ch.frameAfter(10)).toBeNull();
    expect(ch.frameAfter(45)!.firstSeq).toBe(46);
    // One event larger than the whole budget still stays (the live edge is always in memory).
    ch.publish([{ seq: 51, json: 'y'.repeat(200_000) }]);
    expect(ch.frameAfter(50)!.throughSeq).toBe(51);
    expect(ch.tailSize).toBe(200_000);
  });
});
