// The chaos suite's own parts: the fault proxy does what each fault claims, the fault plan is a
// pure function of the seed that places every guaranteed fault, the app (writer.ts) really holds
// its write lock / read transaction when told to, the backlog applies cleanly, and check (6)'s clock
// measures what it says. (A harness that injects nothing proves nothing.)
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { makeAppDb, replayInto, stored, tempDir } from '../kit/app-db.ts';
import { REPO_ROOT } from '../kit/hub.ts';
import { seededRandom, eventually, delay } from '../kit/ws-client.ts';
import { backlogEvents, lastLines, planFaults, ProgressWatch, shortConfig, soakConfig, type PlannedFault } from './harness.ts';
import { FaultProxy } from './proxy.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A loopback server that echoes, or streams `stream` bytes on connect. */
async function server(opts: { stream?: number } = {}): Promise<number> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((c) => {
    sockets.add(c);
    c.on('error', () => {});
    if (opts.stream) c.write(Buffer.alloc(opts.stream, 1));
    else c.pipe(c);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const c of sockets) c.destroy();
    return new Promise<void>((r) => s.close(() => r()));
  });
  return (s.address() as net.AddressInfo).port;
}

async function proxyTo(port: number | number[]): Promise<FaultProxy> {
  const p = new FaultProxy(port);
  await p.listen();
  cleanups.push(() => p.close());
  return p;
}

interface Client {
  socket: net.Socket;
  received(): number;
  closed(): 'open' | 'end' | 'error';
}

async function connect(port: number): Promise<Client> {
  const socket = net.connect(port, '127.0.0.1');
  let bytes = 0;
  let state: 'open' | 'end' | 'error' = 'open';
  socket.on('data', (d: Buffer) => (bytes += d.length));
  socket.on('end', () => (state = 'end'));
  socket.on('error', () => (state = 'error'));
  socket.on('close', () => (state = state === 'open' ? 'end' : state));
  // A proxy in `cut` may reset the connection before Node reports it connected.
  await new Promise<void>((r) => {
    socket.once('connect', () => r());
    socket.once('close', () => r());
  });
  cleanups.push(() => void socket.destroy());
  return { socket, received: () => bytes, closed: () => state };
}

describe('FaultProxy', () => {
  it('forwards both ways when up', async () => {
    const p = await proxyTo(await server());
    const c = await connect(p.port);
    c.socket.write('hello');
    await eventually(() => c.received() === 5, 'echo through the proxy');
  });

  it('balances new connections over several nodes in turn, passing over a node that is down', async () => {
    // Two streaming servers that say who they are by how much they send.
    const p = await proxyTo([await server({ stream: 1_000 }), await server({ stream: 2_000 }), 1]);
    const sizes: number[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await connect(p.port);
      await eventually(() => c.received() > 0 || c.closed() !== 'open', `connection ${i} answered or reset`);
      await delay(50);
      sizes.push(c.closed() === 'open' || c.received() > 0 ? c.received() : -1);
    }
    // Port 1 is not listening: that connection goes to the next node, as a balancer retries the
    // next upstream when a connect fails.
    expect(sizes).toEqual([1_000, 2_000, 1_000, 2_000]);
    // Every node down: the connection is reset.
    const none = await proxyTo([1, 2]);
    const c = await connect(none.port);
    await eventually(() => c.closed() !== 'open', 'the connection to be reset');
    expect(c.received()).toBe(0);
  });

  it('cut resets open connections and refuses new ones until healed', async () => {
    const p = await proxyTo(await server());
    const c = await connect(p.port);
    p.cut();
    await eventually(() => c.closed() !== 'open', 'the open connection to be reset');
    const refused = await connect(p.port);
    await eventually(() => refused.closed() !== 'open', 'a new connection to be reset');
    p.heal();
    const again = await connect(p.port);
    again.socket.write('ok');
    await eventually(() => again.received() === 2, 'echo after heal');
  });

  it('stall delivers nothing and closes nothing, then delivers what was held on heal', async () => {
    const p = await proxyTo(await server());
    const c = await connect(p.port);
    p.stall();
    c.socket.write('held');
    await delay(300);
    expect(c.received()).toBe(0);
    expect(c.closed()).toBe('open');
    p.heal();
    await eventually(() => c.received() === 4, 'the held bytes after heal');
  });

  it('slow delivers hub -> agent bytes at about the given rate', async () => {
    const p = await proxyTo(await server({ stream: 200_000 }));
    p.slow(20_000);
    const c = await connect(p.port);
    await delay(1_000);
    // ~20 KB in the first second (one tick of slack either way), far from the 200 KB sent.
    expect(c.received()).toBeGreaterThan(10_000);
    expect(c.received()).toBeLessThan(30_000);
    p.slow(null);
    await eventually(() => c.received() === 200_000, 'the rest at full speed');
  });

  it('reset drops the open connections once and accepts new ones', async () => {
    const p = await proxyTo(await server());
    const c = await connect(p.port);
    p.reset();
    await eventually(() => c.closed() !== 'open', 'the connection to be reset');
    const next = await connect(p.port);
    next.socket.write('x');
    await eventually(() => next.received() === 1, 'echo on a new connection');
  });
});

const LINK = new Set(['link_cut', 'link_stall', 'link_reset', 'offline', 'slow', 'slow_backlog']);
const APP = new Set(['app_lock', 'app_read_hold']);
const apart = (x: PlannedFault, y: PlannedFault) => x.at + x.durationMs <= y.at || y.at + y.durationMs <= x.at;

describe('planFaults', () => {
  it('is a function of the seed and places every guaranteed fault inside the phase', () => {
    const cfg = shortConfig(7);
    const a = planFaults(cfg, seededRandom(7));
    expect(planFaults(cfg, seededRandom(7))).toEqual(a);
    expect(planFaults(cfg, seededRandom(8))).not.toEqual(a);
    for (const [kind, n] of Object.entries(cfg.guaranteed)) {
      expect(a.filter((f) => f.kind === kind).length, kind).toBeGreaterThanOrEqual(n);
    }
    for (const f of a) expect(f.at + f.durationMs).toBeLessThanOrEqual(cfg.faultMs);
  });

  for (const seed of [7, 20240611, 1, 99]) {
    it(`keeps faults that would mask each other apart (seed ${seed})`, () => {
      const a = planFaults(shortConfig(seed), seededRandom(seed));
      for (const x of a) {
        for (const y of a) {
          if (x === y || x.device !== y.device) continue;
          // No two link faults on one device (a cut inside a stall would heal the stall early), nor two app faults.
          if (LINK.has(x.kind) && LINK.has(y.kind)) expect(apart(x, y), `${x.kind}@${x.at} / ${y.kind}@${y.at}`).toBe(true);
          if (APP.has(x.kind) && APP.has(y.kind)) expect(apart(x, y), `${x.kind}@${x.at} / ${y.kind}@${y.at}`).toBe(true);
          // A slow_backlog device gets no app fault and no agent kill: check 6 measures the link alone.
          if (x.kind === 'slow_backlog' && (APP.has(y.kind) || y.kind === 'agent_kill')) expect(apart(x, y), `${y.kind}@${y.at} in a slow_backlog`).toBe(true);
        }
      }
      // No hub kill during a slow_backlog (the loader pushes straight to the hub; check 6 measures the link alone).
      for (const b of a.filter((f) => f.kind === 'slow_backlog')) {
        for (const h of a.filter((f) => f.kind === 'hub_kill')) expect(h.at + h.durationMs <= b.at || b.at + b.durationMs <= h.at).toBe(true);
      }
    });
  }

  it('plans the app and backlog faults the issue asks for, in the short run and in the soak', () => {
    const short = shortConfig(3);
    const a = planFaults(short, seededRandom(3));
    const locks = a.filter((f) => f.kind === 'app_lock');
    // At least one lock outlasts the 5 s busy timeout; every lock is within the configured range.
    expect(Math.max(...locks.map((f) => f.durationMs))).toBeGreaterThan(5_000);
    for (const f of locks) expect(f.durationMs).toBeGreaterThanOrEqual(Math.min(short.appLockMs[0], short.faultMs - f.at));
    const [sb] = a.filter((f) => f.kind === 'slow_backlog');
    expect(sb!.backlog).toEqual({ events: short.backlogEvents, rate: 3_000, loadMs: short.backlogLoadMs, slowMs: sb!.durationMs - short.backlogLoadMs });
    // The stretch is long enough for check 6 to mean something.
    expect(sb!.backlog!.slowMs).toBeGreaterThan(short.slowProgressMs);

    const soak = soakConfig(5, 30, 5);
    const b = planFaults(soak, seededRandom(5));
    for (const [kind, n] of Object.entries(soak.guaranteed)) expect(b.filter((f) => f.kind === kind).length, kind).toBeGreaterThanOrEqual(n);
    const backlogs = b.filter((f) => f.kind === 'slow_backlog');
    for (const f of backlogs) {
      expect(f.backlog!.events).toBe(20_000);
      expect(f.backlog!.rate).toBe(3_000);
      // Minutes behind the trickle.
      expect(f.backlog!.slowMs).toBeGreaterThanOrEqual(120_000);
    }
    const soakLocks = b.filter((f) => f.kind === 'app_lock').map((f) => f.durationMs);
    expect(Math.max(...soakLocks)).toBe(30_000);
    for (const ms of soakLocks) expect(ms >= 5_000 && ms <= 30_000).toBe(true);
  });

  it('leaves a short soak room for its hub kills beside the slow-backlog stretch', () => {
    for (const seed of [11, 22, 33, 44, 55]) {
      const cfg = soakConfig(seed, 3, 5);
      const plan = planFaults(cfg, seededRandom(seed));
      const [sb] = plan.filter((f) => f.kind === 'slow_backlog');
      expect(sb!.backlog!.slowMs, `seed ${seed}`).toBeGreaterThan(cfg.slowProgressMs);
      expect(plan.filter((f) => f.kind === 'hub_kill').length, `seed ${seed}`).toBeGreaterThanOrEqual(cfg.guaranteed.hub_kill!);
    }
  });
});

describe('backlogEvents', () => {
  it('are valid changes on the devices tables that apply without a single failure', () => {
    const events = backlogEvents('blt', 'ses-loader-0', 2_000, seededRandom(11));
    expect(events.map((e) => e.clientActionId)).toEqual(Array.from({ length: 2_000 }, (_, i) => i + 1));
    expect(new Set(events.map((e) => e.actionType))).toEqual(new Set(['create', 'update']));
    expect(new Set(events.map((e) => e.entityType))).toEqual(new Set(['issues', 'comments']));
    // Small, like real rows: the slow link carries about 7 of them a second.
    const bytes = JSON.stringify(events.map((e, i) => stored(e, i + 1, 'loader-0'))).length / events.length;
    expect(bytes).toBeGreaterThan(200);
    expect(bytes).toBeLessThan(600);
    const db = replayInto(':memory:', events.map((e, i) => stored(e, i + 1, 'loader-0')));
    try {
      expect((db.prepare('SELECT COUNT(*) AS n FROM sync_failed_events').get() as { n: number }).n).toBe(0);
      const issues = events.filter((e) => e.entityType === 'issues' && e.actionType === 'create').length;
      expect((db.prepare('SELECT COUNT(*) AS n FROM issues').get() as { n: number }).n).toBe(issues);
      // Updates took effect: every issue holds its last logged row.
      const last = new Map(events.filter((e) => e.entityType === 'issues').map((e) => [e.entityId, e.payload.newData!]));
      const [id, row] = [...last.entries()][last.size - 1]!;
      expect(db.prepare('SELECT status, priority FROM issues WHERE id = ?').get(id)).toEqual({ status: row.status, priority: row.priority });
    } finally {
      db.close();
    }
  });
});

describe('ProgressWatch (check 6)', () => {
  it('measures standstills from the first connection, and restarts at every move', () => {
    const w = new ProgressWatch(20_000, 5_000, 0, 100);
    w.sample(500, 100, false);
    w.connected(1_000);
    w.sample(4_000, 120, false); // 3 s
    w.sample(16_000, 130, false); // 12 s
    w.sample(20_000, 130, false);
    const r = w.finish(25_000); // 9 s since the last move
    expect(r.advances).toBe(2);
    expect(r.longestStillMs).toBe(12_000);
    expect(r.stillFrom).toBe(4_000);
    expect(r.changes).toEqual([
      [0, 100],
      [4_000, 120],
      [16_000, 130],
    ]);
  });

  it('catches a cursor that never moves, also when the agent never reconnects', () => {
    const still = new ProgressWatch(20_000, 5_000, 0, 7);
    still.connected(800);
    for (let t = 1_000; t <= 25_000; t += 500) still.sample(t, 7, false);
    expect(still.finish(25_000).longestStillMs).toBe(24_200);
    expect(still.advances).toBe(0);
    const never = new ProgressWatch(20_000, 5_000, 0, 7);
    for (let t = 1_000; t <= 30_000; t += 500) never.sample(t, 7, false);
    expect(never.finish(30_000).longestStillMs).toBe(25_000);
  });

  it('counts acks of its own changes as progress: they share the trickle with the stream', () => {
    const w = new ProgressWatch(20_000, 5_000, 0, 50);
    w.connected(0);
    w.sample(1_000, 50, false, 300); // the first count is a baseline, not a move
    w.sample(12_000, 50, false, 800); // 11 s still, then acks
    w.sample(30_000, 50, false, 1_500); // 18 s, acks again
    w.sample(45_000, 50, false, 1_500); // acks stop too
    const r = w.finish(45_000);
    expect(r.ackMoves).toBe(2);
    expect(r.advances).toBe(0);
    expect(r.longestStillMs).toBe(18_000);
    // Without ack counts the same device stood still throughout.
    const blind = new ProgressWatch(20_000, 5_000, 0, 50);
    blind.connected(0);
    for (const t of [1_000, 12_000, 30_000, 45_000]) blind.sample(t, 50, false);
    expect(blind.finish(45_000).longestStillMs).toBe(45_000);
  });

  it('pauses across a hub restart and does not count a caught-up device as stuck', () => {
    const w = new ProgressWatch(20_000, 5_000, 0, 0);
    w.connected(0);
    w.sample(5_000, 10, false);
    w.linkLost(8_000); // 3 s still so far
    w.sample(12_000, 10, false); // paused: no connection yet
    w.connected(14_000);
    w.sample(20_000, 20, false); // 6 s from the new connection
    for (let t = 20_500; t <= 60_000; t += 500) w.sample(t, 20, true); // caught up: nothing to fetch
    expect(w.finish(60_000).longestStillMs).toBe(6_000);
  });
});

const WRITER = fileURLToPath(new URL('./writer.ts', import.meta.url));

interface WriterChild {
  proc: ChildProcess;
  messages: Array<Record<string, unknown>>;
  stdout: () => string;
  exited: Promise<number | null>;
  next(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** The chaos app (writer.ts) on `db`, with its IPC channel, once it reports ready. */
async function startWriter(db: string): Promise<WriterChild> {
  const proc = spawn(process.execPath, ['--import', 'tsx', WRITER, '--db', db, '--name', 'w', '--seed', '5', '--rate', '40', '--max-ms', '60000'], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  cleanups.push(async () => {
    proc.kill('SIGKILL');
    await exited;
  });
  const messages: Array<Record<string, unknown>> = [];
  proc.on('message', (m) => messages.push(m as Record<string, unknown>));
  let taken = 0;
  const w: WriterChild = {
    proc,
    messages,
    stdout: () => out,
    exited,
    async next(event, timeoutMs = 10_000) {
      await eventually(() => messages.slice(taken).some((m) => m.event === event), `writer message ${event} (stderr: ${err})`, timeoutMs);
      const i = messages.findIndex((m, j) => j >= taken && m.event === event);
      taken = i + 1;
      return messages[i]!;
    },
  };
  await eventually(() => out.includes('"ready":true'), `the writer to start (stderr: ${err})`, 20_000, 20);
  return w;
}

/** The action_log row of the change the writer makes as it takes the lock (rows are never deleted; the row itself may be changed since). */
const LOCK_ROW = `SELECT COUNT(*) AS n FROM action_log WHERE action_type = 'create' AND entity_type = 'issues' AND new_data LIKE '%"title":"locked by w"%'`;

/** A connection that tries to take the write lock without waiting: the SQLite error code, or 'ok'. */
function tryWriteLock(db: Database.Database): string {
  try {
    db.exec('BEGIN IMMEDIATE');
    db.exec('ROLLBACK');
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

describe('writer (the chaos app) on command', () => {
  it('lock: holds the write lock for the time asked, writing inside it, then commits', async () => {
    const dir = tempDir('synchub-chaos-parts-');
    cleanups.push(() => dir.cleanup());
    const path = dir.path('app.db');
    makeAppDb(path);
    const w = await startWriter(path);
    const other = new Database(path);
    cleanups.push(() => void other.close());
    other.pragma('busy_timeout = 0');
    const countRows = () => (other.prepare('SELECT COUNT(*) AS n FROM action_log').get() as { n: number }).n;
    await delay(300);
    const before = countRows();

    w.proc.send({ cmd: 'lock', ms: 1_500 });
    const held = await w.next('held');
    expect(held.kind).toBe('lock');
    const heldAt = Date.now();
    // Meanwhile nobody else can write, at once or after a while; reads go on (WAL) and see nothing of it yet.
    expect(tryWriteLock(other)).toBe('SQLITE_BUSY');
    await delay(700);
    expect(tryWriteLock(other)).toBe('SQLITE_BUSY');
    expect(countRows()).toBe(before);

    const released = await w.next('released');
    expect(Date.now() - heldAt).toBeGreaterThanOrEqual(1_000);
    expect(released).toMatchObject({ kind: 'lock', committed: true });
    expect(released.heldMs as number).toBeGreaterThanOrEqual(1_400);
    expect(released.changes as number).toBeGreaterThan(1);
    // Released: others write again (the app's own short transactions are waited out), and what it
    // wrote inside the lock is committed, each change with its action_log row.
    other.pragma('busy_timeout = 2000');
    expect(tryWriteLock(other)).toBe('ok');
    expect(countRows()).toBeGreaterThanOrEqual(before + (released.changes as number));
    expect(other.prepare(LOCK_ROW).get()).toEqual({ n: 1 });
  }, 30_000);

  it('lock: SIGTERM while holding it commits and exits with its report', async () => {
    const dir = tempDir('synchub-chaos-parts-');
    cleanups.push(() => dir.cleanup());
    const path = dir.path('app.db');
    makeAppDb(path);
    const w = await startWriter(path);
    w.proc.send({ cmd: 'lock', ms: 20_000 });
    await w.next('held');
    await delay(300);
    w.proc.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    expect(JSON.parse(w.stdout().trim().split('\n').pop()!)).toMatchObject({ name: 'w' });
    const db = new Database(path);
    cleanups.push(() => void db.close());
    db.pragma('busy_timeout = 0');
    expect(tryWriteLock(db)).toBe('ok');
    // The change made as the lock was taken is committed, with its action_log row.
    expect(db.prepare(LOCK_ROW).get()).toEqual({ n: 1 });
  }, 30_000);

  it('read_hold: keeps a snapshot open (the WAL cannot be reset) while the app keeps writing', async () => {
    const dir = tempDir('synchub-chaos-parts-');
    cleanups.push(() => dir.cleanup());
    const path = dir.path('app.db');
    makeAppDb(path);
    const w = await startWriter(path);
    const other = new Database(path);
    cleanups.push(() => void other.close());
    other.pragma('busy_timeout = 0');
    w.proc.send({ cmd: 'read_hold', ms: 1_500 });
    await w.next('held');
    await delay(300);
    // [busy, log frames, checkpointed frames]: busy = 1 while a reader holds the WAL.
    const during = other.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    expect(during[0]!.busy).toBe(1);
    // Writers are not blocked by a reader.
    other.pragma('busy_timeout = 2000');
    expect(tryWriteLock(other)).toBe('ok');
    const released = await w.next('released');
    expect(released).toMatchObject({ kind: 'read_hold', committed: true });
    expect(released.changes as number).toBeGreaterThan(0);
    await eventually(() => (other.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>)[0]!.busy === 0, 'a checkpoint once the snapshot is gone', 5_000, 50);
  }, 30_000);
});

describe('lastLines', () => {
  it('keeps the last non-empty lines, without stack frames, each cut short', () => {
    expect(lastLines('a\n\nb\nc\n', 2)).toEqual(['b', 'c']);
    expect(lastLines("SqliteError: database is locked\n    at Db.run (x.ts:1:2)\n    at y (y.ts:3:4) {\n  code: 'SQLITE_BUSY'\n}\n", 3)).toEqual(['SqliteError: database is locked', "  code: 'SQLITE_BUSY'", '}']);
    expect(lastLines('x'.repeat(1000), 1)[0]!.length).toBe(401);
  });
});
