// The agent: wires the app DB (outbox, apply engine, cursor) to the hub link.
// Data flows one way: outbox -> pusher -> link -> hub -> link -> apply.
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { ErrorCode, RejectReason, SyncError } from '../shared/errors.ts';
import { MAX_FRAME_BYTES } from '../shared/limits.ts';
import { silentLogger, type Logger } from '../shared/log.ts';
import type { AckFrame, EventsFrame, SnapshotFrame } from '../shared/protocol.ts';
import { openAppDb, ensureSyncSchema, bindProject, getSyncState, setConnectionStatus, syncedTables, useWal, ConnectionStatus } from './app-db.ts';
import { HEARTBEAT_MS } from './status.ts';
import { ApplyEngine, StreamGapError, type FrameResult } from './apply.ts';
import { backfill } from './backfill.ts';
import { dbErrorText, isFatalDbError, isTransientDbError } from './db-errors.ts';
import { Link, LinkState, syncUrl } from './link.ts';
import { writeLiveState } from './live-status.ts';
import { markAcked, quarantineOutbound, quarantineRows, scanPending, countPending, lastOutboxRowid, pendingThrough } from './outbox.ts';
import { LogDivergedError, maxOwnAckedSeq, resetForResync, ResyncReason } from './divergence.ts';
import { Pusher } from './pusher.ts';
import { DataVersionWatcher } from './watch.ts';
import { AGENT_BUSY_TIMEOUT_MS, LOCK_REPORT_AFTER_MS, WriteQueue, WriteQueueStopped, type LockWait } from './write-queue.ts';

/**
 * Received frames waiting for the write queue (the app holds the lock) are kept up to this many bytes;
 * past it the agent stops reading its socket until half of it is applied. Reading on while waiting keeps
 * the link's liveness visible: a link that dies during a lock is noticed, not hidden behind a pause.
 */
const INBOX_MAX_BYTES = 16 * 1024 * 1024;

/** Payload bytes per push: a quarter of the hub's frame limit leaves room for the envelope and escaping. */
const PUSH_PAYLOAD_BUDGET = MAX_FRAME_BYTES / 4;

export const AgentOptionsSchema = z.object({
  /** Path of the app's SQLite database. */
  db: z.string().min(1),
  /** Hub base URL (ws://host:port) or full sync URL. */
  hub: z.string().min(1),
  project: z.string().min(1),
  token: z.string().min(1),
  /** Tables to sync; default: every table with an `id` primary key. */
  tables: z.array(z.string().min(1)).optional(),
  pushBatchSize: z.number().int().positive().max(1000).default(500),
  maxPushesInFlight: z.number().int().positive().default(4),
  /** How often PRAGMA data_version is polled for the app's own commits (a write to the WAL is also watched, and checked at once). */
  watchIntervalMs: z.number().int().positive().default(5),
  backoffBaseMs: z.number().int().positive().default(250),
  backoffCapMs: z.number().int().positive().default(30_000),
  pingIntervalMs: z.number().int().positive().optional(),
  deadAfterMs: z.number().int().positive().optional(),
  /** A write lock held by the app longer than this shows in status and the log. */
  lockReportAfterMs: z.number().int().positive().default(LOCK_REPORT_AFTER_MS),
  /** How often the live status file is refreshed (status tells a running agent by it). */
  heartbeatMs: z.number().int().positive().default(HEARTBEAT_MS),
  /**
   * With no cursor, start from a snapshot of the hub's state instead of replaying the whole log
   * (`--no-snapshot` sets false). A hub whose log was compacted past the cursor needs one either way.
   */
  snapshot: z.boolean().default(true),
});
export type AgentOptions = z.input<typeof AgentOptionsSchema>;

export interface AgentStatus {
  state: LinkState;
  cursor: number;
  headSeq: number | null;
  pending: number;
}

export interface AgentEvents {
  applied: [FrameResult];
  acked: [{ acks: number; duplicates: number; rejected: number }];
  conflict: [FrameResult['conflicts']];
  status: [AgentStatus];
  /** A failure the agent recovers from by reconnecting (logged too). */
  problem: [{ code: string; message: string }];
  /** The app has held the write lock past the report threshold (a LockWait), or let go (null). */
  lockWait: [LockWait | null];
  /** Something only a person can fix (the database file is gone or damaged): the agent has stopped. */
  fatal: [SyncError];
  /** Snapshot progress: pages applied so far, and done once the cursor stands at its seq. */
  bootstrap: [{ throughSeq: number; rows: number; done: boolean }];
  /** The hub's log is not the one this device synced (or was compacted past it): starting over, re-pushing `reset` changes. */
  resync: [{ reason: ResyncReason; reset: number }];
}

/** A snapshot being received on the current connection (see onSnapshot). */
interface Bootstrap {
  throughSeq: number;
  startedAt: number;
  rows: number;
  pages: number;
  lastReportAt: number;
  /** Outbox rows up to here were pending when it began: their acks must be in before it finishes. */
  verifyThrough: number;
  /** The last page, once received: finishing waits for the acks above. */
  last: SnapshotFrame | null;
  /** Events frames after the snapshot, held until it finishes (they apply on top of it). */
  held: { frame: EventsFrame; bytes: number }[];
  finishing: boolean;
  /** Its first page is queued (that page empties sync_snapshot_ids). */
  started: boolean;
  /** applyEpoch when it began: a failed page (or a resync) bumps it, and then this bootstrap never finishes. */
  epoch: number;
}

/** Bootstrap progress is logged at most this often. */
const PROGRESS_EVERY_MS = 2_000;
/** How long a stopping agent waits for answers to the pushes it has in flight (see Pusher.drain). */
const STOP_DRAIN_MS = 2_000;

export class Agent extends EventEmitter<AgentEvents> {
  private readonly o: z.infer<typeof AgentOptionsSchema>;
  private readonly log: Logger;
  private db: Database.Database | null = null;
  private writes!: WriteQueue;
  private engine!: ApplyEngine;
  private link!: Link;
  private pusher!: Pusher;
  private watcher!: DataVersionWatcher;
  private tables: string[] = [];
  private sessionId = '';
  deviceId = '';
  /** Last seq applied: kept in memory so that a locked database never stops us from reading it. */
  private cursor = 0;
  private headSeq: number | null = null;
  /** Bumped when a frame fails, the link drops or a resync starts: frames queued before belong to a stream being replaced. */
  private applyEpoch = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;
  private stopping: Promise<void> | null = null;
  private lastPending = 0;
  /** The connection state last recorded (the live file repeats it with every heartbeat). */
  private liveStatus: ConnectionStatus = ConnectionStatus.Disconnected;
  /** Bytes of received frames not yet applied (see INBOX_MAX_BYTES). */
  private inboxBytes = 0;
  /** The hub's log digest through the cursor, sent as hello.afterDigest. */
  private cursorDigest: string | null = null;
  private adoptedRowid = 0;
  /** The hub said cursor_too_old: the next hello asks for a snapshot whatever the cursor. */
  private forceBootstrap = false;
  private bootstrap: Bootstrap | null = null;
  /** A re-bootstrap is being prepared (resetForResync): the hub's repeated refusals meanwhile are expected. */
  private resyncing = false;

  constructor(options: AgentOptions, log: Logger = silentLogger) {
    super();
    this.o = AgentOptionsSchema.parse(options);
    this.log = log;
  }

  /**
   * Open the DB, prepare sync tables, backfill if never pulled, connect. Resolves once syncing has
   * started. While the app holds the database's write lock this waits (a busy database is not an
   * error); it rejects only for what waiting cannot fix (a bad configuration: tables, project), or
   * with WriteQueueStopped when stop() is called first.
   */
  async start(): Promise<void> {
    const o = this.o;
    const url = syncUrl(o.hub, o.project);
    const db = openAppDb(o.db, { busyTimeoutMs: AGENT_BUSY_TIMEOUT_MS, wal: false });
    this.db = db;
    const writes = new WriteQueue(db, { log: this.log, reportAfterMs: o.lockReportAfterMs });
    this.writes = writes;
    writes.on('unblocked', () => this.pusher?.wake());
    writes.on('lockWait', (w) => {
      this.writeLive();
      this.emit('lockWait', w);
    });
    // Status says "running" while we wait for the lock at start, too.
    this.startHeartbeat();
    try {
      await writes.run('switch the database to WAL', () => useWal(db), { transaction: false });
      const prepared = await writes.run('prepare the sync tables', () => {
        ensureSyncSchema(db);
        bindProject(db, o.project, url);
        const tables = syncedTables(db, o.tables);
        const state = getSyncState(db);
        const backfilled = state.cursor === 0 ? backfill(db, tables, state.sessionId) : 0;
        return { tables, state, backfilled };
      });
      this.tables = prepared.tables;
      this.deviceId = prepared.state.deviceId;
      this.sessionId = prepared.state.sessionId;
      this.cursor = prepared.state.cursor;
      this.cursorDigest = prepared.state.cursorDigest;
      this.adoptedRowid = prepared.state.adoptedRowid;
      if (prepared.backfilled > 0) this.log.info({ rows: prepared.backfilled }, 'backfilled existing rows into the outbox');
      this.engine = new ApplyEngine(db, { deviceId: this.deviceId, tables: this.tables });
      if (this.stopping) throw new WriteQueueStopped('start');
    } catch (err) {
      await this.closeDb();
      throw err;
    }
    if (this.tables.length === 0) {
      // Not an error (the app may create its tables later), but nothing will sync until a restart.
      this.log.warn('no table to sync: none has a TEXT primary key named id (tables are read at start)');
    }
    this.connect(url);
    this.log.info({ deviceId: this.deviceId, project: o.project, tables: this.tables }, 'agent started');
  }

  private connect(url: string): void {
    const o = this.o;
    const db = this.db!;
    this.link = new Link({
      url,
      token: o.token,
      deviceId: this.deviceId,
      afterSeq: () => this.cursor,
      resume: () => ({
        ...(this.cursor > 0 && this.cursorDigest !== null ? { afterDigest: this.cursorDigest } : {}),
        ...((this.cursor === 0 && this.o.snapshot) || this.forceBootstrap ? { bootstrap: true } : {}),
      }),
      log: this.log,
      backoffBaseMs: o.backoffBaseMs,
      backoffCapMs: o.backoffCapMs,
      pingIntervalMs: o.pingIntervalMs,
      deadAfterMs: o.deadAfterMs,
    });
    this.pusher = new Pusher(
      {
        readPending: (afterRowid, limit) => this.readPending(afterRowid, limit),
        send: (frame) => this.link.send(frame),
        settle: (ack) => this.settle(ack),
        log: this.log,
      },
      o.pushBatchSize,
      o.maxPushesInFlight,
    );
    // An app commit may also undo a row a snapshot waits for (see tryFinishBootstrap).
    this.watcher = new DataVersionWatcher(db, () => (this.pusher.wake(), this.tryFinishBootstrap()), o.watchIntervalMs, (err) => this.dbFailed(err), o.db);

    this.link.on('welcome', (w) => {
      // The hub's head below a seq it acked to us: it lost those events (restored from an older backup).
      const acked = this.tryRead(() => maxOwnAckedSeq(db, this.adoptedRowid), 0);
      if (acked > w.headSeq) {
        this.resync(ResyncReason.AckedPastHead, `the hub's head ${w.headSeq} is below seq ${acked}, which it acked for one of our changes`);
        return;
      }
      this.headSeq = w.headSeq;
      this.recordStatus(ConnectionStatus.Connected, w.headSeq);
      this.log.info({ headSeq: w.headSeq, cursor: this.cursor }, 'connected to hub');
      this.pusher.connected();
      this.emitStatus();
    });
    this.link.on('events', (f, bytes) => {
      if (this.resyncing) return; // this connection streams the log being left
      // After a snapshot, events wait until it has finished: they apply on top of it.
      if (this.bootstrap) this.bootstrap.held.push({ frame: f, bytes });
      else this.receive(f, bytes);
    });
    this.link.on('snapshot', (f, bytes) => {
      if (!this.resyncing) this.onSnapshot(f, bytes);
    });
    this.link.on('ack', (a) => this.pusher.onAck(a));
    this.link.on('hubError', (e) => {
      this.emit('problem', e);
      if (e.code === ErrorCode.CursorDiverged) this.resync(ResyncReason.CursorDiverged, e.message);
      else if (e.code === ErrorCode.CursorAhead) this.resync(ResyncReason.CursorAhead, e.message);
      else if (e.code === ErrorCode.CursorTooOld) this.resync(ResyncReason.CursorTooOld, e.message);
    });
    this.link.on('down', () => {
      // Frames of this connection still waiting for the write lock are dropped: the next connection
      // streams from the cursor again, and its hub may hold another log (restored from a backup) whose
      // events, applied after these, would be skipped as already seen.
      this.applyEpoch++;
      // A snapshot cut short starts again on the next connection (the cursor did not move).
      this.bootstrap = null;
      this.pusher.disconnected();
      this.recordStatus(ConnectionStatus.Disconnected);
      this.emitStatus();
    });
    this.watcher.start();
    this.link.start();
  }

  /**
   * Stop cleanly: writes already queued get a moment to land (the app may let go of its lock), then
   * the rest is dropped — nothing is half-applied (a frame is one transaction), an unapplied frame is
   * pulled again and an unrecorded ack is answered again as a duplicate of the re-push.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    if (!this.db) return;
    this.watcher?.stop();
    this.stopHeartbeat();
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    // Answers to pushes already sent first: the hub commits them whether or not we wait.
    await this.pusher?.drain(STOP_DRAIN_MS);
    await this.link?.stop();
    this.pusher?.disconnected();
    this.recordStatus(ConnectionStatus.Stopped);
    await this.closeDb();
    this.log.info('agent stopped');
  }

  private async closeDb(): Promise<void> {
    this.stopHeartbeat();
    await this.writes?.stop(1000);
    this.writeLive(ConnectionStatus.Stopped);
    this.db?.close();
    this.db = null;
  }

  status(): AgentStatus {
    return {
      state: this.link?.state ?? LinkState.Stopped,
      cursor: this.cursor,
      headSeq: this.headSeq,
      pending: this.db ? (this.lastPending = this.tryRead(() => countPending(this.db!), this.lastPending)) : 0,
    };
  }

  /** The current wait for the app's write lock (past the report threshold), or null. */
  lockWait(): LockWait | null {
    return this.writes?.lockWait() ?? null;
  }

  private emitStatus(): void {
    if (this.db) this.emit('status', this.status());
  }

  /**
   * A read outside the write queue. In WAL mode reads do not wait for the writer, but SQLite can still
   * answer BUSY in rare moments (another connection recovering the WAL): then use `fallback`, as for
   * any other failure, which is logged (or, for a damaged database, stops the agent).
   */
  private tryRead<T>(read: () => T, fallback: T): T {
    try {
      return read();
    } catch (err) {
      this.dbFailed(err);
      return fallback;
    }
  }

  private dbFailed(err: unknown): void {
    if (isTransientDbError(err)) return;
    if (isFatalDbError(err)) return this.fail(new SyncError('database_unusable', `the app database cannot be used: ${dbErrorText(err)}`));
    this.log.error({ err: dbErrorText(err) }, 'a read of the app database failed; trying again shortly');
  }

  /** The pusher's source: pending rows; unpushable ones are quarantined through the write queue. */
  private readPending(afterRowid: number, limit: number) {
    const page = this.tryRead(
      () => scanPending(this.db!, { afterRowid, limit, tables: this.tables, fallbackSessionId: this.sessionId, maxBytes: PUSH_PAYLOAD_BUDGET }),
      null,
    );
    if (!page) {
      // Try again shortly; an empty page ends this wake-up.
      this.wakeTimer ??= setTimeout(() => {
        this.wakeTimer = null;
        this.pusher.wake();
      }, 50);
      return { events: [], lastRowid: afterRowid };
    }
    if (page.unpushable.length > 0) {
      this.write('quarantine unpushable outbox rows', () => quarantineRows(this.db!, page.unpushable)).then(() => this.tryFinishBootstrap(), () => {});
    }
    return page;
  }

  private receive(frame: EventsFrame, bytes: number): void {
    const epoch = this.applyEpoch;
    this.inboxBytes += bytes;
    if (this.inboxBytes > INBOX_MAX_BYTES) this.link.pause();
    const applied = this.write(`apply events through seq ${frame.throughSeq}`, () => {
      if (epoch !== this.applyEpoch) return null; // a frame before this one failed; the stream restarts from the cursor
      return this.engine.applyFrame(frame.events, frame.throughSeq, frame.headSeq, frame.throughDigest ?? null);
    });
    const settled = () => {
      this.inboxBytes -= bytes;
      if (this.inboxBytes <= INBOX_MAX_BYTES / 2) this.link.resume();
    };
    applied.then(settled, settled);
    applied.then(
      (result) => {
        if (!result) return;
        this.cursor = result.cursor;
        if (result.skipped < frame.events.length) this.cursorDigest = frame.throughDigest ?? null;
        this.headSeq = frame.headSeq;
        this.emit('applied', result);
        if (result.conflicts.length) this.emit('conflict', result.conflicts);
        if (this.writes.size === 0) this.emitStatus();
      },
      (err: unknown) => {
        if (err instanceof WriteQueueStopped || epoch !== this.applyEpoch) return;
        if (err instanceof LogDivergedError) return this.resync(ResyncReason.AckedEventMissing, err.message);
        this.applyEpoch++;
        const message = dbErrorText(err);
        this.log[err instanceof StreamGapError ? 'warn' : 'error']({ err: message, throughSeq: frame.throughSeq }, 'applying a frame failed; reconnecting');
        this.emit('problem', { code: err instanceof StreamGapError ? err.code : 'apply_failed', message });
        this.link.reconnect(`apply failed: ${message}`);
      },
    );
  }

  /**
   * A snapshot page. Pages are applied as they come (each its own transaction; the cursor stays, so a
   * crash starts the bootstrap over). The last one is finished (local changes re-applied, cursor moved
   * to its seq) once every outbox row that was pending when the snapshot began has its ack: only an ack
   * says whether the hub already held that change at or below the snapshot's seq.
   */
  private onSnapshot(frame: SnapshotFrame, bytes: number): void {
    const db = this.db!;
    let b = this.bootstrap;
    if (!b) {
      const now = Date.now();
      b = this.bootstrap = {
        throughSeq: frame.throughSeq,
        startedAt: now,
        rows: 0,
        pages: 0,
        lastReportAt: now,
        verifyThrough: this.tryRead(() => lastOutboxRowid(db), Number.MAX_SAFE_INTEGER),
        last: null,
        held: [],
        finishing: false,
        started: false,
        epoch: this.applyEpoch,
      };
      this.log.info({ throughSeq: frame.throughSeq, cursor: this.cursor }, 'bootstrapping from a snapshot of the hub');
    }
    const current = b;
    const first = !b.started;
    b.started = true;
    const epoch = b.epoch;
    this.inboxBytes += bytes;
    if (this.inboxBytes > INBOX_MAX_BYTES) this.link.pause();
    let failedHere = false;
    const applied = this.write(`apply a snapshot page at seq ${frame.throughSeq}`, () => {
      if (epoch !== this.applyEpoch) return null;
      try {
        return this.engine.applySnapshotRows(frame.rows, first);
      } catch (err) {
        // Bumped here, not in the rejection handler: the queue runs the next job (this bootstrap's
        // finish) before any handler, and it must see that a page is missing.
        if (!isTransientDbError(err)) {
          failedHere = true;
          this.applyEpoch++;
        }
        throw err;
      }
    });
    applied.then(
      (r) => {
        this.inboxBytes -= bytes;
        if (this.inboxBytes <= INBOX_MAX_BYTES / 2) this.link.resume();
        if (!r) return;
        current.rows += r.applied;
        current.pages++;
        const now = Date.now();
        if (now - current.lastReportAt >= PROGRESS_EVERY_MS) {
          current.lastReportAt = now;
          this.log.info({ rows: current.rows, pages: current.pages, throughSeq: current.throughSeq }, 'bootstrap: snapshot rows applied so far');
        }
        this.emit('bootstrap', { throughSeq: current.throughSeq, rows: current.rows, done: false });
      },
      (err: unknown) => {
        this.inboxBytes -= bytes;
        if (this.inboxBytes <= INBOX_MAX_BYTES / 2) this.link.resume();
        // A page that did not apply must not be skipped: the bootstrap starts over on a new connection.
        if (!failedHere) return;
        if (this.bootstrap === current) this.bootstrap = null;
        const message = dbErrorText(err);
        this.log.error({ err: message, throughSeq: frame.throughSeq }, 'applying a snapshot page failed; reconnecting to bootstrap again');
        this.emit('problem', { code: 'apply_failed', message });
        this.link.reconnect(`snapshot page failed: ${message}`);
      },
    );
    if (frame.done) {
      b.last = frame;
      this.tryFinishBootstrap();
    }
  }

  /** Finish the snapshot once its last page is in and the rows pending at its start are acked; then apply the events held. */
  private tryFinishBootstrap(): void {
    const b = this.bootstrap;
    if (!b || !b.last || b.finishing || !this.db || b.epoch !== this.applyEpoch) return;
    if (this.tryRead(() => pendingThrough(this.db!, b.verifyThrough), true)) return; // the next ack tries again
    b.finishing = true;
    const last = b.last;
    const digest = last.throughDigest!;
    const epoch = b.epoch;
    this.write(`finish the snapshot at seq ${last.throughSeq}`, () =>
      // A page before it failed (the bootstrap starts over): finishing would move the cursor past rows never written.
      epoch === this.applyEpoch ? this.engine.finishSnapshot(last.throughSeq, digest, this.headSeq ?? last.throughSeq) : null,
    ).then(
      (r) => {
        if (!r) return;
        this.cursor = last.throughSeq;
        this.cursorDigest = digest;
        this.forceBootstrap = false;
        this.log.info(
          { rows: b.rows, pages: b.pages, throughSeq: last.throughSeq, localChangesReapplied: r.reapplied, rowsRemoved: r.removed, ms: Date.now() - b.startedAt },
          'bootstrap finished: streaming from the snapshot on',
        );
        this.emit('bootstrap', { throughSeq: last.throughSeq, rows: b.rows, done: true });
        this.emitStatus();
      },
      (err: unknown) => {
        if (err instanceof WriteQueueStopped || epoch !== this.applyEpoch) return;
        // The cursor did not move: the next connection bootstraps again. Frames queued behind are dropped.
        this.applyEpoch++;
        const message = dbErrorText(err);
        this.log.error({ err: message }, 'finishing the snapshot failed; reconnecting to bootstrap again');
        this.emit('problem', { code: 'apply_failed', message });
        this.link.reconnect(`snapshot finish failed: ${message}`);
      },
    );
    // Queued behind the finish, in order; from here on frames go straight to the write queue.
    if (this.bootstrap === b) this.bootstrap = null;
    for (const h of b.held) this.receive(h.frame, h.bytes);
  }

  /**
   * The hub's log is not the one this device synced (or was compacted past its cursor): reset what can
   * no longer be trusted (divergence.ts), then reconnect to bootstrap again and re-push. The hub's
   * refusals that keep coming while the reset waits for the write lock are expected and ignored.
   */
  private resync(reason: ResyncReason, message: string): void {
    if (this.resyncing || !this.db) return;
    this.resyncing = true;
    this.applyEpoch++; // frames already queued belong to the log being left
    this.bootstrap = null;
    const cursor = this.cursor;
    this.log.warn({ reason, cursor, detail: message }, 'the hub no longer has the log this device synced: re-bootstrapping and re-pushing our changes it lost');
    this.write(`reset for a re-bootstrap (${reason})`, () => resetForResync(this.db!, reason, cursor)).then(
      (reset) => {
        this.resyncing = false;
        if (reason === ResyncReason.CursorTooOld) this.forceBootstrap = true;
        else this.cursor = 0;
        this.cursorDigest = null;
        this.log.warn({ reason, changesToRepush: reset }, 're-bootstrap prepared');
        this.emit('resync', { reason, reset });
        this.link.reconnect(`re-bootstrap (${reason})`);
      },
      () => {
        this.resyncing = false;
      },
    );
  }

  /** An ack: acked and duplicate rows are synced; other rejections can never succeed and are quarantined. */
  private settle(ack: AckFrame): void {
    const synced = [...ack.acks];
    const refused: AckFrame['rejected'] = [];
    for (const r of ack.rejected) {
      if (r.reason === RejectReason.Duplicate && r.serverSeq !== undefined) synced.push({ clientActionId: r.clientActionId, serverSeq: r.serverSeq });
      else refused.push(r);
    }
    this.write('record an ack', () => {
      const db = this.db!;
      for (const r of refused) quarantineOutbound(db, r.clientActionId, `rejected by hub: ${r.reason}`);
      markAcked(db, synced);
    }).then(() => {
      this.tryFinishBootstrap();
      for (const r of refused) this.log.warn({ clientActionId: r.clientActionId, reason: r.reason }, 'push rejected');
      this.emit('acked', { acks: ack.acks.length, duplicates: synced.length - ack.acks.length, rejected: refused.length });
    }, () => {});
  }

  /**
   * Queue a write; a failure other than a lock (those are waited out) is logged, and a database that
   * is gone or damaged stops the agent. Callers that need the outcome use the returned promise.
   */
  private write<T>(what: string, fn: () => T, key?: string): Promise<T> {
    const done = this.writes.run(what, fn, { key });
    done.catch((err: unknown) => {
      if (err instanceof WriteQueueStopped) return;
      if (isFatalDbError(err)) return this.dbFailed(err);
      this.log.error({ err: dbErrorText(err), what }, 'a write to the app database failed; carrying on');
    });
    return done;
  }

  /** Connection state for `agent status`: the live file at once, sync_state when the database lets us. */
  private recordStatus(status: ConnectionStatus, headSeq?: number): void {
    this.liveStatus = status;
    this.writeLive();
    if (!this.db) return;
    this.write('record the connection status', () => setConnectionStatus(this.db!, status, headSeq), headSeq === undefined ? 'status' : undefined);
  }

  private writeLive(status: ConnectionStatus = this.liveStatus): void {
    const wait = this.writes?.lockWait();
    const err = writeLiveState(this.o.db, {
      pid: process.pid,
      status,
      heartbeatAt: new Date().toISOString(),
      lockWaitSince: wait ? new Date(wait.since).toISOString() : null,
    });
    if (err) this.log.debug({ err: err.message }, 'cannot write the live status file');
  }

  private startHeartbeat(): void {
    this.writeLive();
    // Refresh the live file (and sync_state.updated_at, when the database lets us), so `agent status`
    // can tell a running agent from one that died without saying so (kill -9 leaves 'connected').
    this.heartbeat = setInterval(() => {
      if (!existsSync(this.o.db)) {
        return this.fail(new SyncError('database_gone', `the app database ${this.o.db} was deleted or moved; restart the agent on the right file`));
      }
      const status = this.link?.open ? ConnectionStatus.Connected : ConnectionStatus.Disconnected;
      if (this.stopping === null) this.recordStatus(status);
    }, this.o.heartbeatMs);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** Something waiting cannot fix: say so once, stop, and let the owner (the CLI) exit. */
  private fail(err: SyncError): void {
    if (this.stopping) return;
    this.log.error({ code: err.code }, err.message);
    void this.stop().finally(() => this.emit('fatal', err));
  }
}
