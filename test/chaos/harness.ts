// The chaos harness: a real hub process, N real agent processes (`synchub agent run`), each with
// its own app DB written by its own writer process (writer.ts), and a fault proxy (proxy.ts)
// between each agent and the hub. While the writers write, faults are injected at random (seeded):
//
//   hub_kill     kill -9 of the hub, restarted on the same port after a moment
//   agent_kill   kill -9 of one agent, restarted after a moment
//   link_cut     one device's link reset and refused for a while
//   link_stall   one device's link black-holed for a while (no bytes, no FIN, no RST)
//   link_reset   one device's connections reset once
//   offline      one device cut off for a long stretch while its app keeps writing
//   slow         one device reads its socket at a trickle (hub -> agent bytes rate-limited)
//   clock_skew   devices' apps write timestamps minutes apart (for the whole run)
//
// Then every fault is healed, the writers stop, and once the system is quiet the run checks:
//   (1) every action_log row of every device is in the hub log exactly once (by dedup key), the
//       outbox row's server_seq is that event's seq, and the log holds nothing no device wrote;
//   (2) every device's synced tables equal a fresh DB built by replaying the hub log in seq order;
//   (3) the hub log's seqs are 1..N without gaps (and the project's head is N);
//   (4) no pending outbox rows, no cursor short of the head, no quarantined or failed events;
//   (5) during the run: a black-holed link was given up (and a new one tried) within the agent's
//       dead-link bound plus backoff;
// plus: no process died that the harness did not kill. A violation carries the smallest evidence
// (entity, devices, values). Everything runs on 127.0.0.1 and every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { SyncEvent } from '../../shared/event.ts';
import { dedupKey } from '../../shared/event.ts';
import type { EventStore } from '../../hub/store/event-store.ts';
import { SqliteEventStore } from '../../hub/store/sqlite.ts';
import { dumpTables, makeAppDb, replayInto } from '../kit/app-db.ts';
import { Device, hubLog, spawnAgent, type HubRef } from '../kit/devices.ts';
import { REPO_ROOT, runCli, spawnHub, type SpawnedHub } from '../kit/hub.ts';
import { delay, seededRandom } from '../kit/ws-client.ts';
import { FaultProxy } from './proxy.ts';

const WRITER = fileURLToPath(new URL('./writer.ts', import.meta.url));
const PROJECT = 'chaos';

export type FaultKind = 'hub_kill' | 'agent_kill' | 'link_cut' | 'link_stall' | 'link_reset' | 'offline' | 'slow' | 'clock_skew';

export interface ChaosConfig {
  seed: number;
  /** Devices (>= 5 for the suite). */
  devices: number;
  /** How long the writers write and faults are injected. */
  faultMs: number;
  /** Mean changes per second per writer. */
  writeRate: number;
  /** Mean gap between random faults (on top of the guaranteed ones). */
  meanFaultGapMs: number;
  /** Ranges [min, max] in ms. */
  hubDownMs: [number, number];
  agentDownMs: [number, number];
  cutMs: [number, number];
  stallMs: [number, number];
  offlineMs: [number, number];
  slowMs: [number, number];
  /** Hub -> agent rate of a slow device, bytes/s [min, max]. */
  slowRate: [number, number];
  /** Largest clock skew of a device, ms (either direction). */
  skewMs: number;
  /** At least this many of each (when the fault phase is long enough to place them). */
  guaranteed: Partial<Record<Exclude<FaultKind, 'clock_skew'>, number>>;
  /** SYNCHUB_AGENT_TUNING for the agents (null: production timings). */
  agentTuning: Record<string, number> | null;
  /** After healing: writers keep writing this long on a healthy system. */
  afterHealWriteMs: number;
  quiesceTimeoutMs: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Keep the work dir (default: only when there are violations). */
  keepDir?: boolean;
}

export interface Violation {
  check: string;
  message: string;
  evidence?: unknown;
}

export interface ChaosSummary {
  seed: number;
  minutes: number;
  devices: number;
  /** action_log rows written by all apps. */
  eventsWritten: number;
  hubEvents: number;
  faults: Record<string, number>;
  violations: Violation[];
  stats: {
    durationMs: number;
    conflictsRecorded: number;
    hubRebindRetries: number;
    writerOps: number;
    writerBusy: number;
    proxyConnections: number;
    quiesceMs: number;
    slow: SlowReport[];
    /** Why links went down and what the hub complained about, counted. */
    logs: Record<string, number>;
    /** Where the DBs are (kept when there are violations). */
    dir: string | null;
  };
}

/** A short, bounded configuration (the `npm test` run). */
export function shortConfig(seed: number): ChaosConfig {
  return {
    seed,
    devices: 5,
    faultMs: 36_000,
    writeRate: 15,
    meanFaultGapMs: 2_500,
    hubDownMs: [100, 1_500],
    agentDownMs: [0, 2_000],
    cutMs: [300, 4_000],
    // The longest (guaranteed) stall outlasts the dead-link bound: 3 s + 1 s backoff cap + 2 s.
    stallMs: [1_000, 8_000],
    offlineMs: [12_000, 16_000],
    slowMs: [6_000, 10_000],
    slowRate: [2_000, 8_000],
    skewMs: 5 * 60_000,
    guaranteed: { hub_kill: 2, agent_kill: 3, offline: 1, slow: 1, link_stall: 1, link_cut: 1, link_reset: 1 },
    agentTuning: { pingIntervalMs: 1_000, backoffBaseMs: 50, backoffCapMs: 1_000 },
    afterHealWriteMs: 2_000,
    quiesceTimeoutMs: 30_000,
  };
}

/** The long soak: production agent timings, minutes-long offline and slow stretches. */
export function soakConfig(seed: number, minutes: number, devices: number): ChaosConfig {
  const faultMs = Math.round(minutes * 60_000);
  const perTen = Math.max(1, Math.round(minutes / 10));
  return {
    seed,
    devices,
    faultMs,
    writeRate: 8,
    meanFaultGapMs: 6_000,
    hubDownMs: [100, 5_000],
    agentDownMs: [0, 10_000],
    cutMs: [500, 20_000],
    // Up to past the production dead-link bound (31 s) plus a full backoff (30 s).
    stallMs: [2_000, 75_000],
    offlineMs: [90_000, 240_000],
    slowMs: [30_000, 120_000],
    slowRate: [1_000, 16_000],
    skewMs: 10 * 60_000,
    guaranteed: { hub_kill: 3 * perTen, agent_kill: 5 * perTen, offline: perTen, slow: perTen, link_stall: 2 * perTen, link_cut: 2 * perTen, link_reset: perTen },
    agentTuning: null,
    afterHealWriteMs: 5_000,
    // Production timings: a link black-holed at the end is noticed after ~31 s, then up to 30 s of backoff.
    quiesceTimeoutMs: 180_000,
  };
}

/** What a slow device did while its link trickled. */
export interface SlowReport {
  device: number;
  rate: number;
  ms: number;
  cursorBefore: number;
  cursorAfter: number;
  headBefore: number;
  headAfter: number;
  /** Hub -> agent bytes the proxy let through. */
  bytesDelivered: number;
  /** Connections the agent opened meanwhile (reconnects). */
  newConnections: number;
}

interface PlannedFault {
  at: number;
  kind: Exclude<FaultKind, 'clock_skew'>;
  device: number;
  durationMs: number;
  rate?: number;
  /** offline only: the link comes back slow for a while. */
  thenSlow?: { ms: number; rate: number };
}

/** The seeded fault schedule: guaranteed faults at random times, then random ones; no two link faults overlap on one device. */
export function planFaults(cfg: ChaosConfig, rnd: () => number): PlannedFault[] {
  const between = (r: [number, number]) => Math.round(r[0] + rnd() * (r[1] - r[0]));
  const plan: PlannedFault[] = [];
  const linkBusy: Array<Array<[number, number]>> = Array.from({ length: cfg.devices }, () => []);
  const hubBusy: Array<[number, number]> = [];
  const end = cfg.faultMs;
  const overlaps = (spans: Array<[number, number]>, a: number, b: number) => spans.some(([x, y]) => a < y + 500 && x < b + 500);
  const durationOf = (kind: PlannedFault['kind']): number => {
    switch (kind) {
      case 'hub_kill':
        return between(cfg.hubDownMs);
      case 'agent_kill':
        return between(cfg.agentDownMs);
      case 'link_cut':
        return between(cfg.cutMs);
      case 'link_stall':
        return between(cfg.stallMs);
      case 'link_reset':
        return 0;
      case 'offline':
        return between(cfg.offlineMs);
      case 'slow':
        return between(cfg.slowMs);
    }
  };
  const tryPlace = (kind: PlannedFault['kind'], at: number, longest = false): boolean => {
    // Guaranteed stalls last the longest: long enough to need dead-link detection (check 5).
    const durationMs = Math.min(longest && kind === 'link_stall' ? cfg.stallMs[1] : durationOf(kind), Math.max(0, end - at));
    const device = Math.floor(rnd() * cfg.devices);
    const rate = kind === 'slow' ? between(cfg.slowRate) : undefined;
    const thenSlow = kind === 'offline' && rnd() < 0.5 ? { ms: between(cfg.slowMs), rate: between(cfg.slowRate) } : undefined;
    const busyMs = durationMs + (thenSlow?.ms ?? 0);
    if (kind === 'hub_kill') {
      if (overlaps(hubBusy, at, at + durationMs)) return false;
      hubBusy.push([at, at + durationMs + 2_000]);
    } else if (kind !== 'agent_kill') {
      // Link faults: one at a time per device (a cut inside a stall would heal the stall early).
      for (let k = 0; k < cfg.devices; k++) {
        const d = (device + k) % cfg.devices;
        if (!overlaps(linkBusy[d]!, at, at + busyMs)) {
          linkBusy[d]!.push([at, at + busyMs]);
          plan.push({ at, kind, device: d, durationMs, rate, thenSlow });
          return true;
        }
      }
      return false;
    }
    plan.push({ at, kind, device, durationMs, rate });
    return true;
  };
  // Long faults first, early enough to run their course inside the phase.
  const order: Array<PlannedFault['kind']> = ['offline', 'slow', 'hub_kill', 'link_stall', 'link_cut', 'agent_kill', 'link_reset'];
  for (const kind of order) {
    const n = cfg.guaranteed[kind] ?? 0;
    for (let i = 0; i < n; i++) {
      for (let attempt = 0; attempt < 20; attempt++) {
        const longest = kind === 'offline' ? cfg.offlineMs[1] : kind === 'slow' ? cfg.slowMs[1] : kind === 'link_stall' ? cfg.stallMs[1] : 0;
        const latest = Math.max(1_000, end - longest - 1_000);
        const at = Math.round(1_000 + rnd() * Math.max(0, latest - 1_000));
        if (tryPlace(kind, at, true)) break;
      }
    }
  }
  // Random faults on top, with exponentially distributed gaps.
  const weights: Array<[PlannedFault['kind'], number]> = [
    ['agent_kill', 4],
    ['link_cut', 3],
    ['link_stall', 3],
    ['link_reset', 3],
    ['hub_kill', 1.5],
    ['slow', 0.5],
  ];
  const total = weights.reduce((s, [, w]) => s + w, 0);
  for (let t = 1_000 - Math.log(1 - rnd()) * cfg.meanFaultGapMs; t < end - 500; t += -Math.log(1 - rnd()) * cfg.meanFaultGapMs) {
    let r = rnd() * total;
    const kind = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? 'link_reset';
    tryPlace(kind, Math.round(t));
  }
  return plan.sort((a, b) => a.at - b.at);
}

interface AgentProc {
  proc: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
  /** Set before the harness kills it on purpose. */
  expected: boolean;
}

interface WriterProc {
  proc: ChildProcess;
  exited: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
  expected: boolean;
}

/** Every child the harness started, for the last-resort cleanup when the parent exits. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(proc: ChildProcess): void {
  liveChildren.add(proc);
  proc.once('exit', () => liveChildren.delete(proc));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const p of liveChildren) p.kill('SIGKILL');
    });
  }
}

/**
 * Count a child's JSON log lines (pino) by what they say: the message, plus the error code or the
 * reason of a dropped link, so the summary shows why connections went down, e.g.
 * "link down: no traffic from hub: connection presumed dead" or "closing connection: slow_consumer".
 */
function tallyLog(into: Record<string, number>, text: string, who: string): void {
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let rec: { msg?: string; code?: string; reason?: string; level?: number };
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    if (!rec.msg || rec.msg === 'connected to hub' || rec.msg === 'agent started' || rec.msg === 'agent stopped' || rec.msg === 'signal received') continue;
    const detail = rec.code ?? rec.reason;
    const key = `${who}: ${rec.msg}${detail ? `: ${String(detail).replace(/127\.0\.0\.1:\d+/g, 'HUB').slice(0, 80)}` : ''}`;
    into[key] = (into[key] ?? 0) + 1;
  }
}

/** Resolves after `ms` without keeping the process alive (for Promise.race bounds). */
function timeout(ms: number): Promise<'timeout'> {
  return new Promise((resolve) => setTimeout(() => resolve('timeout'), ms).unref());
}

function tail(text: string, n = 1500): string {
  return text.length > n ? `…${text.slice(-n)}` : text;
}

/** An AbortSignal-aware sleep: resolves early (no throw) when the signal fires. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

class ChaosRun {
  readonly dir = mkdtempSync(join(tmpdir(), 'synchub-chaos-'));
  readonly hubDb = join(this.dir, 'hub.db');
  readonly rnd: () => number;
  readonly violations: Violation[] = [];
  readonly faults: Record<string, number> = {};
  hub: SpawnedHub | null = null;
  hubExpectedExit = false;
  hubPort = 0;
  hubRebindRetries = 0;
  token = '';
  proxies: FaultProxy[] = [];
  agents: Array<AgentProc | null> = [];
  writers: Array<WriterProc | null> = [];
  skews: number[] = [];
  readonly slowReports: SlowReport[] = [];
  /** Log lines of the hub (warn and up) and the agents (info and up), counted by kind. */
  readonly logTally: Record<string, number> = {};
  /** Tasks of faults in progress (each heals itself, at the latest when `phase` aborts). */
  private readonly running = new Set<Promise<void>>();
  private readonly t0 = Date.now();
  private restartingHub: Promise<void> | null = null;
  stopped = false;

  constructor(readonly cfg: ChaosConfig) {
    this.rnd = seededRandom(cfg.seed);
  }

  log(line: string): void {
    this.cfg.log?.(`[chaos +${((Date.now() - this.t0) / 1000).toFixed(1)}s] ${line}`);
  }

  violate(v: Violation): void {
    this.violations.push(v);
    this.log(`VIOLATION ${v.check}: ${v.message}`);
  }

  count(kind: FaultKind): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
  }

  dbPath(i: number): string {
    return join(this.dir, `device-${i}.db`);
  }

  /** How long an agent may keep a silent link before it must have tried a new one: dead-link bound + backoff cap + slack. */
  deadLinkBoundMs(): number {
    const t = this.cfg.agentTuning ?? {};
    const ping = t.pingIntervalMs ?? 15_000;
    return (t.deadAfterMs ?? ping * 2 + 1_000) + (t.backoffCapMs ?? 30_000) + 2_000;
  }

  /** A device's cursor, read from its DB on a separate read-only connection (-1 when unreadable). */
  cursorOf(i: number): number {
    try {
      const db = new Database(this.dbPath(i), { readonly: true, fileMustExist: true });
      try {
        db.pragma('busy_timeout = 2000');
        return (db.prepare('SELECT last_pulled_server_seq AS c FROM sync_state LIMIT 1').get() as { c: number }).c;
      } finally {
        db.close();
      }
    } catch {
      return -1;
    }
  }

  /** The hub's committed head, read from its DB file (-1 when unreadable). */
  hubHead(): number {
    try {
      const db = new Database(this.hubDb, { readonly: true, fileMustExist: true });
      try {
        db.pragma('busy_timeout = 2000');
        return (db.prepare('SELECT head_seq AS h FROM projects WHERE name = ?').get(PROJECT) as { h: number }).h;
      } finally {
        db.close();
      }
    } catch {
      return -1;
    }
  }

  // ---- processes -------------------------------------------------------------------------

  async startHub(): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const hub = await spawnHub(this.hubDb, this.hubPort, { timeoutMs: 15_000 });
        track(hub.proc);
        this.hub = hub;
        this.hubPort = hub.port;
        this.hubExpectedExit = false;
        void hub.exited.then((e) => {
          tallyLog(this.logTally, hub.stderr(), 'hub');
          if (this.hub === hub && !this.hubExpectedExit && !this.stopped) {
            this.violate({ check: 'process', message: `the hub exited on its own (${e.code ?? e.signal})`, evidence: { stderr: tail(hub.stderr()) } });
            this.hub = null;
          }
        });
        return;
      } catch (err) {
        const message = (err as Error).message;
        // The port may still be held for a moment after kill -9 (TIME_WAIT, or the old process's
        // socket not yet closed by the kernel): retry briefly, and count it.
        if (/EADDRINUSE/.test(message) && Date.now() < deadline) {
          this.hubRebindRetries++;
          await delay(200);
          continue;
        }
        throw new Error(`hub did not start on port ${this.hubPort}: ${message.slice(0, 500)}`);
      }
    }
  }

  async killHub(downMs: number, signal?: AbortSignal): Promise<void> {
    const hub = this.hub;
    if (!hub || this.restartingHub) return;
    let release!: () => void;
    this.restartingHub = new Promise((r) => (release = r));
    try {
      this.hubExpectedExit = true;
      this.hub = null;
      hub.kill('SIGKILL');
      await hub.exited;
      this.count('hub_kill');
      this.log(`hub killed (-9), down for ${downMs} ms`);
      await sleep(downMs, signal);
      await this.startHub();
      this.log(`hub restarted on port ${this.hubPort}`);
    } finally {
      this.restartingHub = null;
      release();
    }
  }

  startAgent(i: number): void {
    const hubRef: HubRef = {
      url: this.proxies[i]!.url,
      project: PROJECT,
      token: this.token,
      // spawnAgent only reads url, project and token; the hub runs in another process.
      store: null as unknown as EventStore,
    };
    // Info level: every dropped link is logged with its reason (tallied in the summary).
    const env: NodeJS.ProcessEnv = { SYNCHUB_LOG_LEVEL: 'info', ...(this.cfg.agentTuning ? { SYNCHUB_AGENT_TUNING: JSON.stringify(this.cfg.agentTuning) } : {}) };
    const child = spawnAgent(this.dir, this.dbPath(i), hubRef, env);
    track(child.proc);
    const agent: AgentProc = { ...child, expected: false };
    this.agents[i] = agent;
    void child.exited.then((code) => {
      tallyLog(this.logTally, child.stderr(), 'agent');
      if (agent.expected || this.stopped) return;
      this.violate({ check: 'process', message: `agent ${i} exited on its own (code ${code})`, evidence: { device: i, stderr: tail(child.stderr()) } });
      if (this.agents[i] === agent) this.agents[i] = null;
    });
  }

  async killAgent(i: number, downMs: number, signal?: AbortSignal): Promise<void> {
    const agent = this.agents[i];
    if (!agent) return;
    agent.expected = true;
    this.agents[i] = null;
    agent.proc.kill('SIGKILL');
    await agent.exited;
    this.count('agent_kill');
    this.log(`agent ${i} killed (-9), down for ${downMs} ms`);
    await sleep(downMs, signal);
    if (!this.stopped) this.startAgent(i);
  }

  async stopAgent(i: number): Promise<void> {
    const agent = this.agents[i];
    if (!agent) return;
    agent.expected = true;
    this.agents[i] = null;
    agent.proc.kill('SIGTERM');
    const code = await Promise.race([agent.exited, timeout(10_000)]);
    if (code === 'timeout') {
      this.violate({ check: 'process', message: `agent ${i} did not stop within 10 s of SIGTERM`, evidence: { device: i, stderr: tail(agent.stderr()) } });
      agent.proc.kill('SIGKILL');
      await agent.exited;
    } else if (code !== 0) {
      this.violate({ check: 'process', message: `agent ${i} exited with code ${code} on SIGTERM`, evidence: { device: i, stderr: tail(agent.stderr()) } });
    }
  }

  startWriter(i: number): void {
    const proc = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        WRITER,
        '--db',
        this.dbPath(i),
        '--name',
        `d${i}`,
        '--seed',
        String((this.cfg.seed * 7919 + i * 104_729) >>> 0),
        // `=` form: a negative skew would otherwise read as a flag.
        `--skew-ms=${this.skews[i]}`,
        '--rate',
        String(this.cfg.writeRate),
        '--max-ms',
        String(this.cfg.faultMs + this.cfg.afterHealWriteMs + 120_000),
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    track(proc);
    let out = '';
    let err = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err = tail(err + d, 4000)));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    const w: WriterProc = { proc, exited, stdout: () => out, stderr: () => err, expected: false };
    this.writers[i] = w;
    void exited.then((code) => {
      if (w.expected || this.stopped) return;
      this.violate({ check: 'process', message: `writer ${i} exited on its own (code ${code})`, evidence: { device: i, stderr: tail(err) } });
    });
  }

  async stopWriters(): Promise<{ ops: number; busy: number }> {
    let ops = 0;
    let busy = 0;
    await Promise.all(
      this.writers.map(async (w, i) => {
        if (!w) return;
        w.expected = true;
        w.proc.kill('SIGTERM');
        const code = await Promise.race([w.exited, timeout(10_000)]);
        if (code === 'timeout') {
          w.proc.kill('SIGKILL');
          await w.exited;
        }
        const last = w.stdout().trim().split('\n').pop() ?? '';
        try {
          const r = JSON.parse(last) as { ops?: number; busy?: number };
          ops += r.ops ?? 0;
          busy += r.busy ?? 0;
        } catch {
          this.violate({ check: 'process', message: `writer ${i} did not report on exit`, evidence: { stderr: tail(w.stderr()) } });
        }
      }),
    );
    return { ops, busy };
  }

  /** SIGKILL everything still running, close the proxies. Never throws. */
  async teardown(): Promise<void> {
    this.stopped = true;
    const exits: Promise<unknown>[] = [];
    for (const a of this.agents) if (a) (a.expected = true), a.proc.kill('SIGKILL'), exits.push(a.exited);
    for (const w of this.writers) if (w) (w.expected = true), w.proc.kill('SIGKILL'), exits.push(w.exited);
    if (this.hub) {
      this.hubExpectedExit = true;
      exits.push(this.hub.stop());
    }
    await Promise.race([Promise.all(exits), timeout(10_000)]);
    await Promise.all(this.proxies.map((p) => p.close().catch(() => {})));
  }

  // ---- faults ----------------------------------------------------------------------------

  private spawnTask(fn: () => Promise<void>): void {
    const task = fn().catch((err: unknown) => this.violate({ check: 'harness', message: `fault task failed: ${(err as Error).message}` }));
    this.running.add(task);
    void task.finally(() => this.running.delete(task));
  }

  private inject(f: PlannedFault, phase: AbortSignal): void {
    const p = this.proxies[f.device]!;
    switch (f.kind) {
      case 'hub_kill':
        return this.spawnTask(() => this.killHub(f.durationMs, phase));
      case 'agent_kill':
        return this.spawnTask(() => this.killAgent(f.device, f.durationMs, phase));
      case 'link_reset':
        this.count('link_reset');
        p.reset();
        this.log(`link ${f.device} reset`);
        return;
      case 'link_cut':
      case 'offline':
      case 'link_stall':
        return this.spawnTask(async () => {
          this.count(f.kind);
          if (f.kind === 'link_stall') p.stall();
          else p.cut();
          const since = Date.now();
          const connections = p.stats.connections;
          this.log(`link ${f.device} ${f.kind} for ${f.durationMs} ms`);
          await sleep(f.durationMs, phase);
          // Rule 8: a dead link (no FIN, no RST, no bytes) is noticed within a bounded time, and the
          // agent tries again: a stall longer than that bound must show a new connection attempt.
          const stalledMs = Date.now() - since;
          if (f.kind === 'link_stall' && stalledMs > this.deadLinkBoundMs() && p.stats.connections === connections) {
            this.violate({
              check: '5-liveness',
              message: `device ${f.device} held on to a black-holed link for ${stalledMs} ms (bound ${this.deadLinkBoundMs()} ms: dead-link detection plus backoff)`,
              evidence: { device: f.device, stalledMs, boundMs: this.deadLinkBoundMs(), connectionsDuringStall: 0 },
            });
          }
          p.heal();
          this.log(`link ${f.device} healed`);
          // Back from a long offline stretch on a poor link: a backlog to catch up at a trickle.
          if (f.thenSlow) await this.slowPeriod(f.device, f.thenSlow.rate, f.thenSlow.ms, phase);
        });
      case 'slow':
        return this.spawnTask(() => this.slowPeriod(f.device, f.rate!, f.durationMs, phase));
    }
  }

  /** One device's hub -> agent bytes at `rate` for `ms`; records how far the device got meanwhile. */
  private async slowPeriod(device: number, rate: number, ms: number, phase: AbortSignal): Promise<void> {
    const p = this.proxies[device]!;
    this.count('slow');
    const before = { cursor: this.cursorOf(device), head: this.hubHead(), connections: p.stats.connections, bytes: p.stats.bytesDown, at: Date.now() };
    p.slow(rate);
    this.log(`link ${device} slow (${rate} B/s) for ${ms} ms`);
    await sleep(ms, phase);
    const after = { cursor: this.cursorOf(device), head: this.hubHead(), connections: p.stats.connections, bytes: p.stats.bytesDown, at: Date.now() };
    p.slow(null);
    const report: SlowReport = {
      device,
      rate,
      ms: after.at - before.at,
      cursorBefore: before.cursor,
      cursorAfter: after.cursor,
      headBefore: before.head,
      headAfter: after.head,
      bytesDelivered: after.bytes - before.bytes,
      newConnections: after.connections - before.connections,
    };
    this.slowReports.push(report);
    this.log(`link ${device} back to full speed: ${JSON.stringify(report)}`);
  }

  async runFaultPhase(): Promise<void> {
    const plan = planFaults(this.cfg, this.rnd);
    this.log(`fault plan: ${plan.length} faults over ${this.cfg.faultMs} ms`);
    const phase = new AbortController();
    const start = Date.now();
    for (const f of plan) {
      await sleep(start + f.at - Date.now());
      if (this.violations.some((v) => v.check === 'harness')) break;
      this.inject(f, phase.signal);
    }
    await sleep(start + this.cfg.faultMs - Date.now());
    // Heal everything: fault tasks see the abort and restore their link / process now.
    phase.abort();
    await Promise.race([Promise.all([...this.running]), timeout(30_000)]);
    for (const p of this.proxies) {
      p.slow(null);
      p.heal();
    }
    if (this.restartingHub) await this.restartingHub;
    if (!this.hub) await this.startHub();
    for (let i = 0; i < this.cfg.devices; i++) if (!this.agents[i]) this.startAgent(i);
    this.log('all faults healed');
  }

  // ---- quiescence and checks ---------------------------------------------------------------

  /** Wait until every device has pushed everything and applied through the head, stable over two polls. */
  async quiesce(devices: Device[]): Promise<{ head: number; ms: number }> {
    const started = Date.now();
    const hubDb = new Database(this.hubDb, { readonly: true, fileMustExist: true });
    const headOf = () => (hubDb.prepare('SELECT head_seq AS h FROM projects WHERE name = ?').get(PROJECT) as { h: number }).h;
    try {
      let quietSince = 0;
      let quietHead = -1;
      for (;;) {
        const head = headOf();
        const ok = devices.every((d) => {
          const s = d.status();
          return s.pending === 0 && s.cursor === head;
        });
        if (!ok) quietHead = -1;
        else if (head !== quietHead) {
          quietHead = head;
          quietSince = Date.now();
        } else if (Date.now() - quietSince >= 1_000) {
          return { head, ms: Date.now() - started };
        }
        if (Date.now() - started > this.cfg.quiesceTimeoutMs) {
          const states = devices.map((d, i) => {
            const s = d.status();
            return { device: i, deviceId: s.deviceId, cursor: s.cursor, head, pending: s.pending, status: s.status, hubHead: s.hubHead, lastSyncAt: s.lastSyncAt };
          });
          const stuck = states.filter((s) => s.pending > 0 || s.cursor !== head);
          this.violate({
            check: '4-quiescence',
            message: `no quiescence within ${this.cfg.quiesceTimeoutMs} ms: ${stuck.length} device(s) with pending rows or a cursor short of head ${head}`,
            evidence: stuck.map((s) => ({ ...s, firstPending: firstPending(devices[s.device]!), agentStderr: tail(this.agents[s.device]?.stderr() ?? '', 600) })),
          });
          return { head, ms: Date.now() - started };
        }
        await delay(250);
      }
    } finally {
      hubDb.close();
    }
  }

  /** Checks (1)-(4) on a stopped system: devices' DBs against the hub's log. */
  check(devices: Device[], log: SyncEvent[], projectHead: number): { eventsWritten: number; conflicts: number } {
    // (3) seqs 1..N, no gaps, no repeats; the project's head is N.
    for (let i = 0; i < log.length; i++) {
      if (log[i]!.serverSeq !== i + 1) {
        this.violate({ check: '3-seqs', message: `hub log position ${i} holds seq ${log[i]!.serverSeq}, expected ${i + 1}`, evidence: { prev: log[i - 1]?.serverSeq ?? null, got: log[i]!.serverSeq, next: log[i + 1]?.serverSeq ?? null } });
        break;
      }
    }
    if (projectHead !== log.length) {
      this.violate({ check: '3-seqs', message: `project head_seq is ${projectHead} but the log holds ${log.length} events` });
    }

    // (1) every action_log row exactly once, under its dedup key; the outbox's server_seq agrees.
    const byKey = new Map<string, SyncEvent[]>();
    for (const e of log) {
      const k = dedupKey(e.deviceId, e.sessionId, e.clientActionId);
      const list = byKey.get(k);
      if (list) list.push(e);
      else byKey.set(k, [e]);
    }
    const matched = new Set<string>();
    let eventsWritten = 0;
    let conflicts = 0;
    const missing: unknown[] = [];
    const repeated: unknown[] = [];
    const wrongSeq: unknown[] = [];
    const outOfOrder: unknown[] = [];
    devices.forEach((d, i) => {
      const deviceId = d.status().deviceId;
      const rows = d.loggedRows();
      eventsWritten += rows.length;
      const outbox = new Map(
        (d.writer.db.prepare('SELECT rowid AS rowid, server_seq, action_type, entity_type, entity_id, new_data FROM action_log').all() as Array<{
          rowid: number;
          server_seq: number | null;
          action_type: string;
          entity_type: string;
          entity_id: string;
          new_data: string;
        }>).map((r) => [r.rowid, r]),
      );
      let previous: { rowid: number; seq: number; entity: string } | null = null;
      for (const r of rows) {
        const k = dedupKey(deviceId, r.session_id, r.rowid);
        const events = byKey.get(k) ?? [];
        matched.add(k);
        const row = outbox.get(r.rowid)!;
        const what = { device: i, deviceId, sessionId: r.session_id, rowid: r.rowid, action: row.action_type, entity: `${row.entity_type}/${row.entity_id}`, newData: row.new_data };
        if (events.length === 0) missing.push(what);
        else if (events.length > 1) repeated.push({ ...what, seqs: events.map((e) => e.serverSeq) });
        else if (row.server_seq !== events[0]!.serverSeq) wrongSeq.push({ ...what, outboxServerSeq: row.server_seq, hubSeq: events[0]!.serverSeq });
        // A device's changes enter the log in the order it made them (pushed in rowid order).
        if (events.length > 0) {
          const seq = events[0]!.serverSeq;
          if (previous && seq < previous.seq) outOfOrder.push({ device: i, earlier: previous, later: { rowid: r.rowid, seq, entity: what.entity } });
          previous = { rowid: r.rowid, seq, entity: what.entity };
        }
      }
      conflicts += (d.writer.db.prepare('SELECT COUNT(*) AS n FROM sync_conflicts').get() as { n: number }).n;
    });
    if (missing.length) this.violate({ check: '1-exactly-once', message: `${missing.length} committed local change(s) never reached the hub log`, evidence: missing.slice(0, 5) });
    if (repeated.length) this.violate({ check: '1-exactly-once', message: `${repeated.length} local change(s) are in the hub log more than once`, evidence: repeated.slice(0, 5) });
    if (outOfOrder.length) this.violate({ check: '1-exactly-once', message: `${outOfOrder.length} local change(s) entered the hub log before a change their device made earlier`, evidence: outOfOrder.slice(0, 5) });
    if (wrongSeq.length) this.violate({ check: '1-exactly-once', message: `${wrongSeq.length} outbox row(s) record a server_seq other than their event's`, evidence: wrongSeq.slice(0, 5) });
    const phantom = log.filter((e) => !matched.has(dedupKey(e.deviceId, e.sessionId, e.clientActionId)));
    if (phantom.length) {
      this.violate({
        check: '1-exactly-once',
        message: `${phantom.length} hub event(s) match no device's action_log row`,
        evidence: phantom.slice(0, 5).map((e) => ({ seq: e.serverSeq, deviceId: e.deviceId, sessionId: e.sessionId, clientActionId: e.clientActionId, entity: `${e.entityType}/${e.entityId}` })),
      });
    }

    // (2) every device equals the replay of the hub log.
    const replay = replayInto(join(this.dir, 'replay.db'), log);
    const expected = dumpTables(replay);
    replay.close();
    const dumps = devices.map((d) => d.tables());
    const differing = new Set<number>();
    dumps.forEach((actual, i) => {
      if (JSON.stringify(actual) !== JSON.stringify(expected)) differing.add(i);
    });
    if (differing.size > 0) {
      const diff = firstDifference(expected, dumps, [...differing]);
      const history = log.filter((e) => e.entityType === diff.table && e.entityId === diff.id).slice(-6);
      this.violate({
        check: '2-replay',
        message: `${differing.size} device(s) differ from the replay of the hub log; first: ${diff.table} ${diff.id}`,
        evidence: {
          ...diff,
          differingDevices: [...differing],
          lastEventsOfEntity: history.map((e) => ({ seq: e.serverSeq, device: devices.findIndex((d) => d.status().deviceId === e.deviceId), action: e.actionType, newData: e.payload.newData })),
        },
      });
    }

    // (4) nothing pending, every cursor at the head, nothing quarantined or failed.
    devices.forEach((d, i) => {
      const s = d.status();
      if (s.pending !== 0 || s.cursor !== log.length) {
        this.violate({ check: '4-quiescence', message: `device ${i}: ${s.pending} pending row(s), cursor ${s.cursor} of head ${log.length}`, evidence: { device: i, ...s, firstPending: firstPending(d) } });
      }
      if (s.failed > 0) {
        const rows = d.writer.db.prepare('SELECT direction, server_seq, client_action_id, entity_type, entity_id, action_type, error FROM sync_failed_events ORDER BY id LIMIT 3').all();
        this.violate({ check: '4-quiescence', message: `device ${i}: ${s.failedInbound} inbound / ${s.failedOutbound} outbound event(s) failed`, evidence: { device: i, first: rows } });
      }
    });
    return { eventsWritten, conflicts };
  }
}

function firstPending(d: Device): unknown {
  return d.writer.db.prepare('SELECT rowid AS rowid, session_id, action_type, entity_type, entity_id FROM action_log WHERE synced_at IS NULL AND IFNULL(undone, 0) = 0 ORDER BY rowid LIMIT 1').get() ?? null;
}

type Dump = Record<string, Record<string, unknown>[]>;

/** The first (table, id) where some device differs from the replay, with every device's value of it. */
function firstDifference(expected: Dump, dumps: Dump[], differing: number[]): { table: string; id: string; replay: unknown; devices: Record<string, unknown> } {
  for (const table of Object.keys(expected)) {
    const want = new Map(expected[table]!.map((r) => [String(r.id), r]));
    const have = dumps.map((d) => new Map(d[table]!.map((r) => [String(r.id), r])));
    const ids = new Set<string>(want.keys());
    for (const i of differing) for (const id of have[i]!.keys()) ids.add(id);
    for (const id of [...ids].sort()) {
      const w = JSON.stringify(want.get(id) ?? null);
      if (differing.some((i) => JSON.stringify(have[i]!.get(id) ?? null) !== w)) {
        const devices: Record<string, unknown> = {};
        have.forEach((m, i) => {
          const v = m.get(id) ?? null;
          devices[`device${i}`] = JSON.stringify(v) === w ? '(same as replay)' : v;
        });
        return { table, id, replay: want.get(id) ?? null, devices };
      }
    }
  }
  return { table: '(none)', id: '(row order or columns differ)', replay: null, devices: {} };
}

/** Run one chaos configuration end to end; never leaves a process behind. */
export async function runChaos(cfg: ChaosConfig): Promise<ChaosSummary> {
  if (cfg.devices < 1) throw new Error('devices must be >= 1');
  const run = new ChaosRun(cfg);
  const started = Date.now();
  let devices: Device[] = [];
  let hubEvents = 0;
  let eventsWritten = 0;
  let conflicts = 0;
  let writerOps = { ops: 0, busy: 0 };
  let quiesceMs = 0;
  try {
    run.log(`seed ${cfg.seed}, ${cfg.devices} devices, ${cfg.faultMs} ms of faults, work dir ${run.dir}`);
    // The hub's database through the admin CLI, then the hub itself (port 0 first; restarts reuse the port).
    for (const args of [
      ['hub', 'project', 'create', PROJECT, '--db', run.hubDb],
      ['hub', 'token', 'create', '--project', PROJECT, '--db', run.hubDb],
    ]) {
      const r = await runCli(args, { timeoutMs: 20_000 });
      if (r.code !== 0) throw new Error(`synchub ${args.join(' ')} failed: ${r.stderr}`);
      if (args[1] === 'token') run.token = r.stdout.trim();
    }
    await run.startHub();
    run.log(`hub on port ${run.hubPort}`);

    // Clock skew: devices spread over [-skew, +skew], the first two at the extremes.
    for (let i = 0; i < cfg.devices; i++) {
      const skew = i === 0 ? cfg.skewMs : i === 1 ? -cfg.skewMs : Math.round((run.rnd() * 2 - 1) * cfg.skewMs);
      run.skews.push(skew);
      if (skew !== 0) run.count('clock_skew');
    }
    for (let i = 0; i < cfg.devices; i++) {
      makeAppDb(run.dbPath(i));
      const proxy = new FaultProxy(run.hubPort, `link-${i}`);
      await proxy.listen();
      run.proxies.push(proxy);
    }
    for (let i = 0; i < cfg.devices; i++) run.startAgent(i);
    // The agents create their sync tables at start; then the apps start writing.
    const readyBy = Date.now() + 20_000;
    for (let i = 0; i < cfg.devices; i++) {
      const probe = new Database(run.dbPath(i), { readonly: true });
      try {
        while (!probe.prepare("SELECT 1 FROM sqlite_master WHERE name = 'sync_state'").get()) {
          if (Date.now() > readyBy) throw new Error(`agent ${i} did not initialise its database: ${run.agents[i]?.stderr() ?? ''}`);
          await delay(50);
        }
      } finally {
        probe.close();
      }
    }
    for (let i = 0; i < cfg.devices; i++) run.startWriter(i);
    run.log(`skews (min): ${run.skews.map((s) => (s / 60_000).toFixed(1)).join(', ')}`);

    await run.runFaultPhase();
    await delay(cfg.afterHealWriteMs);
    writerOps = await run.stopWriters();
    run.log(`writers stopped after ${writerOps.ops} changes (${writerOps.busy} busy retries)`);

    devices = Array.from({ length: cfg.devices }, (_, i) => {
      const ref: HubRef = { url: '', project: PROJECT, token: '', store: null as unknown as EventStore };
      return new Device(`d${i}`, run.dbPath(i), ref);
    });
    const q = await run.quiesce(devices);
    quiesceMs = q.ms;
    run.log(`quiescent at head ${q.head} after ${q.ms} ms`);

    // Stop cleanly (agents first, so the hub sees no pushes while stopping), then read the log.
    await Promise.all(devices.map((_, i) => run.stopAgent(i)));
    if (run.hub) {
      const hub = run.hub;
      run.hubExpectedExit = true;
      run.hub = null;
      hub.kill('SIGTERM');
      const e = await Promise.race([hub.exited, timeout(15_000)]);
      if (e === 'timeout' || e.code !== 0) {
        run.violate({ check: 'process', message: `the hub did not exit cleanly on SIGTERM (${e === 'timeout' ? e : (e.code ?? e.signal)})`, evidence: { stderr: tail(hub.stderr()) } });
        await hub.stop();
      }
    }
    const store = new SqliteEventStore(run.hubDb);
    let log: SyncEvent[];
    let projectHead: number;
    try {
      log = await hubLog(store, PROJECT);
      projectHead = await store.headSeq(PROJECT);
    } finally {
      await store.close();
    }
    hubEvents = log.length;
    const r = run.check(devices, log, projectHead);
    eventsWritten = r.eventsWritten;
    conflicts = r.conflicts;
    run.log(
      `checks: (1) ${eventsWritten} local changes vs ${log.length} hub events, (2) ${cfg.devices} devices vs replay, (3) seqs 1..${log.length}, (4) pending/cursors — ` +
        (run.violations.length ? `${run.violations.length} violation(s)` : 'all hold'),
    );
  } catch (err) {
    run.violate({ check: 'harness', message: (err as Error).message });
  } finally {
    for (const d of devices) {
      try {
        await d.close();
      } catch {
        /* already closed */
      }
    }
    await run.teardown();
  }
  const keep = cfg.keepDir || run.violations.length > 0;
  if (!keep) rmSync(run.dir, { recursive: true, force: true });
  return {
    seed: cfg.seed,
    minutes: Math.round((cfg.faultMs / 60_000) * 100) / 100,
    devices: cfg.devices,
    eventsWritten,
    hubEvents,
    faults: run.faults,
    violations: run.violations,
    stats: {
      durationMs: Date.now() - started,
      conflictsRecorded: conflicts,
      hubRebindRetries: run.hubRebindRetries,
      writerOps: writerOps.ops,
      writerBusy: writerOps.busy,
      proxyConnections: run.proxies.reduce((n, p) => n + p.stats.connections, 0),
      quiesceMs,
      slow: run.slowReports,
      logs: Object.fromEntries(Object.entries(run.logTally).sort((a, b) => b[1] - a[1])),
      dir: keep ? run.dir : null,
    },
  };
}
