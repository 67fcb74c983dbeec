// How the agent tells that the hub's log is not the one it synced, and what it resets to start over.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../agent/app-db.ts';
import { getSyncState } from '../../agent/app-db.ts';
import { checkOwnAcks, LogDivergedError, maxOwnAckedSeq, resetForResync, ResyncReason } from '../../agent/divergence.ts';
import { countPending } from '../../agent/outbox.ts';
import { AppWriter, ev, makeAgentDb, tempDir, type TempDir } from '../kit/app-db.ts';

let tmp: TempDir;
let db: Db;
let app: AppWriter;
let me: string;

beforeEach(() => {
  tmp = tempDir('synchub-divergence-');
  db = makeAgentDb(tmp.path('app.db'));
  app = new AppWriter(tmp.path('app.db'));
  me = getSyncState(db).deviceId;
  for (let i = 1; i <= 4; i++) app.create('issues', { id: `i${i}`, title: `t${i}` });
  // Rows 1-3 acked at seqs 10, 11, 20; row 4 still pending. Cursor 12.
  const mark = db.prepare("UPDATE action_log SET synced_at = '2026-01-01', server_seq = ? WHERE rowid = ?");
  mark.run(10, 1);
  mark.run(11, 2);
  mark.run(20, 3);
  db.prepare("UPDATE sync_state SET last_pulled_server_seq = 12, cursor_digest = 'abc'").run();
});

afterEach(() => {
  app.close();
  db.close();
  tmp.cleanup();
});

/** A stream event at `seq` from `deviceId` with clientActionId `cid`. */
function at(seq: number, deviceId: string, cid: number) {
  return ev(seq, 'update', 'issues', 'x', { id: 'x', title: 'remote' }, { deviceId, clientActionId: cid });
}

describe('checkOwnAcks', () => {
  it('passes when the seqs acked for our rows hold our events', () => {
    expect(() => checkOwnAcks(db, me, 0, [at(19, 'other', 7), at(20, me, 3)], 0)).not.toThrow();
  });

  it('throws when a seq acked for one of our rows holds another event', () => {
    expect(() => checkOwnAcks(db, me, 0, [at(19, 'other', 7), at(20, 'other', 8)], 0)).toThrow(LogDivergedError);
    // Our device but another row: the same.
    expect(() => checkOwnAcks(db, me, 0, [at(20, me, 4)], 0)).toThrow(/acked our change 3 as seq 20/);
  });

  it('ignores rows that predate the agent (adopted) and events before the frame start', () => {
    expect(() => checkOwnAcks(db, me, 3, [at(20, 'other', 8)], 0)).not.toThrow();
    expect(() => checkOwnAcks(db, me, 0, [at(20, 'other', 8), at(21, 'other', 9)], 1)).not.toThrow();
  });
});

describe('resetForResync', () => {
  it('after a divergence: every own synced row pending again, cursor and digest cleared, recorded', () => {
    expect(maxOwnAckedSeq(db, 0)).toBe(20);
    expect(resetForResync(db, ResyncReason.CursorDiverged, 12)).toBe(3);
    expect(countPending(db)).toBe(4);
    const s = getSyncState(db);
    expect(s).toMatchObject({ cursor: 0, cursorDigest: null, resyncCount: 1, lastResyncReason: 'cursor_diverged' });
    expect(maxOwnAckedSeq(db, 0)).toBe(0);
  });

  it('after cursor_too_old: only acks past the cursor are unconfirmed; the cursor stays', () => {
    expect(resetForResync(db, ResyncReason.CursorTooOld, 12)).toBe(1);
    expect(countPending(db)).toBe(2);
    expect(getSyncState(db)).toMatchObject({ cursor: 12, cursorDigest: null, resyncCount: 1, lastResyncReason: 'cursor_too_old' });
  });
});
