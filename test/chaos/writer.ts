// The app of one chaos device, run as its own process (`node --import tsx writer.ts --db F ...`):
// random creates, updates, hard deletes, soft deletes and restores on `issues` and `comments`,
// each change with its action_log row in one transaction (the kit's AppWriter), on its own
// better-sqlite3 connection, with this device's clock skew applied to every timestamp it writes.
// Now and then a burst of changes goes into one app transaction, and the session id changes
// (some rows are written with no session id at all: the agent's fallback session).
//
// It records nothing else: the truth is the app DB's action_log (rows are never deleted).
// Runs until SIGTERM/SIGINT, until its parent goes away, or until --max-ms; prints one JSON line
// {"name", "ops", "busy"} on exit.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { AppWriter } from '../kit/app-db.ts';
import { seededRandom } from '../kit/ws-client.ts';

const args = z
  .object({
    db: z.string().min(1),
    name: z.string().min(1),
    seed: z.coerce.number().int(),
    'skew-ms': z.coerce.number().int().default(0),
    /** Mean changes per second. */
    rate: z.coerce.number().positive().default(20),
    /** Size of the id pool every device draws from (concurrent edits of the same rows). */
    shared: z.coerce.number().int().positive().default(40),
    'max-ms': z.coerce.number().int().positive().default(3_600_000),
  })
  .parse(
    parseArgs({
      options: {
        db: { type: 'string' },
        name: { type: 'string' },
        seed: { type: 'string' },
        'skew-ms': { type: 'string' },
        rate: { type: 'string' },
        shared: { type: 'string' },
        'max-ms': { type: 'string' },
      },
    }).values,
  );

const rnd = seededRandom(args.seed);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const int = (n: number) => Math.floor(rnd() * n);
const ts = () => new Date(Date.now() + args['skew-ms']).toISOString();
const STATUSES = ['open', 'in_progress', 'blocked', 'done', 'closed'] as const;
const WORDS = ['alpha', 'beta', 'gamma', 'delta', 'ünïcødé', '日本', 'x', '', 'quote"d', "it's"] as const;
const words = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(' ');

let session = 0;
let writer = new AppWriter(args.db, `ses-${args.name}-${session}`);
/** Rows with no session id: pushed under the device's fallback session. */
const anonymous = new AppWriter(args.db, null);
let ops = 0;
let busy = 0;
let unique = 0;

function newId(prefix: string): string {
  return rnd() < 0.4 ? `${prefix}-${int(args.shared)}` : `${prefix}-${args.name}-${unique++}`;
}

/** A random existing id of `table` (WHERE clause optional), or null. */
function existing(w: AppWriter, table: string, where = '1'): string | null {
  const n = (w.db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`).get() as { n: number }).n;
  if (n === 0) return null;
  const r = w.db.prepare(`SELECT id FROM ${table} WHERE ${where} ORDER BY id LIMIT 1 OFFSET ?`).get(int(n)) as { id: string } | undefined;
  return r?.id ?? null;
}

function issueFields(): Record<string, unknown> {
  const all: Record<string, () => unknown> = {
    title: () => words(1 + int(4)),
    status: () => pick(STATUSES),
    priority: () => int(5),
    labels: () => Array.from({ length: int(3) }, () => pick(['bug', 'ui', 'db', 'p1'])),
  };
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(all)) if (rnd() < 0.5) out[k] = f();
  if (Object.keys(out).length === 0) out.title = words(2);
  out.updated_at = ts();
  return out;
}

/** One random change (a no-op when it finds no row to change: AppWriter then logs nothing). */
function change(w: AppWriter): void {
  const r = rnd();
  if (r < 0.25) {
    const id = newId('i');
    w.create('issues', { id, title: words(3), status: pick(STATUSES), priority: int(5), labels: ['new'], deleted_at: null, updated_at: ts() }, ts());
  } else if (r < 0.55) {
    const id = existing(w, 'issues');
    if (id) w.update('issues', id, issueFields(), ts());
  } else if (r < 0.62) {
    const id = existing(w, 'issues', 'deleted_at IS NULL');
    if (id) w.softDelete('issues', id, ts());
  } else if (r < 0.66) {
    const id = existing(w, 'issues', 'deleted_at IS NOT NULL');
    if (id) w.restore('issues', id, ts());
  } else if (r < 0.71) {
    const id = existing(w, 'issues');
    if (id) w.hardDelete('issues', id, ts());
  } else if (r < 0.85) {
    const issue = existing(w, 'issues') ?? `i-${int(args.shared)}`;
    w.create('comments', { id: newId('c'), issue_id: issue, body: words(1 + int(6)), created_at: ts() }, ts());
  } else if (r < 0.95) {
    const id = existing(w, 'comments');
    if (id) w.update('comments', id, { body: words(1 + int(6)) }, ts());
  } else {
    const id = existing(w, 'comments');
    if (id) w.hardDelete('comments', id, ts());
  }
  ops++;
}

function step(): void {
  try {
    const burst = rnd();
    if (burst < 0.022) {
      // A burst: many changes in one app transaction (nested AppWriter transactions become savepoints);
      // now and then one bigger than a push batch (500), so several batches are in flight at once.
      const n = burst < 0.002 ? 300 + int(900) : 10 + int(50);
      writer.db.transaction(() => {
        for (let i = 0; i < n; i++) change(writer);
      })();
    } else {
      change(rnd() < 0.1 ? anonymous : writer);
    }
    if (rnd() < 0.003) {
      writer.close();
      writer = new AppWriter(args.db, `ses-${args.name}-${++session}`);
    }
  } catch (err) {
    // The agent holds the write lock (or a checkpoint does): the app's transaction rolled back whole,
    // change and action_log row together, so nothing is half-written. Try again on the next tick.
    const code = (err as { code?: string }).code ?? '';
    if (!code.startsWith('SQLITE_BUSY') && !code.startsWith('SQLITE_LOCKED')) throw err;
    busy++;
  }
}

const started = Date.now();
const parent = process.ppid;
let stopping = false;

function stop(): void {
  if (stopping) return;
  stopping = true;
  writer.close();
  anonymous.close();
  process.stdout.write(`${JSON.stringify({ name: args.name, ops, busy })}\n`);
  process.exit(0);
}
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

function loop(): void {
  if (stopping) return;
  if (Date.now() - started > args['max-ms'] || process.ppid !== parent) return stop();
  step();
  // Exponentially distributed gaps around the mean rate; a pause now and then.
  const gap = rnd() < 0.01 ? 500 + int(1500) : -Math.log(1 - rnd()) * (1000 / args.rate);
  setTimeout(loop, Math.min(gap, 5000));
}
process.stdout.write(`${JSON.stringify({ name: args.name, ready: true })}\n`);
loop();
