// The chaos soak: `npm run chaos -- --minutes 30 --seed S [--devices N] [--postgres]`.
// With --postgres the hub runs as two nodes on a throwaway PostgreSQL cluster (started here and
// removed at the end); each device's link balances over both nodes, and hub kills take one node
// at a time.
// Runs the chaos harness (test/chaos/harness.ts) with production agent timings and minutes-long
// faults (apps holding their write lock 5-30 s, a 20,000-event backlog behind a 3 KB/s link, ...),
// logs progress on stderr, prints a JSON summary on stdout
// {seed, minutes, devices, eventsWritten, hubEvents, faults: {kind: count}, violations: [...], stats}
// (stats.agentExits, stats.backlog, stats.appHolds, ...), ends with a one-paragraph verdict on
// stderr, and exits 1 when any check was violated.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { runChaos, soakConfig } from '../test/chaos/harness.ts';
import { createDatabase, startCluster, type Cluster } from '../test/kit/postgres.ts';

const Args = z.object({
  minutes: z.coerce.number().positive().max(24 * 60).default(30),
  seed: z.coerce.number().int().default(() => Date.now() % 1_000_000),
  devices: z.coerce.number().int().min(5, "the suite runs at least 5 devices").max(50).default(5),
  postgres: z.boolean().default(false),
});

let args: z.infer<typeof Args>;
try {
  const { values } = parseArgs({ options: { minutes: { type: 'string' }, seed: { type: 'string' }, devices: { type: 'string' }, postgres: { type: 'boolean' } }, strict: true });
  args = Args.parse(values);
} catch (err) {
  const issue = err instanceof z.ZodError ? err.issues[0] : undefined;
  process.stderr.write(`chaos: ${issue ? `--${issue.path.join('.')}: ${issue.message}` : (err as Error).message}\n`);
  process.exit(2);
}

let cluster: Cluster | null = null;
// Interrupted: exit through process.exit so the harness's exit hook kills every child it started
// (and stop the PostgreSQL cluster first: pg_ctl detached it from our process group).
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void (cluster?.stop() ?? Promise.resolve()).finally(() => process.exit(130)));
}

let postgresUrl: string | null = null;
if (args.postgres) {
  cluster = await startCluster();
  postgresUrl = await createDatabase(cluster.url, 'chaos');
  process.stderr.write(`chaos: PostgreSQL cluster on port ${cluster.port}\n`);
}
const cfg = soakConfig(args.seed, args.minutes, args.devices);
// Connection kills only exist on PostgreSQL: as many as hub kills.
if (postgresUrl) cfg.guaranteed = { ...cfg.guaranteed, pg_conn_kill: cfg.guaranteed.hub_kill ?? 1 };
const summary = await runChaos({ ...cfg, postgresUrl, log: (l) => process.stderr.write(`${l}\n`) });
await cluster?.stop();
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
const verdict = [
  `chaos: seed ${summary.seed}, ${summary.minutes} min, ${summary.devices} devices${args.postgres ? ', 2 hub nodes on PostgreSQL' : ''}: ${summary.violations.length} violation(s)`,
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
