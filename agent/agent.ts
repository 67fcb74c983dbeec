// The agent: wires the app DB (outbox, apply engine, cursor) to the hub link.
// Data flows one way: outbox -> pusher -> link -> hub -> link -> apply.
import { EventEmitter } from 'node:events';
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { RejectReason } from '../shared/errors.ts';
import { MAX_FRAME_BYTES } from '../shared/limits.ts';
import { silentLogger, type Logger } from '../shared/log.ts';
import type { AckFrame, EventsFrame } from '../shared/protocol.ts';
import { openAppDb, ensureSyncSchema, bindProject, getSyncState, setConnectionStatus, syncedTables } from './app-db.ts';
import { HEARTBEAT_MS } from './status.ts';
import { ApplyEngine, isTransientDbError, type FrameResult } from './apply.ts';
import { backfill } from './backfill.ts';
import { Link, LinkState, syncUrl } from './link.ts';
import { markAcked, quarantineOutbound, readPending, countPending } from './outbox.ts';
import { Pusher } from './pusher.ts';
import { DataVersionWatcher } from './watch.ts';

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
  /** How often PRAGMA data_version is polled for the app's own commits. */
  watchIntervalMs: z.number().int().positive().default(5),
  backoffBaseMs: z.number().int().positive().default(250),
  backoffCapMs: z.number().int().positive().default(30_000),
  pingIntervalMs: z.number().int().positive().optional(),
  deadAfterMs: z.number().int().positive().optional(),
  /** Retry delay when the app holds a write lock (SQLITE_BUSY) during apply. */
  busyRetryMs: z.number().int().positive().default(50),
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
}

export class Agent extends EventEmitter<AgentEvents> {
  private readonly o: z.infer<typeof AgentOptionsSchema>;
  private readonly log: Logger;
  private db: Database.Database | null = null;
  private engine!: ApplyEngine;
  private link!: Link;
  private pusher!: Pusher;
  private watcher!: DataVersionWatcher;
  private tables: string[] = [];
  deviceId = '';
  private inbox: EventsFrame[] = [];
  private retryTimer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private headSeq: number | null = null;

  constructor(options: AgentOptions, log: Logger = silentLogger) {
    super();
    this.o = AgentOptionsSchema.parse(options);
    this.log = log;
  }

  /** Open the DB, prepare sync tables, backfill if never pulled, connect. */
  start(): void {
    const o = this.o;
    const url = syncUrl(o.hub, o.project);
    const db = openAppDb(o.db);
    try {
      ensureSyncSchema(db);
      bindProject(db, o.project, url);
      this.tables = syncedTables(db, o.tables);
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
    if (this.tables.length === 0) {
      // Not an error (the app may create its tables later), but nothing will sync until a restart.
      this.log.warn('no table to sync: none has a TEXT primary key named id (tables are read at start)');
    }
    const state = getSyncState(db);
    this.deviceId = state.deviceId;
    if (state.cursor === 0) {
      const n = backfill(db, this.tables, state.sessionId);
      if (n > 0) this.log.info({ rows: n }, 'backfilled existing rows into the outbox');
    }
    this.engine = new ApplyEngine(db, { deviceId: this.deviceId, tables: this.tables });
    this.link = new Link({
      url,
      token: o.token,
      deviceId: this.deviceId,
      afterSeq: () => getSyncState(db).cursor,
      log: this.log,
      backoffBaseMs: o.backoffBaseMs,
      backoffCapMs: o.backoffCapMs,
      pingIntervalMs: o.pingIntervalMs,
      deadAfterMs: o.deadAfterMs,
    });
    this.pusher = new Pusher(
      {
        readPending: (afterRowid, limit) =>
          readPending(db, { afterRowid, limit, tables: this.tables, fallbackSessionId: state.sessionId, maxBytes: PUSH_PAYLOAD_BUDGET }),
        send: (frame) => this.link.send(frame),
        settle: (ack) => this.settle(ack),
        log: this.log,
      },
      o.pushBatchSize,
      o.maxPushesInFlight,
    );
    this.watcher = new DataVersionWatcher(db, () => this.pusher.wake(), o.watchIntervalMs);

    this.link.on('welcome', (w) => {
      this.headSeq = w.headSeq;
      setConnectionStatus(db, 'connected', w.headSeq);
      this.log.info({ headSeq: w.headSeq, cursor: getSyncState(db).cursor }, 'connected to hub');
      this.pusher.connected();
      this.emitStatus();
    });
    this.link.on('events', (f) => this.receive(f));
    this.link.on('ack', (a) => this.pusher.onAck(a));
    this.link.on('hubError', (e) => this.emit('problem', e));
    this.link.on('down', () => {
      this.pusher.disconnected();
      this.inbox = [];
      if (this.retryTimer) clearTimeout(this.retryTimer);
      this.retryTimer = null;
      if (this.db) setConnectionStatus(this.db, 'disconnected');
      this.emitStatus();
    });
    this.watcher.start();
    // Refresh sync_state.updated_at, so `agent status` can tell a running agent from one
    // that died without saying so (kill -9 leaves status = 'connected' behind).
    this.heartbeat = setInterval(() => {
      if (this.db) setConnectionStatus(this.db, this.link.open ? 'connected' : 'disconnected');
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
    this.link.start();
    this.log.info({ deviceId: this.deviceId, project: o.project, tables: this.tables }, 'agent started');
  }

  /** Stop cleanly: nothing half-applied (applies are synchronous), unacked pushes stay pending. */
  async stop(): Promise<void> {
    if (!this.db) return;
    this.watcher.stop();
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.link.stop();
    this.pusher.disconnected();
    setConnectionStatus(this.db, 'stopped');
    this.db.close();
    this.db = null;
    this.log.info('agent stopped');
  }

  status(): AgentStatus {
    const db = this.db;
    return {
      state: this.link?.state ?? LinkState.Stopped,
      cursor: db ? getSyncState(db).cursor : 0,
      headSeq: this.headSeq,
      pending: db ? countPending(db) : 0,
    };
  }

  private emitStatus(): void {
    if (this.db) this.emit('status', this.status());
  }

  private receive(frame: EventsFrame): void {
    this.inbox.push(frame);
    if (!this.retryTimer) this.drainInbox();
  }

  /** Apply frames in order; on a busy DB, pause the stream and retry the same frame. */
  private drainInbox(): void {
    this.retryTimer = null;
    const db = this.db;
    if (!db) return;
    while (this.inbox.length > 0) {
      const frame = this.inbox[0]!;
      let result: FrameResult;
      try {
        result = this.engine.applyFrame(frame.events, frame.throughSeq, frame.headSeq);
      } catch (err) {
        if (isTransientDbError(err)) {
          // The app holds the write lock: keep the cursor, stop reading, try again shortly.
          this.link.pause();
          this.retryTimer = setTimeout(() => this.drainInbox(), this.o.busyRetryMs);
          return;
        }
        const message = err instanceof Error ? err.message : String(err);
        this.log.error({ err: message, throughSeq: frame.throughSeq }, 'applying a frame failed; reconnecting');
        this.emit('problem', { code: 'apply_failed', message });
        this.inbox = [];
        this.link.resume();
        this.link.reconnect(`apply failed: ${message}`);
        return;
      }
      this.inbox.shift();
      this.headSeq = frame.headSeq;
      this.emit('applied', result);
      if (result.conflicts.length) this.emit('conflict', result.conflicts);
    }
    this.link.resume();
    this.emitStatus();
  }

  /** An ack: acked and duplicate rows are synced; other rejections can never succeed and are quarantined. */
  private settle(ack: AckFrame): void {
    const db = this.db;
    if (!db) return;
    const synced = [...ack.acks];
    let duplicates = 0;
    for (const r of ack.rejected) {
      if (r.reason === RejectReason.Duplicate && r.serverSeq !== undefined) {
        synced.push({ clientActionId: r.clientActionId, serverSeq: r.serverSeq });
        duplicates++;
      } else {
        quarantineOutbound(db, r.clientActionId, `rejected by hub: ${r.reason}`);
        this.log.warn({ clientActionId: r.clientActionId, reason: r.reason }, 'push rejected');
      }
    }
    markAcked(db, synced);
    this.emit('acked', { acks: ack.acks.length, duplicates, rejected: ack.rejected.length - duplicates });
  }
}
