// Per-event checks of a well-formed push: an event that fails one is rejected
// alone, the rest of its batch is kept (DESIGN guarantee 6).
import { ACTION_TYPES, nestsWithin, type PushEvent } from '../shared/event.ts';
import { RejectReason } from '../shared/errors.ts';
import { IDENTIFIER_RE, MAX_EVENT_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH } from '../shared/limits.ts';

const ACTIONS = new Set<string>(ACTION_TYPES);
const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/;

/** The reason to reject this event, or null when it is acceptable. */
export function rejectReason(e: PushEvent, maxPayloadBytes = MAX_EVENT_PAYLOAD_BYTES): RejectReason | null {
  if (e.entityId === '') return RejectReason.InvalidEntityId;
  // Entity types become table names on every device: only plain identifiers travel.
  if (!IDENTIFIER_RE.test(e.entityType)) return RejectReason.InvalidEntityType;
  if (!ACTIONS.has(e.actionType)) return RejectReason.InvalidActionType;
  if (e.sessionId === '') return RejectReason.InvalidSessionId;
  if (!ISO_RE.test(e.clientTimestamp) || Number.isNaN(Date.parse(e.clientTimestamp))) return RejectReason.InvalidTimestamp;
  // The payload itself is one level; its rows' values may nest below it.
  if (!nestsWithin(e.payload, MAX_PAYLOAD_DEPTH)) return RejectReason.InvalidPayload;
  // Checked after the depth, so that serialising it cannot overflow the stack.
  if (Buffer.byteLength(JSON.stringify(e.payload)) > maxPayloadBytes) return RejectReason.PayloadTooLarge;
  return null;
}
