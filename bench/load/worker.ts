// A load generator process. The orchestrator sends one `job`; the worker runs it and
// answers `result` (histograms as compressed base64). The `conns` job is a dialogue:
// connected -> (arm) -> received.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import * as Y from 'yjs';
import * as decoding from 'lib0/decoding';
import {
  childFatal,
  encodeHist,
  fromParent,
  makeRow,
  newHist,
  nowUs,
  pushEventJson,
  scanMarks,
  sleep,
  type BenchRow,
} from '../lib/common.ts';
import { EVENTS_SCHEMA } from '../../hub/store/sqlite-schema.ts';
import { connectClient, viaNode, type BenchClient, type Target } from '../lib/clients.ts';
import { openAppWriter } from '../lib/app-db.ts';

process.on('uncaughtException', childFatal);
process.on('unhandledRejection', childFatal);

export type Job =
  | { kind: 'ingest'; target: Target; conns: number; batch: number; window: number; entities: number; warmupMs: number; durationMs: number }
  | { kind: 'sqlite-ingest'; dir: string; batch: number; warmupMs: number; durationMs: number }
  | { kind: 'fanout'; target: Target; receivers: number; rate: number; warmupMs: number; durationMs: number }
  | { kind: 'conns'; target: Target; count: number; indexBase: number; concurrency: number; localAddress?: string }
  | { kind: 'catchup-agent'; url: string; project: string; token: string; dir: string; expect: number; passes: number }
  | { kind: 'catchup-stream'; target: Target; expect: number; passes: number }
  | { kind: 'catchup-y'; target: Target; expect: number; passes: number }
  | { kind: 'sqlite-apply'; hubDb: string; project: string; dir: string; expect: number; passes: number }
  | { kind: 'sqlite-commit'; dir: string; rate: number; warmupMs: number; durationMs: number }
  | { kind: 'visible-write'; db: string; rate: number; rows: number }
  | { kind: 'visible-poll'; db: string; rows: number; warmupRows: number; timeoutMs: number }
  | { kind: 'visible-tap'; target: Target; rows: number; warmupRows: number; timeoutMs: number };

/**
 * n clients, `concurrency` handshakes at a time. With several hub nodes, client `index` goes
 * to node index mod nodes (spread evenly), or every client to `node` when one is given.
 */
async function connectAll(
  target: Target,
  n: number,
  indexBase: number,
  concurrency: number,
  make: (i: number) => Parameters<typeof connectClient>[1],
  node?: number,
) {
  const clients: BenchClient[] = new Array(n);
  let next = 0;
  let failed = 0;
  let firstError = '';
  async function lane() {
    while (next < n) {
      const i = next++;
      const c = connectClient(viaNode(target, node ?? indexBase + i), make(indexBase + i));
      clients[i] = c;
      try {
        await c.ready;
      } catch (e) {
        failed++;
        firstError ||= String(e);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, lane));
  return { clients, failed, firstError };
}

// ---------------------------------------------------------------- ingest

async function ingest(j: Extract<Job, { kind: 'ingest' }>) {
  const hist = newHist();
  let measuring = false;
  let running = true;
  let ackedInWindow = 0;
  let inflightTotal = 0;
  const state = Array.from({ length: j.conns }, () => ({ fifo: [] as { left: number; sent: number }[], head: 0, inflight: 0, n: 0 }));
  // With two hub nodes the pushers alternate between them (each also receives every event, from its own node).
  const { clients, failed, firstError } = await connectAll(j.target, j.conns, 0, j.conns, (index) => ({
    index,
    onAcked: (n) => onAcked(index, n),
  }));
  if (failed) throw new Error(`ingest: ${failed} of ${j.conns} clients failed to connect: ${firstError}`);

  function fill(i: number) {
    const s = state[i]!;
    while (running && s.inflight + j.batch <= j.window) {
      const rows: BenchRow[] = new Array(j.batch);
      for (let k = 0; k < j.batch; k++) rows[k] = makeRow(i, ++s.n, j.entities);
      clients[i]!.push(rows);
      s.fifo.push({ left: j.batch, sent: nowUs() });
      s.inflight += j.batch;
      inflightTotal += j.batch;
    }
  }
  function onAcked(i: number, n: number) {
    const s = state[i]!;
    const now = nowUs();
    while (n > 0 && s.head < s.fifo.length) {
      const f = s.fifo[s.head]!;
      const take = Math.min(f.left, n);
      f.left -= take;
      n -= take;
      s.inflight -= take;
      inflightTotal -= take;
      if (measuring) {
        hist.recordValueWithCount(Math.max(1, now - f.sent), take);
        ackedInWindow += take;
      }
      if (f.left === 0) s.head++;
    }
    if (s.head > 1024) {
      s.fifo.splice(0, s.head);
      s.head = 0;
    }
    fill(i);
  }
  for (let i = 0; i < j.conns; i++) fill(i);
  await sleep(j.warmupMs);
  hist.reset();
  measuring = true;
  const t0 = nowUs();
  await sleep(j.durationMs);
  measuring = false;
  const t1 = nowUs();
  running = false;
  const drainUntil = Date.now() + 10_000;
  while (inflightTotal > 0 && Date.now() < drainUntil) await sleep(20);
  for (const c of clients) c.close();
  const seconds = (t1 - t0) / 1e6;
  return { events: ackedInWindow, seconds, rate: ackedInWindow / seconds, hist: encodeHist(hist), unackedAtEnd: inflightTotal };
}

// ---------------------------------------------------------------- the SQLite floor: batched inserts, WAL + FULL


function sqliteIngest(j: Extract<Job, { kind: 'sqlite-ingest' }>) {
  mkdirSync(j.dir, { recursive: true });
  const path = join(j.dir, 'floor.db');
  rmSync(path, { force: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(EVENTS_SCHEMA); // the hub's own table: the floor inserts into exactly what the hub does
  const insert = db.prepare('INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body) VALUES (?, ?, ?, ?, ?, ?)');
  let seq = 0;
  const ts = new Date().toISOString();
  // The same ~300-byte JSON texts the hub stores, built beforehand: the floor measures SQLite, not string building.
  const bodies = Array.from({ length: 1000 }, (_, i) => pushEventJson(1_000_000 + i, makeRow(0, i, 1000), ts));
  const tx = db.transaction((n: number) => {
    for (let k = 0; k < n; k++) {
      const s = ++seq;
      insert.run('p', s, 'device', 'bench-session', s, bodies[s % 1000]!);
    }
  });
  const hist = newHist();
  const warmEnd = nowUs() + j.warmupMs * 1000;
  while (nowUs() < warmEnd) tx.immediate(j.batch);
  const t0 = nowUs();
  const end = t0 + j.durationMs * 1000;
  let events = 0;
  while (nowUs() < end) {
    const started = nowUs();
    tx.immediate(j.batch);
    // Every event of the batch waited for the whole transaction (like a push waits for its group commit).
    hist.recordValueWithCount(Math.max(1, nowUs() - started), j.batch);
    events += j.batch;
  }
  const seconds = (nowUs() - t0) / 1e6;
  db.close();
  rmSync(j.dir, { recursive: true, force: true });
  return { events, seconds, rate: events / seconds, hist: encodeHist(hist) };
}

/**
 * The durable-commit floor of fan-out: one event per transaction at `rate` per second
 * (WAL, synchronous=FULL). A server that sends an event only once it is durable cannot
 * beat this latency.
 */
async function sqliteCommit(j: Extract<Job, { kind: 'sqlite-commit' }>) {
  mkdirSync(j.dir, { recursive: true });
  const db = new Database(join(j.dir, 'commit-floor.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(EVENTS_SCHEMA); // the hub's own table: the floor inserts into exactly what the hub does
  const insert = db.prepare('INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body) VALUES (?, ?, ?, ?, ?, ?)');
  const body = pushEventJson(1, makeRow(0, 1, 1000), new Date().toISOString());
  const tx = db.transaction((s: number) => insert.run('p', s, 'device', 'bench-session', s, body));
  const hist = newHist();
  const start = nowUs();
  const windowStart = start + j.warmupMs * 1000;
  const end = windowStart + j.durationMs * 1000;
  let seq = 0;
  let inWindow = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = nowUs();
      const due = Math.floor(((now - start) / 1e6) * j.rate);
      while (seq < due) {
        const t = nowUs();
        tx.immediate(++seq);
        if (t >= windowStart) {
          hist.recordValue(Math.max(1, nowUs() - t));
          inWindow++;
        }
      }
      if (now >= end) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  db.close();
  rmSync(j.dir, { recursive: true, force: true });
  return { commits: inWindow, hist: encodeHist(hist) };
}

// ---------------------------------------------------------------- fan-out latency

const DEBUG_OUTLIERS = process.env.BENCH_DEBUG_OUTLIERS === '1';
const outliers: string[] = [];

async function fanout(j: Extract<Job, { kind: 'fanout' }>) {
  const hist = newHist();
  let windowStart = Infinity;
  let windowEnd = Infinity;
  let received = 0;
  const onMessage = (buf: Buffer) => {
    const now = nowUs();
    scanMarks(buf, (sender, sent) => {
      if (sender !== 0 || sent < windowStart || sent >= windowEnd) return;
      hist.recordValue(Math.max(1, now - sent));
      if (DEBUG_OUTLIERS && now - sent > 5000) outliers.push(`${((sent - windowStart) / 1000).toFixed(1)}ms:+${((now - sent) / 1000).toFixed(1)}`);
      received++;
    });
  };
  // With two hub nodes the writer is on the first and every receiver on the second: each
  // event crosses nodes (commit, NOTIFY, the other node reads it from the store, sends).
  const { clients, failed, firstError } = await connectAll(j.target, j.receivers, 1, 50, (index) => ({ index, onMessage }), 1);
  if (failed) throw new Error(`fanout: ${failed} of ${j.receivers} receivers failed: ${firstError}`);
  const writer = connectClient(viaNode(j.target, 0), { index: 0, onAcked: () => {} });
  await writer.ready;
  await sleep(200);

  // The writer: `rate` events per second, each in its own push, paced on the clock.
  let sent = 0;
  let sentInWindow = 0;
  const start = nowUs();
  const totalMs = j.warmupMs + j.durationMs;
  windowStart = start + j.warmupMs * 1000;
  windowEnd = windowStart + j.durationMs * 1000;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = nowUs();
      const due = Math.floor(((now - start) / 1e6) * j.rate);
      while (sent < due) {
        sent++;
        const t = nowUs();
        if (t >= windowStart && t < windowEnd) sentInWindow++;
        writer.push([makeRow(0, sent, 1000)]);
      }
      if (now - start >= totalMs * 1000) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  if (DEBUG_OUTLIERS) process.stderr.write(`outliers (send time in window: latency): ${outliers.slice(0, 60).join(' ')}\n`);
  const expected = sentInWindow * j.receivers;
  const until = Date.now() + 5000;
  while (received < expected && Date.now() < until) await sleep(20);
  writer.close();
  for (const c of clients) c.close();
  return { sent, sentInWindow, expected, received, lost: expected - received, achievedRate: sentInWindow / (j.durationMs / 1000), hist: encodeHist(hist) };
}

// ---------------------------------------------------------------- idle connections

async function conns(j: Extract<Job, { kind: 'conns' }>) {
  let armed = false;
  let got = 0;
  let lastUs = 0;
  const seen = new Uint8Array(j.count);
  const t0 = nowUs();
  // With two hub nodes the sockets alternate between them; the writer is on the first.
  const { clients, failed, firstError } = await connectAll(j.target, j.count, j.indexBase, j.concurrency, (index) => ({
    index,
    timeoutMs: 60_000,
    localAddress: j.localAddress,
    onMessage: (buf) => {
      if (!armed) return;
      const now = nowUs();
      const k = index - j.indexBase;
      if (seen[k]) return;
      if (scanMarks(buf, () => {}) > 0) {
        seen[k] = 1;
        got++;
        if (now > lastUs) lastUs = now;
      }
    },
  }));
  const connectMs = (nowUs() - t0) / 1000;
  process.send!({ type: 'connected', ok: j.count - failed, failed, firstError, connectMs, startUs: t0, endUs: nowUs() });
  await fromParent('arm');
  armed = true;
  process.send!({ type: 'armed' });
  const ok = j.count - failed;
  const until = Date.now() + 30_000;
  while (got < ok && Date.now() < until) await sleep(5);
  process.send!({ type: 'received', got, expected: ok, lastUs });
  await fromParent('close');
  for (const c of clients) c.close();
  return { ok };
}

// ---------------------------------------------------------------- write-to-visible (two agent daemons)

/**
 * The app on device A: `rows` rows at `rate` per second, paced on the clock, each stamped with
 * the time just before its transaction began (the row and its action_log row commit together).
 */
async function visibleWrite(j: Extract<Job, { kind: 'visible-write' }>) {
  const app = openAppWriter(j.db);
  const commit = newHist();
  let n = 0;
  const start = nowUs();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(j.rows, Math.floor(((nowUs() - start) / 1e6) * j.rate) + 1);
      while (n < due) {
        const t = nowUs();
        app.write(++n, t);
        commit.recordValue(Math.max(1, nowUs() - t));
      }
      if (n >= j.rows) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  app.close();
  return { rows: n, seconds: (nowUs() - start) / 1e6, commitHist: encodeHist(commit) };
}

/**
 * Device B's file, read as a second app would: a read-only connection that checks PRAGMA
 * data_version (it changes exactly when another connection committed; microseconds to read)
 * every 0.2 ms and reads the new rows when it moved. A row's latency is the time it became
 * readable here minus the stamp A's writer put in it (one clock for every process).
 */
async function visiblePoll(j: Extract<Job, { kind: 'visible-poll' }>) {
  const db = new Database(j.db, { readonly: true, fileMustExist: true });
  const version = db.prepare('PRAGMA data_version').pluck();
  const fresh = db.prepare('SELECT n, written_us AS us FROM items WHERE n > ? ORDER BY n');
  const hist = newHist();
  // Atomics.wait: a 0.2 ms sleep that neither spins a core (2 cores, shared with the hub and both
  // agents) nor rounds up to setTimeout's 1 ms.
  const nap = new Int32Array(new SharedArrayBuffer(4));
  let last = -1;
  let maxN = 0;
  let seen = 0;
  process.send!({ type: 'polling' });
  const deadline = nowUs() + j.timeoutMs * 1000;
  while (seen < j.rows && nowUs() < deadline) {
    const v = version.get() as number;
    if (v !== last) {
      last = v;
      const now = nowUs();
      for (const r of fresh.all(maxN) as { n: number; us: number }[]) {
        maxN = Math.max(maxN, r.n);
        seen++;
        if (r.n > j.warmupRows) hist.recordValue(Math.max(1, now - r.us));
      }
    }
    Atomics.wait(nap, 0, 0, 0.2);
  }
  db.close();
  return { seen, hist: encodeHist(hist) };
}

/**
 * Where the write-to-visible time goes: a raw device on the hub (one more socket) records when
 * each row's event left the hub, against the same stamp. Write-to-hub-out covers device A's
 * side (the agent noticing the commit, its push, the hub's durable commit and send); the rest
 * of write-to-visible is device B's (receive, apply, commit).
 */
async function visibleTap(j: Extract<Job, { kind: 'visible-tap' }>) {
  const hist = newHist();
  let seen = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const c = connectClient(j.target, {
    index: 0,
    onMessage: (buf) => {
      const now = nowUs();
      const f = JSON.parse(buf.toString()) as { events: { payload: { newData: { n?: number; written_us?: number } | null } }[] };
      for (const e of f.events) {
        const d = e.payload.newData;
        if (!d || typeof d.n !== 'number' || typeof d.written_us !== 'number' || d.n < 1) continue;
        seen++;
        if (d.n > j.warmupRows) hist.recordValue(Math.max(1, now - d.written_us));
      }
      if (seen >= j.rows) resolveDone();
    },
  });
  await c.ready;
  process.send!({ type: 'tapping' });
  await Promise.race([done, sleep(j.timeoutMs)]);
  c.close();
  return { seen, hist: encodeHist(hist) };
}

// ---------------------------------------------------------------- catch-up

/** Catch-up with the real Agent: a fresh app DB applies the whole backlog; the first 10% is the warm-up. */
async function catchupAgent(j: Extract<Job, { kind: 'catchup-agent' }>) {
  const { Agent } = await import('../../agent/agent.ts');
  const passes: { totalMs: number; rate: number; frames: number; firstFrameMs: number; cpuMsPer100k: number }[] = [];
  mkdirSync(j.dir, { recursive: true });
  for (let p = 0; p < j.passes; p++) {
    const db = join(j.dir, `app-${process.pid}-${p}.db`);
    const app = new Database(db);
    app.pragma('journal_mode = WAL');
    app.exec('CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER, mark TEXT, body TEXT, deleted_at TEXT)');
    app.close();
    // Time to first frame counts from the Agent's construction (opening the app DB, its sync tables,
    // connect, hello/welcome, the hub's first read): what a device waits before anything lands.
    const t0 = nowUs();
    let firstUs = 0;
    // Replay of the log, event by event: a fresh agent would otherwise bootstrap from a snapshot of
    // the hub's state (SQLite store), which is a different measurement.
    const agent = new Agent({ db, hub: j.url, project: j.project, token: j.token, tables: ['items'], snapshot: false });
    const warm = Math.floor(j.expect / 10);
    let tw = 0;
    let cw = 0;
    let frames = 0;
    // CPU time of this process (the Agent, alone in it) over the measured window: what applying costs,
    // whatever else the machine runs meanwhile.
    let cpu0 = process.cpuUsage();
    let cpu = cpu0;
    const done = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent catch-up: not done within 180 s (frames ${frames})`)), 180_000);
      agent.on('applied', (r) => {
        if (frames++ === 0) firstUs = nowUs();
        if (!tw && r.cursor >= warm) {
          tw = nowUs();
          cw = r.cursor;
          cpu0 = process.cpuUsage();
        }
        if (r.cursor >= j.expect) {
          clearTimeout(timer);
          cpu = process.cpuUsage(cpu0);
          resolve(nowUs());
        }
      });
      agent.on('problem', (e) => process.stderr.write(`agent problem: ${e.code} ${e.message}\n`));
    });
    await agent.start();
    const t1 = await done;
    await agent.stop();
    const check = new Database(db, { readonly: true });
    const rows = (check.prepare('SELECT count(*) FROM items').pluck().get() as number) ?? 0;
    check.close();
    if (rows !== j.expect) throw new Error(`agent catch-up applied ${rows} rows, expected ${j.expect}`);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    passes.push({ totalMs: (t1 - t0) / 1000, rate: (j.expect - cw) / ((t1 - tw) / 1e6), frames, firstFrameMs: (firstUs - t0) / 1000, cpuMsPer100k: (cpuMs * 100_000) / (j.expect - cw) });
  }
  rmSync(j.dir, { recursive: true, force: true });
  return { passes, measured: passes[passes.length - 1] };
}

/** Stream only: read and JSON.parse every events frame of the backlog, apply nothing. */
async function catchupStream(j: Extract<Job, { kind: 'catchup-stream' }>) {
  const passes: { totalMs: number; rate: number; frames: number }[] = [];
  for (let p = 0; p < j.passes; p++) {
    const warm = Math.floor(j.expect / 10);
    let tw = 0;
    let cw = 0;
    let frames = 0;
    let resolveDone!: (t: number) => void;
    const done = new Promise<number>((r) => (resolveDone = r));
    const t0 = nowUs();
    const c = connectClient(j.target, {
      index: p,
      onMessage: (buf) => {
        const f = JSON.parse(buf.toString()) as { events: unknown[]; throughSeq: number };
        frames++;
        if (!tw && f.throughSeq >= warm) {
          tw = nowUs();
          cw = f.throughSeq;
        }
        if (f.throughSeq >= j.expect) resolveDone(nowUs());
      },
    });
    await c.ready;
    const t1 = await Promise.race([done, sleep(120_000).then(() => Promise.reject(new Error('stream catch-up timed out')))]);
    c.close();
    passes.push({ totalMs: (t1 - t0) / 1000, rate: (j.expect - cw) / ((t1 - tw) / 1e6), frames });
  }
  return { passes, measured: passes[passes.length - 1] };
}

/** Yjs peers: a fresh client syncs the document (SyncStep1 -> SyncStep2) and applies it into a Y.Doc. */
async function catchupY(j: Extract<Job, { kind: 'catchup-y' }>) {
  const passes: { totalMs: number; rate: number; streamMs: number }[] = [];
  for (let p = 0; p < j.passes; p++) {
    let streamed = 0;
    let resolveDone!: (t: number) => void;
    const done = new Promise<number>((r) => (resolveDone = r));
    const t0 = nowUs();
    const c = connectClient(j.target, {
      index: p,
      onMessage: (buf) => {
        const d = decoding.createDecoder(buf);
        if (j.target.system === 'hocuspocus') decoding.readVarString(d);
        decoding.readVarUint(d);
        if (decoding.readVarUint(d) !== 1) return; // only SyncStep2
        streamed = nowUs();
        const doc = new Y.Doc();
        Y.applyUpdate(doc, decoding.readVarUint8Array(d));
        const size = doc.getMap('items').size;
        if (size !== j.expect) process.stderr.write(`catch-up ${j.target.system}: doc has ${size} rows, expected ${j.expect}\n`);
        resolveDone(nowUs());
      },
    });
    await c.ready;
    const t1 = await Promise.race([done, sleep(120_000).then(() => Promise.reject(new Error('Yjs catch-up timed out')))]);
    c.close();
    passes.push({ totalMs: (t1 - t0) / 1000, rate: j.expect / ((t1 - t0) / 1e6), streamMs: (streamed - t0) / 1000 });
  }
  return { passes, measured: passes[passes.length - 1] };
}

/** The apply floor: read the hub's stored events page by page and upsert them with plain prepared statements. */
function sqliteApply(j: Extract<Job, { kind: 'sqlite-apply' }>) {
  mkdirSync(j.dir, { recursive: true });
  const passes: { totalMs: number; rate: number }[] = [];
  for (let p = 0; p < j.passes; p++) {
    const path = join(j.dir, `floor-app-${p}.db`);
    rmSync(path, { force: true });
    const hub = new Database(j.hubDb, { readonly: true });
    const app = new Database(path);
    app.pragma('journal_mode = WAL');
    app.pragma('synchronous = NORMAL'); // as the agent opens the app DB
    app.exec('CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER, mark TEXT, body TEXT, deleted_at TEXT); CREATE TABLE cursor (seq INTEGER); INSERT INTO cursor VALUES (0);');
    const read = hub.prepare('SELECT server_seq AS seq, body FROM events WHERE project = ? AND server_seq > ? ORDER BY server_seq LIMIT 1000');
    const upsert = app.prepare(
      'INSERT INTO items (id, n, mark, body) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET n = excluded.n, mark = excluded.mark, body = excluded.body',
    );
    const setCursor = app.prepare('UPDATE cursor SET seq = ?');
    const applyPage = app.transaction((rows: { seq: number; body: string }[]) => {
      for (const r of rows) {
        const e = JSON.parse(r.body) as { payload: { newData: { id: string; n: number; mark: string; body: string } } };
        const d = e.payload.newData;
        upsert.run(d.id, d.n, d.mark, d.body);
      }
      setCursor.run(rows[rows.length - 1]!.seq);
    });
    const warm = Math.floor(j.expect / 10);
    let cursor = 0;
    let tw = 0;
    let cw = 0;
    const t0 = nowUs();
    for (;;) {
      const rows = read.all(j.project, cursor) as { seq: number; body: string }[];
      if (rows.length === 0) break;
      applyPage(rows);
      cursor = rows[rows.length - 1]!.seq;
      if (!tw && cursor >= warm) {
        tw = nowUs();
        cw = cursor;
      }
    }
    const t1 = nowUs();
    hub.close();
    app.close();
    if (cursor !== j.expect) throw new Error(`sqlite apply floor reached ${cursor}, expected ${j.expect}`);
    passes.push({ totalMs: (t1 - t0) / 1000, rate: (j.expect - cw) / ((t1 - tw) / 1e6) });
  }
  rmSync(j.dir, { recursive: true, force: true });
  return { passes, measured: passes[passes.length - 1] };
}

// ---------------------------------------------------------------- main (last: every const above is initialised)

const { job } = await fromParent<{ type: 'job'; job: Job }>('job');
process.on('disconnect', () => process.exit(0));
let result: Record<string, unknown>;
switch (job.kind) {
  case 'ingest':
    result = await ingest(job);
    break;
  case 'sqlite-ingest':
    result = sqliteIngest(job);
    break;
  case 'fanout':
    result = await fanout(job);
    break;
  case 'conns':
    result = await conns(job);
    break;
  case 'catchup-agent':
    result = await catchupAgent(job);
    break;
  case 'catchup-stream':
    result = await catchupStream(job);
    break;
  case 'catchup-y':
    result = await catchupY(job);
    break;
  case 'sqlite-apply':
    result = sqliteApply(job);
    break;
  case 'sqlite-commit':
    result = await sqliteCommit(job);
    break;
  case 'visible-write':
    result = await visibleWrite(job);
    break;
  case 'visible-poll':
    result = await visiblePoll(job);
    break;
  case 'visible-tap':
    result = await visibleTap(job);
    break;
}
process.send!({ type: 'result', result });
await fromParent('stop').catch(() => {});
process.exit(0);
