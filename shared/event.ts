// The event model: one change to one row, as pushed by a device and as stored by the hub.
import { z } from 'zod';
import { MAX_ENTITY_ID_LENGTH, MAX_ID_LENGTH } from './limits.ts';

export const ACTION_TYPES = ['create', 'update', 'delete', 'soft_delete', 'restore'] as const;
export type ActionType = (typeof ACTION_TYPES)[number];

// A row as a JSON object. One type check instead of z.record's per-key walk: this runs
// for every event of every push, and JSON.parse only ever yields string keys anyway.
const row = z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), {
  message: 'expected an object',
});

export const PayloadSchema = z.object({
  schemaVersion: z.literal(1),
  newData: row.nullable(),
  previousData: row.nullable(),
});
export type Payload = z.infer<typeof PayloadSchema>;

/**
 * An event as a device pushes it. Fields are checked for shape here; semantic
 * checks (empty id, unknown action) are per-event rejections, so one bad event
 * does not cost the rest of its batch (see hub/validate-event.ts).
 */
export const PushEventSchema = z.object({
  clientActionId: z.number().int().safe(),
  sessionId: z.string().max(MAX_ID_LENGTH),
  actionType: z.string().max(MAX_ID_LENGTH),
  entityType: z.string().max(MAX_ID_LENGTH),
  entityId: z.string().max(MAX_ENTITY_ID_LENGTH),
  payload: PayloadSchema,
  clientTimestamp: z.string().max(64),
});
export type PushEvent = z.infer<typeof PushEventSchema>;

/** An event as the hub stores and streams it. */
export const EventSchema = z.object({
  serverSeq: z.number().int().positive(),
  deviceId: z.string().min(1).max(MAX_ID_LENGTH),
  sessionId: z.string().max(MAX_ID_LENGTH),
  clientActionId: z.number().int().safe(),
  actionType: z.enum(ACTION_TYPES),
  entityType: z.string().min(1).max(MAX_ID_LENGTH),
  entityId: z.string().min(1).max(MAX_ENTITY_ID_LENGTH),
  payload: PayloadSchema,
  clientTimestamp: z.string(),
  serverTimestamp: z.string(),
});
export type SyncEvent = z.infer<typeof EventSchema>;

/**
 * True when no object or array in `value` sits deeper than `max` levels. Iterative, so the check itself
 * cannot overflow the stack; a flat row costs one pass over its values.
 */
export function nestsWithin(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > max) return false;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return true;
}

/** The dedup key of an event, as a string usable in a Map. */
export function dedupKey(deviceId: string, sessionId: string, clientActionId: number): string {
  return `${deviceId}\u0000${sessionId}\u0000${clientActionId}`;
}
