// The fuzz run: a real hub on SQLite (in this process, or its own with hubProcess), well-behaved
// devices writing all along, and hostile sockets playing seeded scripts (hostile.ts) concurrently.
// At the end it checks:
//   - nothing threw unhandled in this process, and Object.prototype is clean (hub in this process);
//     a hub in its own process never exited by itself and stopped cleanly (exit 0) on SIGTERM;
//   - every hostile socket got the answer its script expects (HTTP status, error code, close code,
//     per-event rejection reasons, acks for valid events, and no error at all when nothing was wrong);
//   - the devices converge (quiesce + checkConverged);
//   - the store holds exactly the acked events: every acked key once, at the acked seq, with the
//     rows as sent; nothing from a hostile device that no ack reported (pushes left unacked by a
//     close are re-sent once, as a client would, so that their fate is known).
import { WebSocket } from 'ws';
import type { IncomingMessage } from 'node:http';
import { ServerFrame } from '../../shared/protocol.ts';
import { ErrorCode } from '../../shared/errors.ts';
import { createHash } from 'node:crypto';
import { createToken } from '../../hub/tokens.ts';
import { startHub, makeTempDir, freshStoreLocation, openStoreAt, processMemoryKb, spawnHub } from '../kit/hub.ts';
import { LIMIT_FLAGS } from '../../hub/cli.ts';
import { checkConverged, makeDevices, quiesce, type Device, type HubRef } from '../kit/devices.ts';
import type { EventStore } from '../../hub/store/event-store.ts';
import { APP_TABLES } from '../kit/app-db.ts';
import { delay } from '../kit/ws-client.ts';
import { HostileGenerator, type HostileScript, type FramePlan } from './hostile.ts';

export interface FuzzOptions {
  seed: number;
  /** Stop starting new hostile sockets after this many frames were sent... */
  frames: number;
  /** ...or after this long (whichever first). */
  ms: number;
  /** Hostile sockets open at a time. */
  sockets: number;
  /** Well-behaved devices (in-process agents with app writers). */
  devices?: number;
  /** Well-formed pushes per ordinary hostile socket (at most). */
  pushesPerSocket?: number;
  /** Progress lines (e.g. to stderr for the long run). */
  progress?: (line: string) => void;
  /**
   * Run the hub as its own process (`synchub hub serve`), so that its peak RSS is its own (the
   * long run). In this process (the default) Object.prototype is checked as well.
   */
  hubProcess?: boolean;
}

export interface FuzzReport {
  seed: number;
  framesSent: number;
  hostileSockets: number;
  durationMs: number;
  crashes: number;
  eventsLost: number;
  unexpectedInLog: number;
  acked: number;
  rejected: number;
  duplicates: number;
  deviceEvents: number;
  hubPeakRssMb: number;
  outcomes: Record<string, number>;
  kinds: Record<string, number>;
  /** Every broken expectation (empty on a clean run; capped). */
  failures: string[];
}

const HUB_OPTIONS = {
  maxFrameBytes: 64 * 1024,
  maxBatchEvents: 50,
  maxEventBytes: 8 * 1024,
  helloTimeoutMs: 1500,
  // Every hostile socket comes from 127.0.0.1, as the devices do: the per-address auth-failure
  // limit (tested in limits.test.ts) would lock the devices out, so it is out of the way here.
  maxAuthFailuresPerMinute: 1_000_000_000,
  // Floods are held back to this rate (backpressure). floodMs stays at its default (60 s): the
  // final re-send pipelines every unacked push of a device at once, as a client catching up may,
  // and a 1.5 s bound closed those as rate_limited in a 5-minute run (rate_limited has its own test).
  maxEventsPerSecond: 4000,
};

interface Outcome {
  status?: number;
  errors: string[];
  closeCode?: number;
  /** Acks by batch. */
  acks: Map<number, { acks: { clientActionId: number; serverSeq: number }[]; rejected: { clientActionId: number; reason: string; serverSeq?: number }[] }>;
  badFrames: number;
  /** Set when the script could not even be sent (a generator bug). */
  clientError?: string;
}

/** Play one script; resolves with what the hub answered. Bounded by timeoutMs. */
function play(h: { url: string }, s: HostileScript, tokens: Record<string, string>, hijackId: string, timeoutMs: number, afterSeq = 0): Promise<Outcome> {
  const out: Outcome = { errors: [], acks: new Map(), badFrames: 0 };
  const headers: Record<string, string> = {};
  if (s.token === 'malformed') headers.authorization = s.authHeader!;
  else if (s.token !== 'none') headers.authorization = `Bearer ${tokens[s.token]}`;
  const url = `${h.url}/v1/projects/${s.urlProject}/sync`;
  return new Promise((resolve) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, { headers, maxPayload: 64 * 1024 * 1024 });
    } catch (err) {
      // The client library refused to send it (e.g. a header it cannot carry): a generator bug, reported as such.
      out.clientError = (err as Error).message;
      resolve(out);
      return;
    }
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(check);
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
      resolve(out);
    };
    const timer = setTimeout(finish, timeoutMs);
    const pushes = s.frames.filter((f) => f.push).length;
    // A script with nothing wrong ends when every push is acked; others when the hub closes.
    const check = setInterval(() => {
      if (s.expect.kind === 'fine' && out.acks.size >= pushes && (s.hello === null || welcomed)) {
        ws.close(1000);
      }
    }, 25);
    let welcomed = false;
    ws.on('unexpected-response', (req, res: IncomingMessage) => {
      out.status = res.statusCode;
      req.destroy();
      finish();
    });
    ws.on('error', () => {});
    ws.on('close', (code) => {
      out.closeCode = code;
      finish();
    });
    ws.on('message', (data, isBinary) => {
      let f: ServerFrame;
      try {
        if (isBinary) throw new Error('binary');
        f = ServerFrame.parse(JSON.parse(String(data)));
      } catch {
        out.badFrames++;
        return;
      }
      if (f.type === 'welcome') welcomed = true;
      else if (f.type === 'error') out.errors.push(f.code);
      else if (f.type === 'ack') out.acks.set(f.batch, { acks: f.acks, rejected: f.rejected });
    });
    ws.on('open', () => {
      if (s.hijackHello) ws.send(JSON.stringify({ type: 'hello', protocol: 1, deviceId: hijackId, afterSeq: 0 }));
      if (s.hello !== null) ws.send(JSON.stringify({ type: 'hello', protocol: 1, deviceId: s.hello, afterSeq }));
      for (const f of s.frames) {
        if (ws.readyState !== WebSocket.OPEN) break;
        ws.send(f.data, { binary: f.binary });
      }
    });
  });
}

/** What identifies an event's rows (as JSON text) without keeping them. */
const rowsDigest = (newData: string, previousData: string) => createHash('sha256').update(newData).update('\u0000').update(previousData).digest('base64');

/** The hub under fuzz, wherever it runs. */
interface FuzzHub extends HubRef {
  /** The peak resident size of the hub's process so far (MB). */
  peakRssMb(): number;
  /** Why a hub process stopped by itself, or null. */
  crashed(): string | null;
  close(): Promise<void>;
}

/** The hub options as `hub serve` flags, by the CLI's own table (an option that has no flag throws). */
function serveFlags(options: Record<string, number>): string[] {
  const flagOf = new Map(Object.entries(LIMIT_FLAGS).map(([flag, option]) => [option as string, flag]));
  return Object.entries(options).flatMap(([option, value]) => {
    const flag = flagOf.get(option);
    if (!flag) throw new Error(`fuzz bug: hub option ${option} has no hub serve flag`);
    return [`--${flag}`, String(value)];
  });
}

async function openFuzzHub(location: string, store: EventStore, project: string, token: string, ownProcess: boolean): Promise<FuzzHub> {
  if (!ownProcess) {
    // Shares this process: its RSS is the whole process's (clients and devices included).
    const h = await startHub({ dbPath: location, project: null, options: HUB_OPTIONS });
    let peak = process.memoryUsage().rss;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100);
    return { url: h.url, store: h.store, project, token, peakRssMb: () => Math.round(peak / 1024 / 1024), crashed: () => null, close: async () => (clearInterval(timer), await h.close()) };
  }
  const child = await spawnHub(location, 0, { args: serveFlags(HUB_OPTIONS), env: { SYNCHUB_LOG_LEVEL: 'error' } });
  let exit: string | null = null;
  let closing = false;
  void child.exited.then((e) => {
    if (!closing) exit = `hub process exited by itself (${e.code ?? e.signal}): ${child.stderr().slice(-2000)}`;
  });
  // VmHWM: the kernel's own peak of the resident set, so nothing between samples is missed.
  const hwmKb = () => processMemoryKb(child.pid, 'VmHWM');
  let peakKb = 0;
  return {
    url: child.url,
    // This process's store keeps heads in memory as their only writer would: read them from the file.
    store: { headSeq: async (p) => (await store.logInfo!(p)).headSeq, readAfter: (p, after, limit) => store.readAfter(p, after, limit) },
    project,
    token,
    peakRssMb: () => Math.round((exit || closing ? peakKb : (peakKb = Math.max(peakKb, hwmKb()))) / 1024),
    crashed: () => exit,
    close: async () => {
      if (!exit) peakKb = Math.max(peakKb, hwmKb());
      closing = true;
      child.kill('SIGTERM');
      const e = await child.exited;
      if (!exit && e.code !== 0) exit = `hub process did not stop cleanly on SIGTERM (${e.code ?? e.signal}): ${child.stderr().slice(-2000)}`;
    },
  };
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const progress = opts.progress ?? (() => {});
  const failures: string[] = [];
  const fail = (msg: string) => {
    if (failures.length < 50) failures.push(msg);
  };
  let crashes = 0;
  const onCrash = (err: unknown) => {
    crashes++;
    fail(`unhandled in process: ${(err as Error)?.stack ?? String(err)}`);
  };
  process.on('unhandledRejection', onCrash);
  process.on('uncaughtException', onCrash);
  const projectA = 'p1';
  const projectB = 'p2';
  // Projects and tokens exist before the hub starts (it may be another process on the same file).
  const location = await freshStoreLocation();
  const store = await openStoreAt(location);
  const mint = async (project: string, role: 'read' | 'write' = 'write') => (await createToken(store, project, role)).token;
  await store.createProject(projectA);
  await store.createProject(projectB);
  const tokens: Record<string, string> = {
    write: '',
    read: await mint(projectA, 'read'),
    unknown: 'shub_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB',
    otherProject: await mint(projectB),
  };
  // Hostile sockets use their own write token (one per project), never the devices' one.
  const writeTokens: Record<string, string> = { [projectA]: await mint(projectA), [projectB]: tokens.otherProject! };
  const h = await openFuzzHub(location, store, projectA, await mint(projectA), opts.hubProcess ?? false);
  const dir = makeTempDir('synchub-fuzz-');
  const devices: Device[] = makeDevices(dir, h, Array.from({ length: opts.devices ?? 3 }, (_, i) => `dev${i}`));
  const report: FuzzReport = {
    seed: opts.seed,
    framesSent: 0,
    hostileSockets: 0,
    durationMs: 0,
    crashes: 0,
    eventsLost: 0,
    unexpectedInLog: 0,
    acked: 0,
    rejected: 0,
    duplicates: 0,
    deviceEvents: 0,
    hubPeakRssMb: 0,
    outcomes: {},
    kinds: {},
    failures,
  };
  try {
    for (const d of devices) await d.start();
    progress(`devices started`);
    const hijackIds = devices.map((d) => d.status().deviceId);

    // Devices write all along.
    let writing = true;
    let n = 0;
    const writers = devices.map(async (d, i) => {
      while (writing) {
        const id = `${d.name}-${n++}`;
        d.writer.create(i % 2 ? 'comments' : 'issues', i % 2 ? { id, issue_id: 'x', body: `b${n}`, created_at: 't' } : { id, title: `t${n}`, status: 'open', priority: n % 5, labels: '[]', deleted_at: null, updated_at: 't' });
        if (n % 3 === 0) d.writer.update(i % 2 ? 'comments' : 'issues', id, i % 2 ? { body: 'edited' } : { title: 'edited' });
        await delay(15);
      }
    });

    const gen = new HostileGenerator(opts.seed, { projectA, projectB, appTables: APP_TABLES, maxFrameBytes: HUB_OPTIONS.maxFrameBytes, maxBatchEvents: HUB_OPTIONS.maxBatchEvents, maxEventBytes: HUB_OPTIONS.maxEventBytes });
    /** Every seq the hub reported for a dedup key (acks and duplicates), by project. */
    // Rows are kept as a digest: a long run acks over a million events, and their rows in full
    // exhausted this process's heap (4 GB) after 1.1 million frames.
    const reported = new Map<string, { project: string; seqs: Set<number>; rows: string }>();
    const hostileDevices = new Set<string>();
    const unacked: { s: HostileScript; f: FramePlan }[] = [];

    const judge = (s: HostileScript, o: Outcome) => {
      const label = o.status !== undefined ? `http ${o.status}` : o.errors.length ? `error ${o.errors[0]}` : o.closeCode !== undefined ? `close ${o.closeCode}` : 'open';
      report.outcomes[label] = (report.outcomes[label] ?? 0) + 1;
      report.kinds[s.kind] = (report.kinds[s.kind] ?? 0) + 1;
      const where = `script ${s.id} (${s.kind}, ${s.project})`;
      if (o.clientError) fail(`${where}: could not be sent: ${o.clientError}`);
      if (o.badFrames) fail(`${where}: ${o.badFrames} frames from the hub do not parse`);
      const e = s.expect;
      const rateLimited = o.errors.includes(ErrorCode.RateLimited);
      if (e.kind === 'refused') {
        if (o.status === undefined || !e.statuses.includes(o.status)) fail(`${where}: expected HTTP ${e.statuses.join('/')}, got ${label}`);
      } else if (e.kind === 'error') {
        if (o.status !== undefined) fail(`${where}: refused at upgrade (${o.status}); expected error ${e.codes}`);
        else if (!rateLimited && !e.codes.includes(o.errors[0] ?? '')) fail(`${where}: expected error ${e.codes.join('/')}, got ${label} (${o.errors.join(',')})`);
        if (o.closeCode === undefined) fail(`${where}: the hub did not close the socket after error ${o.errors[0]}`);
      } else if (e.kind === 'close') {
        if (o.closeCode === undefined || !e.codes.includes(o.closeCode)) fail(`${where}: expected close ${e.codes.join('/')}, got ${label}`);
      } else if (o.status !== undefined || (o.errors.length > 0 && !rateLimited)) {
        fail(`${where}: nothing wrong was sent, yet got ${label}`);
      }
      if (s.hello) hostileDevices.add(`${s.project}|${s.hello}`);
      for (const f of s.frames) {
        if (!f.push) continue;
        const ack = o.acks.get(f.push.batch);
        if (!ack) {
          // Only a closed socket may leave a push unanswered.
          if (o.closeCode === undefined && e.kind === 'fine') fail(`${where}: push ${f.push.batch} never acked on an open socket`);
          // Without its other frames: only this push is re-sent.
          if (o.status === undefined && s.hello) unacked.push({ s: { ...s, frames: [] }, f });
          continue;
        }
        record(s, f, ack, where);
      }
    };

    const record = (s: HostileScript, f: FramePlan, ack: NonNullable<ReturnType<Outcome['acks']['get']>>, where: string) => {
      const acked = new Map(ack.acks.map((a) => [a.clientActionId, a.serverSeq]));
      const rejected = new Map(ack.rejected.map((r) => [r.clientActionId, r]));
      for (const ev of f.push!.events) {
        const key = `${s.project}|${s.hello}|${ev.sessionId}|${ev.clientActionId}`;
        const a = acked.get(ev.clientActionId);
        const r = rejected.get(ev.clientActionId);
        let seq: number | undefined;
        if (ev.reject !== null) {
          if (r?.reason !== ev.reject) fail(`${where}: event ${ev.clientActionId} should be rejected ${ev.reject}, got ${r ? r.reason : a !== undefined ? `ack ${a}` : 'nothing'}`);
          else report.rejected++;
          continue;
        }
        if (a !== undefined) {
          seq = a;
          report.acked++;
        } else if (r?.reason === 'duplicate' && r.serverSeq !== undefined) {
          seq = r.serverSeq;
          report.duplicates++;
        } else {
          fail(`${where}: valid event ${ev.clientActionId} not acked: ${r ? `rejected ${r.reason}` : 'missing from the ack'}`);
          continue;
        }
        let entry = reported.get(key);
        if (!entry) reported.set(key, (entry = { project: s.project, seqs: new Set(), rows: rowsDigest(ev.newData, ev.previousData) }));
        entry.seqs.add(seq);
      }
    };

    // Hostile sockets, `opts.sockets` at a time.
    const deadline = performance.now() + opts.ms;
    const pps = opts.pushesPerSocket ?? 40;
    const worker = async (w: number) => {
      while (report.framesSent < opts.frames && performance.now() < deadline && !h.crashed()) {
        const s = gen.nextScript(pps);
        s.token = s.token === 'write' ? 'write' : s.token;
        const toks = { ...tokens, write: writeTokens[s.project]! };
        report.hostileSockets++;
        report.framesSent += s.frames.length + (s.hello ? 1 : 0) + (s.hijackHello ? 1 : 0);
        // Most hostile sockets start at the head: from 0, each would stream the whole (growing) log
        // and the run would measure backlog reads; every 50th still asks for it all.
        const afterSeq = s.id % 50 === 0 ? 0 : await h.store.headSeq(s.project);
        const o = await play(h, s, toks, hijackIds[(s.id + w) % hijackIds.length]!, 20_000, afterSeq);
        judge(s, o);
      }
    };
    const ticker = setInterval(() => progress(`${report.framesSent} frames, ${report.hostileSockets} sockets, ${failures.length} failures`), 5000);
    await Promise.all(Array.from({ length: opts.sockets }, (_, w) => worker(w))).finally(() => clearInterval(ticker));
    progress(`hostile phase over: ${report.framesSent} frames; re-sending ${unacked.length} unacked pushes`);

    // A client re-sends what was never acked (one socket per hostile device, pipelined): afterwards
    // every stored event has an answer.
    const byDevice = new Map<string, { s: HostileScript; f: FramePlan }[]>();
    for (const u of unacked) {
      const k = `${u.s.project}|${u.s.hello}`;
      byDevice.set(k, [...(byDevice.get(k) ?? []), u]);
    }
    for (const list of byDevice.values()) {
      const first = list[0]!.s;
      // Batch numbers are the client's: renumber so that each resend has its own ack.
      const frames = list.map(({ f }, i) => {
        // The text is renumbered in place: a row nested thousands deep cannot go through JSON.stringify again.
        const prefix = `{"type":"push","batch":${f.push!.batch},`;
        const text = f.data as string;
        if (!text.startsWith(prefix)) throw new Error(`fuzz bug: push text does not start with ${prefix}`);
        return { data: `{"type":"push","batch":${i + 1},` + text.slice(prefix.length), binary: false, push: { ...f.push!, batch: i + 1 } };
      });
      const resend: HostileScript = { ...first, kind: 'resend', frames, expect: { kind: 'fine' }, hijackHello: false };
      const o = await play(h, resend, { ...tokens, write: writeTokens[first.project]! }, '', 60_000, await h.store.headSeq(first.project));
      frames.forEach((f, i) => {
        const ack = o.acks.get(f.push.batch);
        const where = `resend of script ${list[i]!.s.id} push ${list[i]!.f.push!.batch}`;
        if (!ack) fail(`${where}: no ack (${o.errors.join(',')} ${o.closeCode ?? ''})`);
        else record({ ...list[i]!.s }, f, ack, where);
      });
    }

    progress('quiescing');
    writing = false;
    await Promise.all(writers);
    await quiesce(h, devices, 120_000);
    const logA = await checkConverged(h, devices, dir);
    const deviceIds = new Set(hijackIds);
    report.deviceEvents = logA.filter((e) => deviceIds.has(e.deviceId)).length;

    // The store holds exactly the acked events.
    const seen = new Set<string>();
    for (const project of [projectA, projectB]) {
      let after = 0;
      for (;;) {
        const page = await h.store.readAfter(project, after, 5000);
        if (page.length === 0) break;
        for (const row of page) {
          after = row.seq;
          const e = JSON.parse(row.json) as { serverSeq: number; deviceId: string; sessionId: string; clientActionId: number; payload: { newData: unknown; previousData: unknown } };
          if (project === projectA && deviceIds.has(e.deviceId)) continue;
          const key = `${project}|${e.deviceId}|${e.sessionId}|${e.clientActionId}`;
          const entry = reported.get(key);
          if (!entry) {
            report.unexpectedInLog++;
            fail(`${project} seq ${e.serverSeq}: event ${key} in the store, never acked`);
            continue;
          }
          if (seen.has(key)) fail(`${key} stored twice`);
          seen.add(key);
          if (entry.seqs.size !== 1 || !entry.seqs.has(e.serverSeq)) fail(`${key} stored at seq ${e.serverSeq}, reported as ${[...entry.seqs].join(',')}`);
          if (rowsDigest(JSON.stringify(e.payload.newData), JSON.stringify(e.payload.previousData)) !== entry.rows) fail(`${key} stored rows differ from the rows sent`);
        }
      }
    }
    for (const key of reported.keys()) {
      if (!seen.has(key)) {
        report.eventsLost++;
        fail(`${key} acked but not in the store`);
      }
    }
    if (!opts.hubProcess && Object.keys(Object.prototype).length > 0 || ({} as Record<string, unknown>).polluted !== undefined) fail('Object.prototype was polluted');
  } finally {
    for (const d of devices) await d.close().catch(() => {});
    report.hubPeakRssMb = h.peakRssMb();
    await h.close();
    await store.close();
    const crash = h.crashed();
    if (crash) {
      crashes++;
      fail(crash);
    }
    // Give late socket errors a moment to surface before the listeners go.
    await delay(50);
    process.off('unhandledRejection', onCrash);
    process.off('uncaughtException', onCrash);
  }
  report.crashes = crashes;
  report.durationMs = Math.round(performance.now() - started);
  return report;
}
