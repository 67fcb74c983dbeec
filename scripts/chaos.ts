// The chaos soak: `npm run chaos -- --minutes 30 --seed S [--devices N]`.
// Runs the chaos harness (test/chaos/harness.ts) with production agent timings and minutes-long
// faults (apps holding their write lock 5-30 s, a 20,000-event backlog behind a 3 KB/s link, ...),
// logs progress on stderr, prints a JSON summary on stdout
// {seed, minutes, devices, eventsWritten, hubEvents, faults: {kind: count}, violations: [...], stats}
// (stats.agentExits, stats.backlog, stats.appHolds, ...), ends with a one-paragraph verdict on
// stderr, and exits 1 when any check was violated.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { runChaos, soakConfig } from '../test/chaos/harness.ts';

const Args = z.object({
  minutes: z.coerce.number().positive().max(24 * 60).default(30),
  seed: z.coerce.number().int().default(() => Date.now() % 1_000_000),
  devices: z.coerce.number().int().min(5, "the suite runs at least 5 devices").max(50).default(5),
});

let args: z.infer<typeof Args>;
try {
  const { values } = parseArgs({ options: { minutes: { type: 'string' }, seed: { type: 'string' }, devices: { type: 'string' } }, strict: true });
  args = Args.parse(values);
} catch (err) {
  const issue = err instanceof z.ZodError ? err.issues[0] : undefined;
  process.stderr.write(`chaos: ${issue ? `--${issue.path.join('.')}: ${issue.message}` : (err as Error).message}\n`);
  process.exit(2);
}

// Interrupted: exit through process.exit so the harness's exit hook kills every child it started.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

const summary = await runChaos({ ...soakConfig(args.seed, args.minutes, args.devices), log: (l) => process.stderr.write(`${l}\n`) });
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
const verdict = [
  `chaos: seed ${summary.seed}, ${summary.minutes} min, ${summary.devices} devices: ${summary.violations.length} violation(s)`,
  `agent exits = ${summary.stats.agentExits}`,
  `${summary.eventsWritten} app changes + ${summary.stats.loadedEvents} loaded = ${summary.hubEvents} hub events`,
  `faults: ${Object.entries(summary.faults).map(([k, n]) => `${k} ${n}`).join(', ')}`,
  ...summary.stats.appHolds
    .filter((h) => h.kind === 'app_lock')
    .map((h) => `app ${h.device} held its write lock ${(h.heldMs / 1000).toFixed(1)} s (${h.changes} changes ${h.committed ? 'committed' : 'rolled back'})`),
  ...summary.stats.backlog.map(
    (b) =>
      `slow device ${b.device} (${b.events}-event backlog, ${b.rate} B/s for ${(b.ms / 1000).toFixed(0)} s): cursor ${b.cursorBefore} -> ${b.cursorAfter}, ` +
      `moved ${b.advances} times (acks ${b.ackMoves}), longest standstill ${(b.longestStillMs / 1000).toFixed(1)} s (bound ${(b.boundMs / 1000).toFixed(0)} s), ${b.newConnections} connection(s)`,
  ),
];
process.stderr.write(`${verdict.join('\n  ')}\n`);
// Everything the run started is stopped by now; exit explicitly so nothing can keep the process up.
process.exit(summary.violations.length > 0 ? 1 : 0);
