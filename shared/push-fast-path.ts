// The hub parses a push frame for every push it receives; zod's generic walk was about a tenth of
// its ingest time. This is the same check written out by hand, for the common case only: it
// accepts exactly what ClientFrame accepts for a push and returns the same value (unknown keys
// dropped, keys in the schema's order), and for anything else it returns null and zod decides and
// explains. The zod schemas stay the reference: test/shared/push-fast-path.test.ts holds the two
// to the same answers on valid, hostile and mutated frames.
import { isObject, isRow, isText } from './fast-path-checks.ts';
import { MAX_ENTITY_ID_LENGTH, MAX_ID_LENGTH } from './limits.ts';
import type { PushEvent } from './event.ts';
import type { PushFrame } from './protocol.ts';


/** A push frame as ClientFrame would parse it, or null: not a valid push (or not a push at all). */
export function fastPushFrame(json: unknown): PushFrame | null {
  if (!isObject(json) || json.type !== 'push') return null;
  const { batch, events } = json;
  if (typeof batch !== 'number' || !Number.isSafeInteger(batch) || batch < 0) return null;
  if (!Array.isArray(events) || events.length === 0) return null;
  const out: PushEvent[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = fastPushEvent(events[i]);
    if (e === null) return null;
    out[i] = e;
  }
  return { type: 'push', batch, events: out };
}

function fastPushEvent(v: unknown): PushEvent | null {
  if (!isObject(v)) return null;
  const { clientActionId, sessionId, actionType, entityType, entityId, payload, clientTimestamp } = v;
  if (typeof clientActionId !== 'number' || !Number.isSafeInteger(clientActionId)) return null;
  if (!isText(sessionId, 0, MAX_ID_LENGTH) || !isText(actionType, 0, MAX_ID_LENGTH) || !isText(entityType, 0, MAX_ID_LENGTH)) return null;
  if (!isText(entityId, 0, MAX_ENTITY_ID_LENGTH) || !isText(clientTimestamp, 0, 64)) return null;
  if (!isObject(payload) || payload.schemaVersion !== 1) return null;
  const { newData, previousData } = payload;
  if (!isRow(newData) || !isRow(previousData)) return null;
  return { clientActionId, sessionId, actionType, entityType, entityId, payload: { schemaVersion: 1, newData, previousData }, clientTimestamp };
}
