// The long fuzz run: `npm run fuzz -- --minutes 10 --seed S [--sockets N] [--frames N]`.
// Runs test/fuzz/fuzz.ts against a hub on SQLite in its own process (`synchub hub serve`, so that
// hubPeakRssMb is the hub's alone) with well-behaved devices, prints a
// JSON summary on stdout {seed, framesSent, hostileSockets, durationMs, crashes, eventsLost,
// unexpectedInLog, hubPeakRssMb, outcomes, kinds, failures}, and exits 1 when any check failed.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { runFuzz } from '../test/fuzz/fuzz.ts';
import { removeTempDirs } from '../test/kit/hub.ts';

const Args = z.object({
  minutes: z.coerce.number().positive().max(24 * 60).default(10),
  seed: z.coerce.number().int().default(() => Date.now() % 1_000_000),
  sockets: z.coerce.number().int().min(1).max(500).default(32),
  frames: z.coerce.number().int().positive().default(Number.MAX_SAFE_INTEGER),
});

let args: z.infer<typeof Args>;
try {
  const { values } = parseArgs({ options: { minutes: { type: 'string' }, seed: { type: 'string' }, sockets: { type: 'string' }, frames: { type: 'string' } }, strict: true });
  args = Args.parse(values);
} catch (err) {
  const issue = err instanceof z.ZodError ? err.issues[0] : undefined;
  process.stderr.write(`fuzz: ${issue ? `--${issue.path.join('.')}: ${issue.message}` : (err as Error).message}\n`);
  process.exit(2);
}

process.stderr.write(`fuzz: seed ${args.seed}, ${args.minutes} min, ${args.sockets} hostile sockets at a time\n`);
const report = await runFuzz({ seed: args.seed, frames: args.frames, ms: args.minutes * 60_000, sockets: args.sockets, hubProcess: true, progress: (l) => process.stderr.write(`fuzz: ${l}\n`) });
removeTempDirs();
process.stdout.write(JSON.stringify(report, null, 2) + '\n');
const ok = report.failures.length === 0 && report.crashes === 0 && report.eventsLost === 0;
process.stderr.write(ok ? 'fuzz: clean\n' : `fuzz: ${report.failures.length} failures\n`);
process.exit(ok ? 0 : 1);
