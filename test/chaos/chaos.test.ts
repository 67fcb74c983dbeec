// The short chaos run inside `npm test`: 5 real agents and a real hub behind fault proxies, kill -9
// of hub and agents, cut/stalled/reset links, a long offline stretch, a slow device and clock skew,
// then the four checks (see harness.ts). Seeded (CHAOS_SEED overrides) and bounded: well under two
// minutes of wall time, and every process it started is stopped, also on failure.
import { describe, expect, it } from 'vitest';
import { runChaos, shortConfig } from './harness.ts';

const seed = Number(process.env.CHAOS_SEED ?? 20240611);

describe('chaos', () => {
  it(`no acknowledged change is lost and every device converges under faults (seed ${seed})`, async () => {
    const lines: string[] = [];
    const summary = await runChaos({ ...shortConfig(seed), log: (l) => lines.push(l) });
    const report = JSON.stringify(summary, null, 2);
    if (summary.violations.length > 0) console.error(`${lines.join('\n')}\n${report}`);
    else console.log(report);
    expect(summary.violations).toEqual([]);
    // The run did what it claims: changes flowed and every kind of fault happened.
    expect(summary.hubEvents).toBeGreaterThan(500);
    expect(summary.eventsWritten).toBe(summary.hubEvents);
    for (const kind of ['hub_kill', 'agent_kill', 'link_cut', 'link_stall', 'link_reset', 'offline', 'slow', 'clock_skew']) {
      expect(summary.faults[kind] ?? 0, kind).toBeGreaterThan(0);
    }
  }, 115_000);
});
