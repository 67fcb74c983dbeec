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
//
// App faults, on command from the harness over the IPC channel (spawned with 'ipc' in stdio):
//   {cmd: 'lock', ms}       the app holds its database's write lock for `ms`: BEGIN IMMEDIATE on its
//                           own connection, one change at once, then its normal changes keep going
//                           into that open transaction (so they all commit together, each with its
//                           action_log row), then COMMIT. Nobody else can write meanwhile.
//   {cmd: 'read_hold', ms}  the app keeps a read transaction open for `ms` on a second connection
//                           (a long report, a UI list) while it and the agent keep writing: the WAL
//                           cannot be checkpointed past that snapshot meanwhile.
//   {cmd: 'release'}        end any hold now (the harness heals every fault at the end).
// Replies: {event: 'held', kind, waitedMs} once the hold is in place, then {event: 'released', kind,
// heldMs, changes, committed}. A hold that cannot start within `ms` is released with heldMs 0.
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
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
let stopping = false;

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

type HoldKind = 'lock' | 'read_hold';
interface Hold {
  since: number;
  /** action_log rows when it began: `changes` in the reply is the rows written since (no-ops excluded). */
  rowsAtStart: number;
  timer: NodeJS.Timeout;
  /** read_hold only: the second connection holding the snapshot. */
  reader?: Database.Database;
}
/** The write lock held by `writer`'s open transaction (no session switch, no anonymous writer meanwhile). */
let lockHold: Hold | null = null;
let readHold: Hold | null = null;
/** A lock asked for but not yet acquired (someone else holds the write lock for a moment). */
let lockWaiting: NodeJS.Timeout | null = null;

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

function logRows(): number {
  return (writer.db.prepare('SELECT COUNT(*) AS n FROM action_log').get() as { n: number }).n;
}

function reply(msg: Record<string, unknown>): void {
  if (process.send && process.connected) process.send(msg);
}

function startLock(ms: number): void {
  if (lockHold || lockWaiting) return void reply({ event: 'refused', kind: 'lock', reason: 'already holding' });
  const asked = Date.now();
  const attempt = (): void => {
    lockWaiting = null;
    if (stopping) return;
    try {
      // Waits up to the connection's busy timeout (5 s) for the agent to finish a write of its own.
      writer.db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      if (!isBusy(err)) throw err;
      busy++;
      if (Date.now() - asked >= ms) return void reply({ event: 'released', kind: 'lock', heldMs: 0, changes: 0, committed: false, reason: 'could not take the lock' });
      lockWaiting = setTimeout(attempt, 50);
      return;
    }
    const rowsAtStart = logRows();
    // A write inside the transaction at once: an app in the middle of its work, not an idle BEGIN.
    writer.create('issues', { id: newId('i'), title: `locked by ${args.name}`, status: 'open', priority: int(5), labels: ['lock'], deleted_at: null, updated_at: ts() }, ts());
    ops++;
    const since = Date.now();
    lockHold = { since, rowsAtStart, timer: setTimeout(endLock, Math.max(0, ms - (since - asked))) };
    reply({ event: 'held', kind: 'lock', waitedMs: since - asked });
  };
  attempt();
}

function endLock(): void {
  if (lockWaiting) {
    clearTimeout(lockWaiting);
    lockWaiting = null;
    reply({ event: 'released', kind: 'lock', heldMs: 0, changes: 0, committed: false, reason: 'released before it was taken' });
  }
  const h = lockHold;
  if (!h) return;
  lockHold = null;
  clearTimeout(h.timer);
  let committed = false;
  // Counted inside the transaction: what the COMMIT makes durable.
  const changes = logRows() - h.rowsAtStart;
  try {
    // WAL: a commit by the lock holder never waits for readers.
    if (writer.db.inTransaction) writer.db.exec('COMMIT');
    committed = true;
  } catch (err) {
    // Nothing of the transaction stays: changes and action_log rows go together.
    if (writer.db.inTransaction) writer.db.exec('ROLLBACK');
    process.stderr.write(`lock transaction rolled back: ${(err as Error).message}\n`);
  }
  reply({ event: 'released', kind: 'lock', heldMs: Date.now() - h.since, changes: committed ? changes : 0, committed });
}

function startReadHold(ms: number): void {
  if (readHold) return void reply({ event: 'refused', kind: 'read_hold', reason: 'already holding' });
  const reader = new Database(args.db, { readonly: true, fileMustExist: true });
  reader.pragma('busy_timeout = 5000');
  reader.exec('BEGIN');
  // The snapshot starts at the first read, and lasts until COMMIT.
  reader.prepare('SELECT COUNT(*) AS n FROM issues').get();
  readHold = { since: Date.now(), rowsAtStart: logRows(), timer: setTimeout(endReadHold, ms), reader };
  reply({ event: 'held', kind: 'read_hold', waitedMs: 0 });
}

function endReadHold(): void {
  const h = readHold;
  if (!h) return;
  readHold = null;
  clearTimeout(h.timer);
  h.reader!.exec('COMMIT');
  h.reader!.close();
  reply({ event: 'released', kind: 'read_hold', heldMs: Date.now() - h.since, changes: logRows() - h.rowsAtStart, committed: true });
}

const Command = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal('lock'), ms: z.number().int().nonnegative() }),
  z.object({ cmd: z.literal('read_hold'), ms: z.number().int().nonnegative() }),
  z.object({ cmd: z.literal('release') }),
]);

process.on('message', (msg: unknown) => {
  if (stopping) return;
  const c = Command.parse(msg);
  if (c.cmd === 'lock') startLock(c.ms);
  else if (c.cmd === 'read_hold') startReadHold(c.ms);
  else {
    endLock();
    endReadHold();
  }
});
// The harness went away (its IPC channel closed): stop like on SIGTERM.
process.once('disconnect', () => stop());

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
      // While the app holds the write lock on `writer`, a write on another connection would wait on it.
      change(rnd() < 0.1 && !lockHold ? anonymous : writer);
    }
    if (rnd() < 0.003 && !lockHold) {
      writer.close();
      writer = new AppWriter(args.db, `ses-${args.name}-${++session}`);
    }
  } catch (err) {
    // The agent holds the write lock (or a checkpoint does): the app's transaction rolled back whole,
    // change and action_log row together, so nothing is half-written. Try again on the next tick.
    if (!isBusy(err)) throw err;
    busy++;
  }
}

const started = Date.now();
const parent = process.ppid;

function stop(): void {
  if (stopping) return;
  stopping = true;
  // A hold in progress ends as the app would end it: the write transaction commits.
  endLock();
  endReadHold();
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
