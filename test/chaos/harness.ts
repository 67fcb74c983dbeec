// The chaos harness: a real hub process (or two nodes on PostgreSQL), N real agent processes (`synchub agent run`), each with
// its own app DB written by its own writer process (writer.ts), and a fault proxy (proxy.ts)
// between each agent and the hub. While the writers write, faults are injected at random (seeded):
//
//   hub_kill     kill -9 of the hub (of one node, with two on PostgreSQL), restarted on the same
//                port after a moment
//   agent_kill   kill -9 of one agent, restarted after a moment
//   link_cut     one device's link reset and refused for a while
//   link_stall   one device's link black-holed for a while (no bytes, no FIN, no RST)
//   link_reset   one device's connections reset once
//   offline      one device cut off for a long stretch while its app keeps writing
//   slow         one device reads its socket at a trickle (hub -> agent bytes rate-limited)
//   clock_skew   devices' apps write timestamps minutes apart (for the whole run)
//   app_lock     one device's app holds its database's write lock for 5-30 s (BEGIN IMMEDIATE and
//                its changes in that open transaction, then COMMIT): the agent can neither apply nor
//                mark pushes synced meanwhile, and must wait it out without exiting
//   app_read_hold  one device's app keeps a read transaction open ~10 s while it and the agent write
//                (the WAL cannot be checkpointed past it)
//   slow_backlog one device goes offline, a bulk loader pushes a backlog (20,000 events in the soak)
//                straight to the hub, then the device comes back behind a 3 KB/s link for minutes:
//                its cursor must keep moving (not be dropped as a slow consumer over and over)
//   pg_conn_kill PostgreSQL mode only (`postgresUrl`: two hub nodes, each device's proxy balancing
//                over both): every hub connection to PostgreSQL is terminated at once
//
// Then every fault is healed, the writers stop, and once the system is quiet the run checks:
//   (1) every action_log row of every device is in the hub log exactly once (by dedup key), the
//       outbox row's server_seq is that event's seq, and the log holds nothing no device wrote;
//   (2) every device's synced tables equal a fresh DB built by replaying the hub log in seq order;
//   (3) the hub log's seqs are 1..N without gaps (and the project's head is N);
//   (4) no pending outbox rows, no cursor short of the head, no quarantined or failed events;
//   (5) during the run: a black-holed link was given up (and a new one tried) within the agent's
//       dead-link bound plus backoff;
//   (6) during a slow_backlog stretch: the slow device never went longer than `slowProgressMs`
//       with neither its cursor nor its acked changes moving (counted from its first connection
//       after the link came back; the plan puts no hub kill, agent kill or app fault on it
//       meanwhile, so the slow link is the only cause). Acks count: they share the trickle with
//       the stream (about 45 bytes per change), and a device that writes fast fills it with them;
// plus: no process died that the harness did not kill: an agent that exits on its own (any code,
// 0 and 1 included, or a signal) is a violation with the last lines of its stderr, counted in
// stats.agentExits, and is restarted a second later as a supervisor would (so the run goes on).
// A violation carries the smallest evidence (entity, devices, values). Everything runs on 127.0.0.1
// and every wait is bounded. The loader's events (slow_backlog) are checked like a device's: each
// acked one is in the log exactly once at its acked seq, and the devices apply them like any other.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { PushEvent, SyncEvent } from '../../shared/event.ts';
import { dedupKey } from '../../shared/event.ts';
import type { EventStore } from '../../hub/store/event-store.ts';
import { RejectReason } from '../../shared/errors.ts';
import { MAX_BATCH_EVENTS } from '../../shared/limits.ts';
import { dumpTables, makeAppDb, replayInto } from '../kit/app-db.ts';
import { Device, hubLog, spawnAgent, type HubRef } from '../kit/devices.ts';
import { openStoreAt, REPO_ROOT, runCli, spawnHub, storeFlags, type SpawnedHub } from '../kit/hub.ts';
import { delay, seededRandom, SyncClient } from '../kit/ws-client.ts';
import { FaultProxy } from './proxy.ts';

const WRITER = fileURLToPath(new URL('./writer.ts', import.meta.url));
const PROJECT = 'chaos';

export type FaultKind =
  | 'hub_kill'
  | 'agent_kill'
  | 'link_cut'
  | 'link_stall'
  | 'link_reset'
  | 'offline'
  | 'slow'
  | 'clock_skew'
  | 'app_lock'
  | 'app_read_hold'
  | 'slow_backlog'
  /** PostgreSQL mode only: every hub connection to PostgreSQL is terminated (pool and LISTEN). */
  | 'pg_conn_kill';

/** Faults of a device's app (one at a time per device, never on a device in a slow_backlog). */
const APP_FAULTS: ReadonlySet<FaultKind> = new Set(['app_lock', 'app_read_hold']);

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
  /** How long the app holds its write lock (app_lock); the first guaranteed one gets the maximum. */
  appLockMs: [number, number];
  /** How long the app keeps a read transaction open (app_read_hold). */
  appReadHoldMs: [number, number];
  /** slow_backlog: events the loader pushes while the device is offline. */
  backlogEvents: number;
  /** slow_backlog: the device's hub -> agent rate afterwards, bytes/s. */
  backlogRate: number;
  /** slow_backlog: how long the link stays that slow. */
  backlogSlowMs: [number, number];
  /** slow_backlog: time the plan reserves for the load (the device is offline meanwhile). No hub kill during a slow_backlog. */
  backlogLoadMs: number;
  /** Check (6): the slow device's cursor never stands still longer than this on its slow link. */
  slowProgressMs: number;
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
  /**
   * Run the hub as two nodes on this PostgreSQL database (a postgres:// URL of an empty database)
   * instead of one process on a SQLite file: each device's link is a load balancer over both
   * nodes, and hub_kill kills one node at a time.
   */
  postgresUrl?: string | null;
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
    /** Agents that exited without the harness asking (each one is also a violation). */
    agentExits: number;
    /** Events pushed by the backlog loader (slow_backlog), not by any device: hubEvents = eventsWritten + loadedEvents. */
    loadedEvents: number;
    conflictsRecorded: number;
    hubRebindRetries: number;
    writerOps: number;
    writerBusy: number;
    proxyConnections: number;
    quiesceMs: number;
    slow: SlowReport[];
    backlog: BacklogReport[];
    appHolds: AppHoldReport[];
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
    // Room for the 30 s slow_backlog (no hub kill inside it) and the hub kills around it.
    faultMs: 40_000,
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
    // Bounded for `npm test`, but the guaranteed (longest) lock outlasts the 5 s busy timeout that
    // SQLite connections here (agent and app) use by default.
    appLockMs: [5_000, 12_000],
    appReadHoldMs: [5_000, 10_000],
    // 4,000 instead of the soak's 20,000: at 3 KB/s the link delivers ~65 KB in the 22 s stretch
    // either way (either backlog is MBs), and every device applies the backlog and the final checks
    // replay it: 4,000 keeps `npm test` bounded on 2 cores. The stretch outlasts the bound of check 6.
    backlogEvents: 4_000,
    backlogRate: 3_000,
    backlogSlowMs: [22_000, 22_000],
    backlogLoadMs: 6_000,
    slowProgressMs: 20_000,
    guaranteed: { hub_kill: 2, agent_kill: 3, offline: 1, slow: 1, link_stall: 1, link_cut: 1, link_reset: 1, app_lock: 2, app_read_hold: 1, slow_backlog: 1 },
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
    appLockMs: [5_000, 30_000],
    appReadHoldMs: [8_000, 15_000],
    backlogEvents: 20_000,
    backlogRate: 3_000,
    // At most half the run, so a short soak still has room for its hub kills (none falls inside a stretch).
    backlogSlowMs: [Math.min(120_000, Math.round(faultMs * 0.4)), Math.min(300_000, Math.round(faultMs * 0.5))],
    backlogLoadMs: 30_000,
    slowProgressMs: 20_000,
    guaranteed: {
      hub_kill: 3 * perTen,
      agent_kill: 5 * perTen,
      offline: perTen,
      slow: perTen,
      link_stall: 2 * perTen,
      link_cut: 2 * perTen,
      link_reset: perTen,
      app_lock: 2 * perTen,
      app_read_hold: perTen,
      slow_backlog: perTen,
    },
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

/** What a slow_backlog device did: offline while the backlog was loaded, then behind a trickle. */
export interface BacklogReport {
  device: number;
  /** Events the loader pushed (and the hub acked), and how long that took. */
  events: number;
  loadMs: number;
  /** Loader connections beyond the first (hub restarts meanwhile). */
  loadReconnects: number;
  rate: number;
  /** The slow stretch (from the link coming back to full speed again). */
  ms: number;
  cursorAtCut: number;
  /** When the link came back (slow), and when the stretch ended. */
  cursorBefore: number;
  cursorAfter: number;
  headBefore: number;
  headAfter: number;
  /** Times the cursor moved (sampled every 500 ms), times its acked changes moved, and its longest standstill of both (check 6). */
  advances: number;
  ackMoves: number;
  longestStillMs: number;
  boundMs: number;
  bytesDelivered: number;
  newConnections: number;
}

/** An app_lock / app_read_hold as the writer reported it. */
export interface AppHoldReport {
  device: number;
  kind: 'app_lock' | 'app_read_hold';
  requestedMs: number;
  /** Time to take the lock (the agent may hold it for a moment). */
  waitedMs: number;
  /** How long it was held (0: never taken). */
  heldMs: number;
  /** App changes committed with it (inside the lock's transaction, or beside the read hold). */
  changes: number;
  committed: boolean;
}

export interface PlannedFault {
  at: number;
  kind: Exclude<FaultKind, 'clock_skew'>;
  device: number;
  /** The whole fault (slow_backlog: load allowance + slow stretch). */
  durationMs: number;
  rate?: number;
  /** offline only: the link comes back slow for a while. */
  thenSlow?: { ms: number; rate: number };
  /** slow_backlog only. */
  backlog?: { events: number; rate: number; loadMs: number; slowMs: number };
}

/**
 * The seeded fault schedule: guaranteed faults at random times, then random ones. No two link faults
 * overlap on one device, nor two app faults; a slow_backlog device gets no app fault and no agent kill
 * meanwhile, and no hub kill falls into a slow_backlog.
 */
export function planFaults(cfg: ChaosConfig, rnd: () => number): PlannedFault[] {
  const between = (r: [number, number]) => Math.round(r[0] + rnd() * (r[1] - r[0]));
  const plan: PlannedFault[] = [];
  type Spans = Array<[number, number]>;
  const perDevice = (): Spans[] => Array.from({ length: cfg.devices }, () => []);
  const linkBusy = perDevice();
  const appBusy = perDevice();
  const agentBusy = perDevice();
  const hubBusy: Spans = [];
  const end = cfg.faultMs;
  const overlaps = (spans: Spans, a: number, b: number) => spans.some(([x, y]) => a < y + 500 && x < b + 500);
  const durationOf = (kind: PlannedFault['kind'], longest: boolean): number => {
    switch (kind) {
      case 'hub_kill':
        return between(cfg.hubDownMs);
      case 'agent_kill':
        return between(cfg.agentDownMs);
      case 'link_cut':
        return between(cfg.cutMs);
      case 'link_stall':
        // Guaranteed stalls last the longest: long enough to need dead-link detection (check 5).
        return longest ? cfg.stallMs[1] : between(cfg.stallMs);
      case 'link_reset':
        return 0;
      case 'offline':
        return between(cfg.offlineMs);
      case 'slow':
        return between(cfg.slowMs);
      case 'app_lock':
        // The first guaranteed lock is the longest: past the 5 s busy timeout of a default connection.
        return longest ? cfg.appLockMs[1] : between(cfg.appLockMs);
      case 'app_read_hold':
        return between(cfg.appReadHoldMs);
      case 'slow_backlog':
        return cfg.backlogLoadMs + between(cfg.backlogSlowMs);
      case 'pg_conn_kill':
        return 0;
    }
  };
  /** The first device from `device` on that is free in every one of `busy` over [a, b]. */
  const freeDevice = (device: number, a: number, b: number, busy: Spans[][]): number | null => {
    for (let k = 0; k < cfg.devices; k++) {
      const d = (device + k) % cfg.devices;
      if (busy.every((spans) => !overlaps(spans[d]!, a, b))) return d;
    }
    return null;
  };
  const tryPlace = (kind: PlannedFault['kind'], at: number, longest = false): boolean => {
    const durationMs = Math.min(durationOf(kind, longest), Math.max(0, end - at));
    const device = Math.floor(rnd() * cfg.devices);
    const rate = kind === 'slow' ? between(cfg.slowRate) : undefined;
    const thenSlow = kind === 'offline' && rnd() < 0.5 ? { ms: between(cfg.slowMs), rate: between(cfg.slowRate) } : undefined;
    const busyMs = durationMs + (thenSlow?.ms ?? 0);
    const b = at + busyMs;
    if (kind === 'pg_conn_kill') {
      if (!cfg.postgresUrl) return false;
      plan.push({ at, kind, device, durationMs });
      return true;
    }
    if (kind === 'hub_kill') {
      if (overlaps(hubBusy, at, at + durationMs)) return false;
      hubBusy.push([at, at + durationMs + 2_000]);
      plan.push({ at, kind, device, durationMs });
      return true;
    }
    if (kind === 'agent_kill') {
      const d = freeDevice(device, at, b, [agentBusy]);
      if (d === null) return false;
      plan.push({ at, kind, device: d, durationMs });
      return true;
    }
    if (APP_FAULTS.has(kind)) {
      if (durationMs < 1_000) return false;
      const d = freeDevice(device, at, b, [appBusy]);
      if (d === null) return false;
      appBusy[d]!.push([at, b]);
      plan.push({ at, kind, device: d, durationMs });
      return true;
    }
    if (kind === 'slow_backlog') {
      const slowMs = durationMs - cfg.backlogLoadMs;
      // Too close to the end of the phase to trickle for a meaningful stretch.
      if (slowMs < Math.min(cfg.backlogSlowMs[0], 10_000)) return false;
      // No hub kill meanwhile: the loader pushes straight to the hub, and check 6 measures the slow
      // link alone (a hub restart every few seconds would stop any big frame; slow and offline cover that).
      if (overlaps(hubBusy, at, b)) return false;
      const d = freeDevice(device, at, b, [linkBusy, appBusy, agentBusy]);
      if (d === null) return false;
      for (const spans of [linkBusy, appBusy, agentBusy]) spans[d]!.push([at, b]);
      hubBusy.push([at, b]);
      plan.push({ at, kind, device: d, durationMs, backlog: { events: cfg.backlogEvents, rate: cfg.backlogRate, loadMs: cfg.backlogLoadMs, slowMs } });
      return true;
    }
    // Link faults: one at a time per device (a cut inside a stall would heal the stall early).
    const d = freeDevice(device, at, b, [linkBusy]);
    if (d === null) return false;
    linkBusy[d]!.push([at, b]);
    plan.push({ at, kind, device: d, durationMs, rate, thenSlow });
    return true;
  };
  // Long faults first, early enough to run their course inside the phase.
  const order: Array<PlannedFault['kind']> = ['slow_backlog', 'offline', 'slow', 'app_lock', 'app_read_hold', 'hub_kill', 'pg_conn_kill', 'link_stall', 'link_cut', 'agent_kill', 'link_reset'];
  const longestOf: Partial<Record<PlannedFault['kind'], number>> = {
    slow_backlog: cfg.backlogLoadMs + cfg.backlogSlowMs[1],
    offline: cfg.offlineMs[1],
    slow: cfg.slowMs[1],
    link_stall: cfg.stallMs[1],
    app_lock: cfg.appLockMs[1],
    app_read_hold: cfg.appReadHoldMs[1],
  };
  for (const kind of order) {
    const n = cfg.guaranteed[kind] ?? 0;
    for (let i = 0; i < n; i++) {
      const longest = kind === 'link_stall' || (kind === 'app_lock' && i === 0);
      for (let attempt = 0; attempt < 20; attempt++) {
        const latest = Math.max(1_000, end - (longestOf[kind] ?? 0) - 1_000);
        const at = Math.round(1_000 + rnd() * Math.max(0, latest - 1_000));
        if (tryPlace(kind, at, longest)) break;
      }
    }
  }
  // Random faults on top, with exponentially distributed gaps (slow_backlog only as guaranteed: it is heavy).
  const weights: Array<[PlannedFault['kind'], number]> = [
    ['agent_kill', 4],
    ['link_cut', 3],
    ['link_stall', 3],
    ['link_reset', 3],
    ['hub_kill', 1.5],
    ['slow', 0.5],
    ['app_lock', 1],
    ['app_read_hold', 0.5],
    // Last, and weightless without PostgreSQL: a SQLite run's plan for a seed stays what it was.
    ['pg_conn_kill', cfg.postgresUrl ? 1 : 0],
  ];
  const total = weights.reduce((s, [, w]) => s + w, 0);
  for (let t = 1_000 - Math.log(1 - rnd()) * cfg.meanFaultGapMs; t < end - 500; t += -Math.log(1 - rnd()) * cfg.meanFaultGapMs) {
    let r = rnd() * total;
    const kind = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? 'link_reset';
    tryPlace(kind, Math.round(t));
  }
  return plan.sort((a, b) => a.at - b.at);
}

/**
 * The backlog a slow_backlog loader pushes: `n` valid changes on the devices' own tables, so every
 * device applies them and the replay check covers them: mostly new issues, some updates of those
 * (full previous and new rows, as an app logs them), some comments on them. Ids start with `tag`.
 * About 400 bytes per event on the wire.
 */
export function backlogEvents(tag: string, sessionId: string, n: number, rnd: () => number): PushEvent[] {
  const statuses = ['open', 'in_progress', 'blocked', 'done'];
  const issues: Array<Record<string, unknown>> = [];
  const out: PushEvent[] = [];
  const base = Date.now();
  for (let i = 1; i <= n; i++) {
    const ts = new Date(base + i).toISOString();
    const r = rnd();
    let e: Pick<PushEvent, 'actionType' | 'entityType' | 'entityId' | 'payload'>;
    if (issues.length === 0 || r < 0.7) {
      const row = { id: `${tag}-i${i}`, title: `imported ${i}`, status: statuses[Math.floor(rnd() * statuses.length)], priority: Math.floor(rnd() * 5), labels: ['import'], deleted_at: null, updated_at: ts };
      issues.push(row);
      e = { actionType: 'create', entityType: 'issues', entityId: row.id, payload: { schemaVersion: 1, newData: row, previousData: null } };
    } else if (r < 0.85) {
      const at = Math.floor(rnd() * issues.length);
      const prev = issues[at]!;
      const next: Record<string, unknown> = { ...prev, status: statuses[Math.floor(rnd() * statuses.length)], priority: Math.floor(rnd() * 5), updated_at: ts };
      issues[at] = next;
      e = { actionType: 'update', entityType: 'issues', entityId: String(next.id), payload: { schemaVersion: 1, newData: next, previousData: prev } };
    } else {
      const issue = issues[Math.floor(rnd() * issues.length)]!;
      const row = { id: `${tag}-c${i}`, issue_id: issue.id, body: `imported comment ${i}`, created_at: ts };
      e = { actionType: 'create', entityType: 'comments', entityId: row.id, payload: { schemaVersion: 1, newData: row, previousData: null } };
    }
    out.push({ clientActionId: i, sessionId, clientTimestamp: ts, ...e });
  }
  return out;
}

/**
 * Check (6)'s clock: how long a device received nothing useful (its cursor and its count of acked
 * changes both stood still) while it had something to fetch over a live link. It runs from the first connection after the link came back (or from `connectGraceMs`
 * after, so an agent that never reconnects is caught too), pauses from a hub restart to the next
 * connection (the plan keeps hub kills out of a slow_backlog; this is the guard if one happens
 * anyway), and restarts at every move of the cursor and whenever the device has caught up.
 */
export class ProgressWatch {
  advances = 0;
  longestStillMs = 0;
  /** Where the longest standstill began. */
  stillFrom: number | null = null;
  /** [time, cursor] at the start and at every move. */
  readonly changes: Array<[number, number]> = [];
  /** Times the count of acked changes moved (acks filled the trickle instead of events). */
  ackMoves = 0;
  private since: number | null = null;
  private lostAt: number;
  private cursor: number;
  private acked = -1;

  constructor(
    readonly boundMs: number,
    readonly connectGraceMs: number,
    now: number,
    cursor: number,
  ) {
    this.lostAt = now;
    this.cursor = cursor;
    this.changes.push([now, cursor]);
  }

  /** Every link dropped (hub restart): the clock waits for the next connection. */
  linkLost(now: number): void {
    this.close(now);
    this.since = null;
    this.lostAt = now;
  }

  connected(now: number): void {
    if (this.since === null) this.since = now;
  }

  /** `acked`: how many of the device's own changes the hub has acked so far (-1: unknown). */
  sample(now: number, cursor: number, caughtUp: boolean, acked = -1): void {
    this.graceOver(now);
    const ackMoved = acked > this.acked;
    if (ackMoved) {
      // The first reading is the baseline, not a move.
      if (this.acked >= 0) this.ackMoves++;
      this.acked = acked;
    }
    if (cursor > this.cursor) {
      this.advances++;
      this.cursor = cursor;
      this.changes.push([now, cursor]);
      this.restart(now);
    } else if (caughtUp || (ackMoved && this.ackMoves > 0)) {
      this.restart(now);
    }
  }

  finish(now: number): this {
    this.graceOver(now);
    this.close(now);
    return this;
  }

  private graceOver(now: number): void {
    if (this.since === null && now - this.lostAt > this.connectGraceMs) this.since = this.lostAt + this.connectGraceMs;
  }

  private restart(now: number): void {
    if (this.since === null) return;
    this.close(now);
    this.since = now;
  }

  private close(now: number): void {
    if (this.since !== null && now - this.since > this.longestStillMs) {
      this.longestStillMs = now - this.since;
      this.stillFrom = this.since;
    }
  }
}

interface AgentProc {
  proc: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
  /** Set before the harness kills it on purpose. */
  expected: boolean;
  startedAt: number;
}

/** What one backlog loader pushed: clientActionIds 1..sent under (deviceId, sessionId). */
interface Load {
  deviceId: string;
  sessionId: string;
  sent: number;
  /** clientActionId -> the seq the hub acked it with (or answered a duplicate with). */
  acked: Map<number, number>;
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

/** The last `n` non-empty lines of a child's output (stack frames left out), each cut to 400 characters. */
export function lastLines(text: string, n = 12): string[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^\s+at /.test(l))
    .slice(-n)
    .map((l) => (l.length > 400 ? `${l.slice(0, 400)}…` : l));
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
  /** Where the hub's store is: a SQLite file, or a PostgreSQL database shared by the nodes. */
  readonly hubStore: string;
  /** Hub processes: one on SQLite, two nodes on PostgreSQL (null while killed). */
  readonly hubs: Array<SpawnedHub | null>;
  /** Each node's port, fixed after its first start (restarts reuse it; the proxies point at them). */
  readonly hubPorts: number[];
  private readonly hubExpectedExit: boolean[];
  private hubKills = 0;
  readonly rnd: () => number;
  readonly violations: Violation[] = [];
  readonly faults: Record<string, number> = {};
  hubRebindRetries = 0;
  token = '';
  proxies: FaultProxy[] = [];
  agents: Array<AgentProc | null> = [];
  writers: Array<WriterProc | null> = [];
  skews: number[] = [];
  readonly slowReports: SlowReport[] = [];
  readonly backlogReports: BacklogReport[] = [];
  readonly appHoldReports: AppHoldReport[] = [];
  /** What each backlog loader pushed (check 1 accounts for these events instead of a device's). */
  readonly loads: Load[] = [];
  /** Agents that exited without being asked. */
  agentExits = 0;
  /** Restart an agent that exited on its own (off once the final stop begins). */
  supervising = true;
  /** Successful hub starts (check 6 pauses its clock across a restart). */
  hubStarts = 0;
  /** Log lines of the hub (warn and up) and the agents (info and up), counted by kind. */
  readonly logTally: Record<string, number> = {};
  /** Tasks of faults in progress (each heals itself, at the latest when `phase` aborts). */
  private readonly running = new Set<Promise<void>>();
  private readonly t0 = Date.now();
  private restartingHub: Promise<void> | null = null;
  stopped = false;

  constructor(readonly cfg: ChaosConfig) {
    this.rnd = seededRandom(cfg.seed);
    this.hubStore = cfg.postgresUrl ?? join(this.dir, 'hub.db');
    const nodes = cfg.postgresUrl ? 2 : 1;
    this.hubs = Array.from({ length: nodes }, () => null);
    this.hubPorts = Array.from({ length: nodes }, () => 0);
    this.hubExpectedExit = Array.from({ length: nodes }, () => false);
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
    return this.readDevice(i, 'SELECT last_pulled_server_seq AS n FROM sync_state LIMIT 1');
  }

  /** How many of device i's own changes the hub has acked (-1 when unreadable). */
  ackedOf(i: number): number {
    return this.readDevice(i, 'SELECT count(*) AS n FROM action_log WHERE synced_at IS NOT NULL');
  }

  /** One number from device i's database, read beside its agent (-1 when unreadable). */
  private readDevice(i: number, sql: string): number {
    try {
      const db = new Database(this.dbPath(i), { readonly: true, fileMustExist: true });
      try {
        db.pragma('busy_timeout = 2000');
        return (db.prepare(sql).get() as { n: number }).n;
      } finally {
        db.close();
      }
    } catch {
      return -1;
    }
  }

  /** The project's committed head, read from the hub's store (-1 when unreadable). */
  async hubHead(): Promise<number> {
    if (this.cfg.postgresUrl) {
      const client = new pg.Client({ connectionString: this.cfg.postgresUrl });
      client.on('error', () => {});
      try {
        await client.connect();
        const r = await client.query<{ h: string }>('SELECT head_seq AS h FROM projects WHERE name = $1', [PROJECT]);
        return r.rows.length ? Number(r.rows[0]!.h) : -1;
      } catch {
        return -1;
      } finally {
        await client.end().catch(() => {});
      }
    }
    try {
      const db = new Database(this.hubStore, { readonly: true, fileMustExist: true });
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

  /** The URL of a hub node that is up (the first one while none is). */
  liveHubUrl(): string {
    const i = Math.max(0, this.hubs.findIndex((h) => h !== null));
    return `ws://127.0.0.1:${this.hubPorts[i]}`;
  }

  // ---- processes -------------------------------------------------------------------------

  async startHub(node = 0): Promise<void> {
    const deadline = Date.now() + 45_000;
    for (;;) {
      try {
        const hub = await spawnHub(this.hubStore, this.hubPorts[node], { timeoutMs: 45_000 });
        track(hub.proc);
        this.hubs[node] = hub;
        this.hubPorts[node] = hub.port;
        this.hubExpectedExit[node] = false;
        this.hubStarts++;
        void hub.exited.then((e) => {
          tallyLog(this.logTally, hub.stderr(), 'hub');
          if (this.hubs[node] === hub && !this.hubExpectedExit[node] && !this.stopped) {
            this.violate({ check: 'process', message: `hub node ${node} exited on its own (${e.code ?? e.signal})`, evidence: { stderr: tail(hub.stderr()) } });
            this.hubs[node] = null;
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
        throw new Error(`hub node ${node} did not start on port ${this.hubPorts[node]}: ${message.slice(0, 500)}`);
      }
    }
  }

  /** Every node that is down, started again. */
  async startHubs(): Promise<void> {
    for (let node = 0; node < this.hubs.length; node++) if (!this.hubs[node]) await this.startHub(node);
  }

  /** kill -9 of a hub node (with two nodes, each in turn: the other one keeps serving), restarted after downMs. */
  async killHub(downMs: number, signal?: AbortSignal): Promise<void> {
    const node = this.hubKills % this.hubs.length;
    const hub = this.hubs[node];
    if (!hub || this.restartingHub) return;
    this.hubKills++;
    let release!: () => void;
    this.restartingHub = new Promise((r) => (release = r));
    try {
      this.hubExpectedExit[node] = true;
      this.hubs[node] = null;
      hub.kill('SIGKILL');
      await hub.exited;
      this.count('hub_kill');
      this.log(`hub${this.hubs.length > 1 ? ` node ${node}` : ''} killed (-9), down for ${downMs} ms`);
      await sleep(downMs, signal);
      await this.startHub(node);
      this.log(`hub${this.hubs.length > 1 ? ` node ${node}` : ''} restarted on port ${this.hubPorts[node]}`);
    } finally {
      this.restartingHub = null;
      release();
    }
  }

  /** Terminate every other connection to the hub's PostgreSQL database: in-flight commits fail, LISTEN drops. */
  async killPostgresConnections(): Promise<void> {
    const client = new pg.Client({ connectionString: this.cfg.postgresUrl! });
    client.on('error', () => {});
    try {
      await client.connect();
      const r = await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
      this.count('pg_conn_kill');
      this.log(`PostgreSQL: ${r.rowCount} hub connection(s) terminated`);
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** Stop every hub node with SIGTERM; a node that does not exit cleanly is a violation. */
  async stopHubs(): Promise<void> {
    for (let node = 0; node < this.hubs.length; node++) {
      const hub = this.hubs[node];
      if (!hub) continue;
      this.hubExpectedExit[node] = true;
      this.hubs[node] = null;
      hub.kill('SIGTERM');
      const e = await Promise.race([hub.exited, timeout(15_000)]);
      if (e === 'timeout' || e.code !== 0) {
        this.violate({ check: 'process', message: `hub node ${node} did not exit cleanly on SIGTERM (${e === 'timeout' ? e : (e.code ?? e.signal)})`, evidence: { stderr: tail(hub.stderr()) } });
        await hub.stop();
      }
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
    const agent: AgentProc = { ...child, expected: false, startedAt: Date.now() };
    this.agents[i] = agent;
    void child.exited.then((code) => {
      tallyLog(this.logTally, child.stderr(), 'agent');
      if (agent.expected || this.stopped) return;
      // Whatever the code (0 and 1 included) or signal: an agent is a daemon and must never give up by itself.
      this.agentExits++;
      const sqlite = child.stderr().match(/SQLITE_[A-Z_]+/g)?.pop();
      const how = (child.proc.signalCode ? `signal ${child.proc.signalCode}` : `code ${code}`) + (sqlite ? `, ${sqlite}` : '');
      this.violate({
        check: 'process',
        message: `agent ${i} exited on its own (${how}) ${((Date.now() - agent.startedAt) / 1000).toFixed(1)} s after it started`,
        evidence: { device: i, code, signal: child.proc.signalCode, lastStderr: lastLines(child.stderr()) },
      });
      if (this.agents[i] !== agent) return;
      this.agents[i] = null;
      // As a supervisor (systemd Restart=on-failure) would: the run goes on and the other checks still mean something.
      setTimeout(() => {
        if (this.supervising && !this.stopped && this.agents[i] === null) {
          this.log(`agent ${i} restarted after exiting on its own`);
          this.startAgent(i);
        }
      }, 1_000).unref();
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
      // The IPC channel carries app-fault commands (writer.ts: lock, read_hold, release).
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
    );
    proc.on('error', () => {});
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
    this.hubs.forEach((h, node) => {
      if (!h) return;
      this.hubExpectedExit[node] = true;
      exits.push(h.stop());
    });
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
      case 'pg_conn_kill':
        return this.spawnTask(() => this.killPostgresConnections());
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
      case 'app_lock':
      case 'app_read_hold':
        return this.spawnTask(() => this.appHold(f, phase));
      case 'slow_backlog':
        return this.spawnTask(() => this.slowBacklog(f, phase));
    }
  }

  /** Ask a device's app (its writer process) to hold the write lock or a read transaction; wait until it lets go. */
  private async appHold(f: PlannedFault, phase: AbortSignal): Promise<void> {
    const w = this.writers[f.device];
    if (!w || !w.proc.connected) return;
    const kind = f.kind as AppHoldReport['kind'];
    const cmd = kind === 'app_lock' ? 'lock' : 'read_hold';
    this.count(kind);
    let waitedMs = -1;
    type Released = { event: 'released'; kind: string; heldMs: number; changes: number; committed: boolean; reason?: string };
    let onMessage: (m: { event?: string; kind?: string; waitedMs?: number }) => void = () => {};
    const released = new Promise<Released | null>((resolve) => {
      onMessage = (m) => {
        if (m.kind !== cmd) return;
        if (m.event === 'held') {
          waitedMs = m.waitedMs ?? 0;
          this.log(`app ${f.device} ${kind === 'app_lock' ? 'holds the write lock' : 'holds a read transaction'} for ${f.durationMs} ms (waited ${waitedMs} ms to take it)`);
        } else if (m.event === 'released' || m.event === 'refused') {
          resolve(m.event === 'released' ? (m as Released) : null);
        }
      };
      w.proc.on('message', onMessage);
      void w.exited.then(() => resolve(null));
    });
    const send = (msg: object) => {
      if (w.proc.connected) w.proc.send(msg, () => {});
    };
    send({ cmd, ms: f.durationMs });
    // Healing: let go now.
    const release = () => send({ cmd: 'release' });
    phase.addEventListener('abort', release, { once: true });
    try {
      const r = await Promise.race([released, timeout(f.durationMs + 30_000)]);
      const report: AppHoldReport = {
        device: f.device,
        kind,
        requestedMs: f.durationMs,
        waitedMs,
        heldMs: r && r !== 'timeout' ? r.heldMs : 0,
        changes: r && r !== 'timeout' ? r.changes : 0,
        committed: r && r !== 'timeout' ? r.committed : false,
      };
      this.appHoldReports.push(report);
      if (r === 'timeout') {
        this.violate({ check: 'harness', message: `app ${f.device} did not end its ${kind} within ${f.durationMs + 30_000} ms`, evidence: { stderr: tail(w.stderr()) } });
        release();
      }
      this.log(`app ${f.device} ${kind} over: ${JSON.stringify(report)}${r && r !== 'timeout' && r.reason ? ` (${r.reason})` : ''}`);
    } finally {
      phase.removeEventListener('abort', release);
      w.proc.off('message', onMessage);
    }
  }

  /**
   * slow_backlog: cut the device off, push a backlog straight to the hub (a loader, as another
   * device's bulk import would), then bring the device back behind a `rate` B/s link and watch its
   * cursor (check 6) until the stretch ends.
   */
  private async slowBacklog(f: PlannedFault, phase: AbortSignal): Promise<void> {
    const { events, rate, slowMs } = f.backlog!;
    const d = f.device;
    const p = this.proxies[d]!;
    this.count('slow_backlog');
    p.cut();
    const cursorAtCut = this.cursorOf(d);
    this.log(`link ${d} cut for a backlog of ${events} events`);
    const load = await this.loadBacklog(events, phase);
    this.log(`backlog loaded: ${load.acked} events in ${load.ms} ms (seqs ${load.firstSeq}..${load.lastSeq}, ${load.reconnects} reconnects)`);
    if (phase.aborted) {
      p.heal();
      return;
    }
    // Back, on a poor link: slow first, so not a byte goes at full speed.
    p.slow(rate);
    // Counted before the heal: a connection attempt during the cut is counted too (then reset).
    let connections = p.stats.connections;
    p.heal();
    const start = { at: Date.now(), cursor: this.cursorOf(d), head: await this.hubHead(), connections, bytes: p.stats.bytesDown };
    const watch = new ProgressWatch(this.cfg.slowProgressMs, (this.cfg.agentTuning?.backoffCapMs ?? 30_000) + 5_000, start.at, start.cursor);
    let hubStarts = this.hubStarts;
    const until = start.at + slowMs;
    while (!phase.aborted && Date.now() < until) {
      await sleep(Math.min(500, until - Date.now()), phase);
      const now = Date.now();
      // A hub restart (a planned hub_kill) drops every link: wait for the next connection again.
      if (this.hubStarts !== hubStarts) {
        hubStarts = this.hubStarts;
        watch.linkLost(now);
        connections = p.stats.connections;
      }
      if (p.stats.connections > connections) {
        connections = p.stats.connections;
        watch.connected(now);
      }
      const cursor = this.cursorOf(d);
      if (cursor >= 0) watch.sample(now, cursor, cursor >= (await this.hubHead()), this.ackedOf(d));
    }
    const end = { at: Date.now(), cursor: this.cursorOf(d), head: await this.hubHead(), connections: p.stats.connections, bytes: p.stats.bytesDown };
    p.slow(null);
    const w = watch.finish(end.at);
    const report: BacklogReport = {
      device: d,
      events: load.acked,
      loadMs: load.ms,
      loadReconnects: load.reconnects,
      rate,
      ms: end.at - start.at,
      cursorAtCut,
      cursorBefore: start.cursor,
      cursorAfter: end.cursor,
      headBefore: start.head,
      headAfter: end.head,
      advances: w.advances,
      ackMoves: w.ackMoves,
      longestStillMs: w.longestStillMs,
      boundMs: this.cfg.slowProgressMs,
      bytesDelivered: end.bytes - start.bytes,
      newConnections: end.connections - start.connections,
    };
    this.backlogReports.push(report);
    this.log(`link ${d} back to full speed after the backlog stretch: ${JSON.stringify(report)}`);
    if (w.longestStillMs > this.cfg.slowProgressMs) {
      this.violate({
        check: '6-slow-progress',
        message:
          `device ${d} behind a ${rate} B/s link with a backlog: neither its cursor nor its acked changes moved for ${w.longestStillMs} ms (bound ${this.cfg.slowProgressMs} ms); ` +
          `the cursor moved ${w.advances} time(s) (acks ${w.ackMoves}), ${start.cursor} -> ${end.cursor} of head ${end.head}, in ${report.ms} ms`,
        evidence: {
          ...report,
          stillFrom: w.stillFrom === null ? null : `+${((w.stillFrom - start.at) / 1000).toFixed(1)} s into the stretch`,
          cursorSamples: w.changes.slice(0, 20).map(([t, c]) => `+${((t - start.at) / 1000).toFixed(1)}s: ${c}`),
          // Why its links went down meanwhile (slow_consumer? dead link?), from the agent's own log.
          agentLinkLog: lastLines(
            (this.agents[d]?.stderr() ?? '')
              .split('\n')
              .filter((l) => /link down|closing|error|slow/i.test(l))
              .join('\n'),
            8,
          ),
        },
      });
    }
  }

  /**
   * Push `n` events to the hub directly (not through any proxy) as device `loader-K`, in batches of
   * up to MAX_BATCH_EVENTS with a few in flight, until every one is acked; survives a hub restart by
   * re-pushing what was not acked (the hub dedups). Records what it sent for check (1).
   */
  private async loadBacklog(n: number, phase: AbortSignal): Promise<{ acked: number; ms: number; firstSeq: number; lastSeq: number; reconnects: number }> {
    const k = this.loads.length;
    const load: Load = { deviceId: `loader-${k}`, sessionId: `ses-loader-${k}`, sent: n, acked: new Map() };
    this.loads.push(load);
    const events = backlogEvents(`bl${k}`, load.sessionId, n, seededRandom((this.cfg.seed ^ (0x5bd1e995 * (k + 1))) >>> 0));
    const started = Date.now();
    const deadline = started + Math.max(60_000, this.cfg.backlogLoadMs * 4);
    const perBatch = Math.min(500, MAX_BATCH_EVENTS);
    const inFlight = 4;
    let batch = 0;
    let connects = 0;
    while (load.acked.size < n && !phase.aborted && Date.now() < deadline) {
      if (this.restartingHub) await this.restartingHub;
      let c: SyncClient | null = null;
      try {
        connects++;
        const head = Math.max(0, await this.hubHead());
        // afterSeq = head: the loader needs no stream, only acks (its own events still come back: seqs only).
        c = await SyncClient.open(this.liveHubUrl(), PROJECT, this.token, load.deviceId, head, { keepEvents: false });
        const todo = events.filter((e) => !load.acked.has(e.clientActionId));
        for (let i = 0; i < todo.length && !phase.aborted; i += perBatch * inFlight) {
          const client = c;
          const acks = await Promise.all(
            Array.from({ length: inFlight }, (_, j) => todo.slice(i + j * perBatch, i + (j + 1) * perBatch))
              .filter((b) => b.length > 0)
              .map((b) => client.push(++batch, b, 30_000)),
          );
          for (const ack of acks) {
            for (const a of ack.acks) load.acked.set(a.clientActionId, a.serverSeq);
            for (const r of ack.rejected) {
              if (r.reason === RejectReason.Duplicate && r.serverSeq !== undefined) load.acked.set(r.clientActionId, r.serverSeq);
              else throw Object.assign(new Error(`the hub rejected backlog event ${r.clientActionId}: ${r.reason}`), { permanent: true });
            }
          }
        }
      } catch (err) {
        if ((err as { permanent?: boolean }).permanent) {
          this.violate({ check: 'harness', message: (err as Error).message });
          break;
        }
        await sleep(250, phase);
      } finally {
        c?.terminate();
      }
    }
    if (load.acked.size < n && !phase.aborted) {
      this.violate({ check: 'harness', message: `the backlog loader got ${load.acked.size} of ${n} events acked within ${deadline - started} ms` });
    }
    const seqs = [...load.acked.values()];
    return {
      acked: load.acked.size,
      ms: Date.now() - started,
      firstSeq: seqs.reduce((a, b) => Math.min(a, b), seqs[0] ?? 0),
      lastSeq: seqs.reduce((a, b) => Math.max(a, b), 0),
      reconnects: Math.max(0, connects - 1),
    };
  }

  /** One device's hub -> agent bytes at `rate` for `ms`; records how far the device got meanwhile. */
  private async slowPeriod(device: number, rate: number, ms: number, phase: AbortSignal): Promise<void> {
    const p = this.proxies[device]!;
    this.count('slow');
    const before = { cursor: this.cursorOf(device), head: await this.hubHead(), connections: p.stats.connections, bytes: p.stats.bytesDown, at: Date.now() };
    p.slow(rate);
    this.log(`link ${device} slow (${rate} B/s) for ${ms} ms`);
    await sleep(ms, phase);
    const after = { cursor: this.cursorOf(device), head: await this.hubHead(), connections: p.stats.connections, bytes: p.stats.bytesDown, at: Date.now() };
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
    await this.startHubs();
    for (let i = 0; i < this.cfg.devices; i++) if (!this.agents[i]) this.startAgent(i);
    this.log('all faults healed');
  }

  // ---- quiescence and checks ---------------------------------------------------------------

  /** Wait until every device has pushed everything and applied through the head, stable over two polls. */
  async quiesce(devices: Device[]): Promise<{ head: number; ms: number }> {
    const started = Date.now();
    {
      let quietSince = 0;
      let quietHead = -1;
      for (;;) {
        const head = await this.hubHead();
        const ok = head >= 0 && devices.every((d) => {
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
    // The backlog loaders' events: each acked one exactly once, at the seq it was acked with; any
    // other event of theirs is one they sent (pushed, not acked before a hub restart, for instance).
    const loaderMissing: unknown[] = [];
    const loaderRepeated: unknown[] = [];
    const loaderWrongSeq: unknown[] = [];
    for (const load of this.loads) {
      for (let id = 1; id <= load.sent; id++) {
        const k = dedupKey(load.deviceId, load.sessionId, id);
        matched.add(k);
        const seq = load.acked.get(id);
        if (seq === undefined) continue;
        const events = byKey.get(k) ?? [];
        const what = { loader: load.deviceId, clientActionId: id, ackedSeq: seq };
        if (events.length === 0) loaderMissing.push(what);
        else if (events.length > 1) loaderRepeated.push({ ...what, seqs: events.map((e) => e.serverSeq) });
        else if (events[0]!.serverSeq !== seq) loaderWrongSeq.push({ ...what, logSeq: events[0]!.serverSeq });
      }
    }
    if (loaderMissing.length) this.violate({ check: '1-exactly-once', message: `${loaderMissing.length} acked backlog event(s) are not in the hub log`, evidence: loaderMissing.slice(0, 5) });
    if (loaderRepeated.length) this.violate({ check: '1-exactly-once', message: `${loaderRepeated.length} backlog event(s) are in the hub log more than once`, evidence: loaderRepeated.slice(0, 5) });
    if (loaderWrongSeq.length) this.violate({ check: '1-exactly-once', message: `${loaderWrongSeq.length} backlog event(s) sit at a seq other than their ack's`, evidence: loaderWrongSeq.slice(0, 5) });
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
      ['hub', 'project', 'create', PROJECT, ...storeFlags(run.hubStore)],
      ['hub', 'token', 'create', '--project', PROJECT, ...storeFlags(run.hubStore)],
    ]) {
      const r = await runCli(args, { timeoutMs: 20_000 });
      if (r.code !== 0) throw new Error(`synchub ${args.join(' ')} failed: ${r.stderr}`);
      if (args[1] === 'token') run.token = r.stdout.trim();
    }
    await run.startHubs();
    run.log(run.hubs.length > 1 ? `${run.hubs.length} hub nodes on PostgreSQL, ports ${run.hubPorts.join(', ')}` : `hub on port ${run.hubPorts[0]}`);

    // Clock skew: devices spread over [-skew, +skew], the first two at the extremes.
    for (let i = 0; i < cfg.devices; i++) {
      const skew = i === 0 ? cfg.skewMs : i === 1 ? -cfg.skewMs : Math.round((run.rnd() * 2 - 1) * cfg.skewMs);
      run.skews.push(skew);
      if (skew !== 0) run.count('clock_skew');
    }
    for (let i = 0; i < cfg.devices; i++) {
      makeAppDb(run.dbPath(i));
      const proxy = new FaultProxy(run.hubPorts, `link-${i}`);
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
    run.supervising = false;
    await Promise.all(devices.map((_, i) => run.stopAgent(i)));
    await run.stopHubs();
    const store = await openStoreAt(run.hubStore);
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
      agentExits: run.agentExits,
      loadedEvents: run.loads.reduce((n, l) => n + l.acked.size, 0),
      conflictsRecorded: conflicts,
      hubRebindRetries: run.hubRebindRetries,
      writerOps: writerOps.ops,
      writerBusy: writerOps.busy,
      proxyConnections: run.proxies.reduce((n, p) => n + p.stats.connections, 0),
      quiesceMs,
      slow: run.slowReports,
      backlog: run.backlogReports,
      appHolds: run.appHoldReports,
      logs: Object.fromEntries(Object.entries(run.logTally).sort((a, b) => b[1] - a[1])),
      dir: keep ? run.dir : null,
    },
  };
}
