// Property: random local writes on two devices, a simulated hub log (seqs assigned in push order,
// dedup on re-push, acks sometimes lost), frames delivered at random points (own events included).
// After every frame a device equals replay(log 1..cursor) + its undelivered local changes; at the end
// every device equals replay(log).
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getSyncState, type Db } from '../../agent/app-db.ts';
import { ApplyEngine, RowApplier } from '../../agent/apply.ts';
import { OUTBOX_NOT_QUARANTINED, OUTBOX_ROW_COLUMNS, decodeOutboxRow, markAcked, readPending, type OutboxRow } from '../../agent/outbox.ts';
import { dedupKey, type SyncEvent } from '../../shared/event.ts';
import { APP_TABLES, AppWriter, dumpTables, makeAgentDb, replayInto, stored, tempDir, type TempDir } from '../kit/app-db.ts';

let tmp: TempDir;
beforeEach(() => {
  tmp = tempDir('synchub-prop-');
});
afterEach(() => tmp.cleanup());

class SimHub {
  readonly log: SyncEvent[] = [];
  private readonly seen = new Map<string, number>();
  /** Store a push; returns each event's seq (the first one's for a duplicate). */
  push(deviceId: string, events: ReturnType<typeof readPending>['events']): Array<{ clientActionId: number; serverSeq: number }> {
    return events.map((p) => {
      const key = dedupKey(deviceId, p.sessionId, p.clientActionId);
      let seq = this.seen.get(key);
      if (seq === undefined) {
        seq = this.log.length + 1;
        this.seen.set(key, seq);
        this.log.push(stored(p, seq, deviceId));
      }
      return { clientActionId: p.clientActionId, serverSeq: seq };
    });
  }
}

interface Device {
  name: string;
  db: Db;
  app: AppWriter;
  engine: ApplyEngine;
  deviceId: string;
  sessionId: string;
  /** Pusher watermark: rows up to here were sent on the current connection. */
  sentThrough: number;
}

function openDevice(name: string): Device {
  const path = tmp.path(`${name}-${Math.random().toString(36).slice(2)}.db`);
  const db = makeAgentDb(path);
  const s = getSyncState(db);
  return {
    name,
    db,
    app: new AppWriter(path, `ses-${name}`),
    engine: new ApplyEngine(db, { deviceId: s.deviceId, tables: APP_TABLES }),
    deviceId: s.deviceId,
    sessionId: s.sessionId,
    sentThrough: 0,
  };
}

type Op =
  | { kind: 'create'; dev: number; id: string; title: string; status: string; priority: number; comment: boolean }
  | { kind: 'update'; dev: number; id: string; field: 'title' | 'status' | 'priority'; value: string | number; comment: boolean }
  | { kind: 'softDelete' | 'restore' | 'hardDelete'; dev: number; id: string; comment: boolean }
  | { kind: 'push'; dev: number; n: number; loseAck: boolean }
  | { kind: 'pull'; dev: number; n: number }
  | { kind: 'reconnect'; dev: number };

const ids = fc.constantFrom('a', 'b', 'c');
const dev = fc.integer({ min: 0, max: 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('create' as const), dev, id: ids, title: fc.constantFrom('t1', 't2', 't3'), status: fc.constantFrom('open', 'done'), priority: fc.integer({ min: 0, max: 3 }), comment: fc.boolean() }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('update' as const),
      dev,
      id: ids,
      field: fc.constantFrom('title' as const, 'status' as const, 'priority' as const),
      value: fc.oneof(fc.constantFrom('x', 'y', 'z'), fc.integer({ min: 0, max: 9 })),
      comment: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('softDelete' as const, 'restore' as const, 'hardDelete' as const), dev, id: ids, comment: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('push' as const), dev, n: fc.integer({ min: 1, max: 4 }), loseAck: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('pull' as const), dev, n: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reconnect' as const), dev }) },
);

let tick = 0;
const nextTs = () => new Date(Date.UTC(2026, 0, 1) + ++tick * 1000).toISOString();

function write(d: Device, o: Op): void {
  if (!('comment' in o)) return;
  const ts = nextTs();
  if (o.comment) {
    // comments: no deleted_at, so only create, update and hard delete.
    if (o.kind === 'create') d.app.create('comments', { id: o.id, issue_id: 'a', body: o.title, created_at: ts }, ts);
    else if (o.kind === 'update') d.app.update('comments', o.id, { body: String(o.value) }, ts);
    else if (o.kind === 'hardDelete') d.app.hardDelete('comments', o.id, ts);
    return;
  }
  switch (o.kind) {
    case 'create':
      // Full rows, as td and `agent init` triggers write them.
      d.app.create('issues', { id: o.id, title: o.title, status: o.status, priority: o.priority, labels: '[]', deleted_at: null, updated_at: ts }, ts);
      return;
    case 'update':
      d.app.update('issues', o.id, { [o.field]: o.value, updated_at: ts }, ts);
      return;
    case 'softDelete':
      d.app.softDelete('issues', o.id, ts);
      return;
    case 'restore':
      d.app.restore('issues', o.id, ts);
      return;
    case 'hardDelete':
      d.app.hardDelete('issues', o.id, ts);
  }
}

function push(hub: SimHub, d: Device, n: number, loseAck: boolean): void {
  const page = readPending(d.db, { afterRowid: d.sentThrough, limit: n, tables: APP_TABLES, fallbackSessionId: d.sessionId });
  d.sentThrough = page.lastRowid;
  if (page.events.length === 0) return;
  const acks = hub.push(d.deviceId, page.events);
  if (!loseAck) markAcked(d.db, acks);
}

function pull(hub: SimHub, d: Device, n: number): void {
  const cursor = getSyncState(d.db).cursor;
  const frame = hub.log.slice(cursor, cursor + n);
  if (frame.length === 0) return;
  d.engine.applyFrame(frame, frame[frame.length - 1]!.serverSeq, hub.log.length);
}

/** Rule 2 after a frame: replay(log 1..cursor), then the undelivered local changes in rowid order. */
function expected(hub: SimHub, d: Device): ReturnType<typeof dumpTables> {
  const cursor = getSyncState(d.db).cursor;
  const replica = replayInto(':memory:', hub.log.slice(0, cursor));
  try {
    const rows = d.db
      .prepare(
        `SELECT ${OUTBOX_ROW_COLUMNS} FROM action_log a WHERE IFNULL(a.undone, 0) = 0
           AND (a.server_seq IS NULL OR a.server_seq > ?) AND ${OUTBOX_NOT_QUARANTINED} ORDER BY a.rowid`,
      )
      .all(cursor) as OutboxRow[];
    const rules = new RowApplier(replica, APP_TABLES);
    for (const row of rows) {
      const dec = decodeOutboxRow(row, new Set(APP_TABLES));
      if (dec.ok) rules.apply(dec.change);
    }
    return dumpTables(replica);
  } finally {
    replica.close();
  }
}

function runScenario(ops: Op[]): void {
  const hub = new SimHub();
  const devices = [openDevice('A'), openDevice('B')];
  try {
    for (const o of ops) {
      const d = devices[o.dev]!;
      if (o.kind === 'push') push(hub, d, o.n, o.loseAck);
      else if (o.kind === 'pull') {
        pull(hub, d, o.n);
        expect(dumpTables(d.db), `${d.name} after a frame`).toEqual(expected(hub, d));
      } else if (o.kind === 'reconnect') d.sentThrough = 0;
      else write(d, o);
    }
    // Drain: re-push everything unacked (lost acks included), then pull everything, until quiet.
    for (let round = 0; round < 3; round++) {
      for (const d of devices) {
        d.sentThrough = 0;
        push(hub, d, 10_000, false);
      }
      for (const d of devices) pull(hub, d, 10_000);
    }
    const replica = replayInto(':memory:', hub.log);
    try {
      const truth = dumpTables(replica);
      for (const d of devices) expect(dumpTables(d.db), `${d.name} at the end`).toEqual(truth);
    } finally {
      replica.close();
    }
  } finally {
    for (const d of devices) {
      d.app.close();
      d.db.close();
    }
  }
}

describe('convergence (property)', () => {
  it('every device equals replay of the hub log, and replay + pending after every frame', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 5, maxLength: 40 }), (ops) => runScenario(ops)),
      { seed: 20260101, numRuns: 150 },
    );
  });

  it('a fixed interleaving: concurrent edits, a lost ack, a re-push, own events in the stream', () => {
    runScenario([
      { kind: 'create', dev: 0, id: 'a', title: 't1', status: 'open', priority: 1, comment: false },
      { kind: 'push', dev: 0, n: 4, loseAck: true },
      { kind: 'pull', dev: 1, n: 5 },
      { kind: 'update', dev: 1, id: 'a', field: 'title', value: 'x', comment: false },
      { kind: 'update', dev: 0, id: 'a', field: 'title', value: 'y', comment: false },
      { kind: 'push', dev: 1, n: 4, loseAck: false },
      { kind: 'pull', dev: 0, n: 5 },
      { kind: 'reconnect', dev: 0 },
      { kind: 'push', dev: 0, n: 4, loseAck: false },
      { kind: 'hardDelete', dev: 1, id: 'a', comment: false },
      { kind: 'pull', dev: 1, n: 1 },
      { kind: 'pull', dev: 1, n: 5 },
    ]);
  });
});
