// The agent parses every events frame the hub streams; on a 100,000-event catch-up zod's generic
// walk over each event cost about as much as JSON.parse itself. This is the same check written out
// by hand, for the common case only: it accepts exactly what ServerFrame accepts for an events
// frame and returns the same value (unknown keys dropped, keys in the schema's order, rows passed
// through as they are), and for anything else it returns null and zod decides and explains. The
// zod schemas stay the reference: test/shared/events-fast-path.test.ts holds the two to the same
// answers on valid and mutated frames. (shared/push-fast-path.ts is its twin for the hub's pushes.)
import { ACTION_TYPES, type SyncEvent } from './event.ts';
import { isObject, isRow, isText } from './fast-path-checks.ts';
import { MAX_ENTITY_ID_LENGTH, MAX_ID_LENGTH } from './limits.ts';
import type { EventsFrame } from './protocol.ts';

const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const ACTIONS: ReadonlySet<unknown> = new Set(ACTION_TYPES);
/** The Digest schema of protocol.ts: '' (the empty log) or 64 lowercase hex digits. */
const DIGEST_RE = /^(|[0-9a-f]{64})$/;

/** An events frame as ServerFrame would parse it, or null: not a valid events frame (or not one at all). */
export function fastEventsFrame(json: unknown): EventsFrame | null {
  if (!isObject(json) || json.type !== 'events') return null;
  const { events, throughSeq, headSeq, throughDigest } = json;
  if (!Array.isArray(events) || events.length === 0 || !isSeq(throughSeq) || !isSeq(headSeq)) return null;
  if (throughDigest !== undefined && (typeof throughDigest !== 'string' || !DIGEST_RE.test(throughDigest))) return null;
  const out: SyncEvent[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = fastEvent(events[i]);
    if (e === null) return null;
    out[i] = e;
  }
  // zod leaves an absent optional key out of its value, and keeps one that is there (even undefined).
  return Object.hasOwn(json, 'throughDigest')
    ? { type: 'events', events: out, throughSeq, headSeq, throughDigest: throughDigest as string | undefined }
    : { type: 'events', events: out, throughSeq, headSeq };
}

function fastEvent(v: unknown): SyncEvent | null {
  if (!isObject(v)) return null;
  const { serverSeq, deviceId, sessionId, clientActionId, actionType, entityType, entityId, payload, clientTimestamp, serverTimestamp } = v;
  if (!isSeq(serverSeq) || serverSeq === 0) return null;
  if (typeof clientActionId !== 'number' || !Number.isSafeInteger(clientActionId)) return null;
  if (!isText(deviceId, 1, MAX_ID_LENGTH) || !isText(sessionId, 0, MAX_ID_LENGTH) || !isText(entityType, 1, MAX_ID_LENGTH)) return null;
  if (!isText(entityId, 1, MAX_ENTITY_ID_LENGTH) || typeof clientTimestamp !== 'string' || typeof serverTimestamp !== 'string') return null;
  if (!ACTIONS.has(actionType)) return null;
  if (!isObject(payload) || payload.schemaVersion !== 1) return null;
  const { newData, previousData } = payload;
  if (!isRow(newData) || !isRow(previousData)) return null;
  return {
    serverSeq,
    deviceId,
    sessionId,
    clientActionId,
    actionType: actionType as SyncEvent['actionType'],
    entityType,
    entityId,
    payload: { schemaVersion: 1, newData, previousData },
    clientTimestamp,
    serverTimestamp,
  };
}
