// Per-event checks of a well-formed push: an event that fails one is rejected
// alone, the rest of its batch is kept (DESIGN guarantee 6).
import { ACTION_TYPES, nestsWithin, type PushEvent } from '../shared/event.ts';
import { RejectReason } from '../shared/errors.ts';
import { IDENTIFIER_RE, MAX_EVENT_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH } from '../shared/limits.ts';

const ACTIONS = new Set<string>(ACTION_TYPES);
const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/;

/** An acceptable event comes with its payload's JSON text, which the store reuses (it can be a megabyte). */
export type EventCheck = { ok: true; payloadJson: string } | { ok: false; reason: RejectReason };

/** Whether this event is acceptable, and if not, why. */
export function checkEvent(e: PushEvent, maxPayloadBytes = MAX_EVENT_PAYLOAD_BYTES): EventCheck {
  const reason = cheapReason(e);
  if (reason) return { ok: false, reason };
  // Serialised after the depth check, so that it cannot overflow the stack. UTF-8 takes at most
  // 3 bytes per UTF-16 unit: only a long text needs its bytes counted.
  const payloadJson = JSON.stringify(e.payload);
  if (payloadJson.length * 3 > maxPayloadBytes && Buffer.byteLength(payloadJson) > maxPayloadBytes) return { ok: false, reason: RejectReason.PayloadTooLarge };
  return { ok: true, payloadJson };
}

function cheapReason(e: PushEvent): RejectReason | null {
  if (e.entityId === '') return RejectReason.InvalidEntityId;
  // Entity types become table names on every device: only plain identifiers travel.
  if (!IDENTIFIER_RE.test(e.entityType)) return RejectReason.InvalidEntityType;
  if (!ACTIONS.has(e.actionType)) return RejectReason.InvalidActionType;
  if (e.sessionId === '') return RejectReason.InvalidSessionId;
  if (!ISO_RE.test(e.clientTimestamp) || Number.isNaN(Date.parse(e.clientTimestamp))) return RejectReason.InvalidTimestamp;
  // The payload itself is one level; its rows' values may nest below it.
  if (!nestsWithin(e.payload, MAX_PAYLOAD_DEPTH)) return RejectReason.InvalidPayload;
  return null;
}
