// The short chaos run inside `npm test`: 5 real agents and a real hub behind fault proxies, kill -9
// of hub and agents, cut/stalled/reset links, a long offline stretch, a slow device, clock skew, apps
// holding their database's write lock past 5 s (and a long read transaction), and a device coming
// back to a backlog behind a 3 KB/s link, then the checks (see harness.ts). Seeded (CHAOS_SEED
// overrides) and bounded: well under two minutes of wall time, and every process it started is
// stopped, also on failure.
import { describe, expect, it } from 'vitest';
import { runChaos, shortConfig } from './harness.ts';

const seed = Number(process.env.CHAOS_SEED ?? 20240611);

describe('chaos', () => {
  it(`no acknowledged change is lost, no agent gives up and every device converges under faults (seed ${seed})`, async () => {
    const lines: string[] = [];
    const summary = await runChaos({ ...shortConfig(seed), log: (l) => lines.push(l) });
    const report = JSON.stringify(summary, null, 2);
    if (summary.violations.length > 0) console.error(`${lines.join('\n')}\n${report}`);
    else console.log(report);
    expect(summary.violations).toEqual([]);
    expect(summary.stats.agentExits).toBe(0);
    // The run did what it claims: changes flowed and every kind of fault happened.
    expect(summary.hubEvents).toBeGreaterThan(500);
    expect(summary.eventsWritten + summary.stats.loadedEvents).toBe(summary.hubEvents);
    for (const kind of ['hub_kill', 'agent_kill', 'link_cut', 'link_stall', 'link_reset', 'offline', 'slow', 'clock_skew', 'app_lock', 'app_read_hold', 'slow_backlog']) {
      expect(summary.faults[kind] ?? 0, kind).toBeGreaterThan(0);
    }
    // An app really held its write lock past the 5 s busy timeout, and committed what it wrote inside.
    expect(summary.stats.appHolds.some((h) => h.kind === 'app_lock' && h.heldMs > 5_000 && h.committed && h.changes > 0)).toBe(true);
    // The backlog was loaded and the slow device worked through part of it on its trickle.
    expect(summary.stats.backlog.length).toBeGreaterThan(0);
    for (const b of summary.stats.backlog) {
      expect(b.events).toBe(shortConfig(seed).backlogEvents);
      expect(b.cursorAfter).toBeGreaterThan(b.cursorBefore);
    }
  }, 180_000);
});
