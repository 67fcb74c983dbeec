// td's apply rules, once, for every place that applies events: the agent turns an effect into SQL on
// the app's tables (agent/apply.ts), the hub applies it to a JSON row in its state table
// (hub/store/state.ts), so a snapshot equals a replay of the log.
import type { ActionType } from './event.ts';

export type Row = Record<string, unknown>;

/** One change to one row: what the rules need from an event or an outbox row. */
export interface RuleChange {
  actionType: ActionType;
  newData: Row | null;
  previousData: Row | null;
  /** soft_delete writes it into deleted_at; restore into updated_at. */
  clientTimestamp: string;
}

/** What a change does to its row. `fields` never holds `id` (a primary key is not written). */
export type RowEffect =
  /** create: insert the row, or overwrite these fields of the existing one (never delete + insert). */
  | { op: 'upsert'; fields: Row }
  /** update: write these fields when the row exists; never creates it. */
  | { op: 'update'; fields: Row }
  /** delete: remove the row (no-op when missing). */
  | { op: 'delete' }
  /** soft_delete: deleted_at = at, when the row exists. */
  | { op: 'soft_delete'; at: string }
  /** restore: deleted_at = NULL and updated_at = at (where the row has one), when the row exists. */
  | { op: 'restore'; at: string };

/** A change that can never apply (no newData for a create or update). */
export class RuleError extends Error {
  override name = 'RuleError';
}

/** Structural equality of two JSON values (td's reflect.DeepEqual on decoded JSON). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ak = Object.keys(a);
  if (ak.length !== Object.keys(b).length) return false;
  for (const k of ak) {
    if (!Object.hasOwn(b, k) || !sameJson((a as Row)[k], (b as Row)[k])) return false;
  }
  return true;
}

/**
 * Keys whose value differs between previous and new (td's diffJSON): changed or added keys, and keys
 * dropped from new (written as NULL). `id` is never among them: a primary key is not updated.
 */
export function diffKeys(prev: Row, next: Row): string[] {
  const out: string[] = [];
  for (const k of Object.keys(next)) {
    if (k === 'id') continue;
    if (!Object.hasOwn(prev, k) || !sameJson(prev[k], next[k])) out.push(k);
  }
  for (const k of Object.keys(prev)) {
    if (k !== 'id' && !Object.hasOwn(next, k)) out.push(k);
  }
  return out;
}

function withoutId(data: Row): Row {
  const out: Row = {};
  for (const k of Object.keys(data)) if (k !== 'id') out[k] = data[k];
  return out;
}

/**
 * The effect of a change. update with previousData writes only the fields whose value differs
 * between previous and new (so edits of different fields on two devices both survive; a key dropped
 * from new is written as null); with previousData null or {} it writes every field of newData.
 */
export function effectOf(c: RuleChange): RowEffect {
  switch (c.actionType) {
    case 'create':
      if (!c.newData) throw new RuleError('create without newData');
      return { op: 'upsert', fields: withoutId(c.newData) };
    case 'update': {
      if (!c.newData) throw new RuleError('update without newData');
      const prev = c.previousData;
      if (!prev || Object.keys(prev).length === 0) return { op: 'update', fields: withoutId(c.newData) };
      const fields: Row = {};
      for (const k of diffKeys(prev, c.newData)) fields[k] = Object.hasOwn(c.newData, k) ? c.newData[k] : null;
      return { op: 'update', fields };
    }
    case 'delete':
      return { op: 'delete' };
    case 'soft_delete':
      return { op: 'soft_delete', at: c.clientTimestamp };
    case 'restore':
      return { op: 'restore', at: c.clientTimestamp };
    default:
      throw new RuleError(`unknown action type ${JSON.stringify(c.actionType)}`);
  }
}

/**
 * Apply an effect to a row held as a JSON object (the hub's state), returning the new row or
 * undefined when there is none. The hub does not know the app's schema, so the rules that depend on
 * it write their keys whatever the table: soft_delete and restore set deleted_at, restore also stamps
 * updated_at (as the agent does where the table has that column). A device whose table lacks a column
 * drops the key when it applies the row, as it drops any unknown column. Stamping updated_at only when
 * the row's JSON already had the key would miss rows created without it (an app that leaves the column
 * to its default), which a device restoring them does stamp.
 */
export function applyEffect(row: Row | undefined, effect: RowEffect): Row | undefined {
  switch (effect.op) {
    case 'upsert':
      return { ...row, ...effect.fields };
    case 'update':
      return row && { ...row, ...effect.fields };
    case 'delete':
      return undefined;
    case 'soft_delete':
      return row && { ...row, deleted_at: effect.at };
    case 'restore':
      return row && { ...row, deleted_at: null, updated_at: effect.at };
  }
}
