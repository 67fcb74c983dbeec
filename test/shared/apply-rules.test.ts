// The td apply rules live once (shared/apply-rules.ts): the agent writes them as SQL, the hub keeps
// its state table with them. One file covers both: the effects themselves, and for random histories
// the hub's state applied to a fresh device equals a device that replayed the whole log.
import { afterAll, describe, expect, it } from 'vitest';
import { applyEffect, effectOf } from '../../shared/apply-rules.ts';
import type { SnapshotRow } from '../../shared/protocol.ts';
import { ApplyEngine } from '../../agent/apply.ts';
import { SqliteEventStore } from '../../hub/store/sqlite.ts';
import { APP_TABLES, dumpTables, makeAgentDb, replayInto, tempDir } from '../kit/app-db.ts';
import { hubLog } from '../kit/devices.ts';
import { loadHistory, randomHistory } from '../kit/history.ts';

const tmp = tempDir('synchub-rules-');
afterAll(() => tmp.cleanup());

const T = '2026-01-01T00:00:00.000Z';

describe('effects', () => {
  it('update with previousData writes only the differing fields; a key dropped from new is written as null', () => {
    const e = effectOf({ actionType: 'update', newData: { id: 'x', a: 1, b: 2 }, previousData: { id: 'x', a: 1, b: 1, c: 5 }, clientTimestamp: T });
    expect(e).toEqual({ op: 'update', fields: { b: 2, c: null } });
    expect(applyEffect({ a: 0, b: 0, c: 0, d: 4 }, e)).toEqual({ a: 0, b: 2, c: null, d: 4 });
    expect(applyEffect(undefined, e)).toBeUndefined(); // an update never creates
  });

  it('create upserts without id; delete removes; soft_delete and restore touch only existing rows', () => {
    const create = effectOf({ actionType: 'create', newData: { id: 'x', a: 1 }, previousData: null, clientTimestamp: T });
    expect(create).toEqual({ op: 'upsert', fields: { a: 1 } });
    expect(applyEffect({ a: 0, b: 3 }, create)).toEqual({ a: 1, b: 3 });
    expect(applyEffect({ a: 1 }, effectOf({ actionType: 'delete', newData: null, previousData: null, clientTimestamp: T }))).toBeUndefined();
    const soft = effectOf({ actionType: 'soft_delete', newData: null, previousData: null, clientTimestamp: T });
    expect(applyEffect({ a: 1 }, soft)).toEqual({ a: 1, deleted_at: T });
    expect(applyEffect(undefined, soft)).toBeUndefined();
    const restore = effectOf({ actionType: 'restore', newData: null, previousData: null, clientTimestamp: T });
    expect(applyEffect({ a: 1, deleted_at: 'x' }, restore)).toEqual({ a: 1, deleted_at: null, updated_at: T });
  });

  it('a create or update without newData cannot apply', () => {
    expect(() => effectOf({ actionType: 'create', newData: null, previousData: null, clientTimestamp: T })).toThrow(/without newData/);
    expect(() => effectOf({ actionType: 'update', newData: null, previousData: null, clientTimestamp: T })).toThrow(/without newData/);
  });
});

describe('the hub state equals a replay on a device', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`random history, seed ${seed}`, async () => {
      const store = new SqliteEventStore(tmp.path(`hub-${seed}.db`));
      await store.createProject('p');
      await loadHistory(store, 'p', randomHistory(seed, 3000, 60), 'loader', 137);
      const log = await hubLog(store, 'p');
      const replay = replayInto(tmp.path(`replay-${seed}.db`), log);

      const snap = await store.openSnapshot('p');
      const rows: SnapshotRow[] = [];
      for (;;) {
        const page = await snap.next(4096);
        rows.push(...page.rows.map((r) => JSON.parse(r.json) as SnapshotRow));
        if (page.done) break;
      }
      const device = makeAgentDb(tmp.path(`device-${seed}.db`));
      const engine = new ApplyEngine(device, { deviceId: 'dev', tables: APP_TABLES });
      for (let i = 0; i < rows.length; i += 50) engine.applySnapshotRows(rows.slice(i, i + 50), i === 0);
      engine.finishSnapshot(snap.throughSeq, snap.throughDigest, snap.throughSeq);
      expect(dumpTables(device)).toEqual(dumpTables(replay));
      expect(dumpTables(device).issues!.some((r) => r.deleted_at !== null)).toBe(true);
      device.close();
      replay.close();
      await store.close();
    });
  }
});

describe('td names', () => {
  it("an entity or action type named like an Object.prototype member is itself, never the prototype's function", async () => {
    const { entityTable, mapActionType } = await import('../../shared/td-actions.ts');
    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']) {
      expect(entityTable(name)).toBe(name);
      expect(mapActionType(name)).toBe('update');
    }
    expect(entityTable('issue')).toBe('issues');
    expect(mapActionType('handoff')).toBe('create');
  });
});
