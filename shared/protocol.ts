// Wire protocol v1: every frame, both directions, as a zod schema with its inferred type.
// Frames are JSON text messages; each is parsed with these schemas on receipt, on both sides.
import { z } from 'zod';
import { EventSchema, PushEventSchema } from './event.ts';
import { MAX_ENTITY_ID_LENGTH, MAX_ID_LENGTH } from './limits.ts';

const seq = z.number().int().nonnegative().safe();
/** A chained log digest: sha256 as 64 lowercase hex digits, or '' for the empty log (seq 0). */
const Digest = z.string().regex(/^(|[0-9a-f]{64})$/, 'expected a log digest (64 hex digits)');

// Client -> hub

export const HelloFrame = z.object({
  type: z.literal('hello'),
  protocol: z.number().int(),
  deviceId: z.string().min(1).max(MAX_ID_LENGTH),
  afterSeq: seq,
  /** The log digest the device holds for afterSeq (see digest.ts); a mismatch is `cursor_diverged`. */
  afterDigest: Digest.optional(),
  /** Ask for a snapshot instead of a replay when afterSeq is 0 or older than the retained log. */
  bootstrap: z.boolean().optional(),
});
export type HelloFrame = z.infer<typeof HelloFrame>;

export const PushFrame = z.object({
  type: z.literal('push'),
  batch: z.number().int().nonnegative().safe(),
  // The batch-size limit is checked by the hub (its own code, batch_too_large), not here.
  events: z.array(PushEventSchema).min(1),
});
export type PushFrame = z.infer<typeof PushFrame>;

export const ClientFrame = z.discriminatedUnion('type', [HelloFrame, PushFrame]);
export type ClientFrame = z.infer<typeof ClientFrame>;

// Hub -> client

export const WelcomeFrame = z.object({
  type: z.literal('welcome'),
  project: z.string(),
  deviceId: z.string(),
  headSeq: seq,
});
export type WelcomeFrame = z.infer<typeof WelcomeFrame>;

export const EventsFrame = z.object({
  type: z.literal('events'),
  events: z.array(EventSchema).min(1),
  throughSeq: seq,
  headSeq: seq,
  /** Digest of the log through throughSeq (optional only so that frames of older hubs still parse). */
  throughDigest: Digest.optional(),
});
export type EventsFrame = z.infer<typeof EventsFrame>;

/** One entity's current row in a snapshot: the hub's state after applying the log through throughSeq. */
export const SnapshotRow = z.object({
  entityType: z.string().min(1).max(MAX_ID_LENGTH),
  entityId: z.string().min(1).max(MAX_ENTITY_ID_LENGTH),
  data: z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), { message: 'expected an object' }),
});
export type SnapshotRow = z.infer<typeof SnapshotRow>;

/** A page of the state at throughSeq; the last one has done: true and the digest of the log through throughSeq. */
export const SnapshotFrame = z
  .object({
    type: z.literal('snapshot'),
    rows: z.array(SnapshotRow),
    throughSeq: seq,
    done: z.boolean(),
    throughDigest: Digest.optional(),
  })
  .refine((f) => !f.done || f.throughDigest !== undefined, { message: 'the last snapshot page must carry throughDigest', path: ['throughDigest'] });
export type SnapshotFrame = z.infer<typeof SnapshotFrame>;

export const Ack = z.object({ clientActionId: z.number().int().safe(), serverSeq: z.number().int().positive() });
export type Ack = z.infer<typeof Ack>;

export const Rejection = z.object({
  clientActionId: z.number().int().safe(),
  reason: z.string(),
  serverSeq: z.number().int().positive().optional(),
});
export type Rejection = z.infer<typeof Rejection>;

export const AckFrame = z.object({
  type: z.literal('ack'),
  batch: z.number().int().nonnegative().safe(),
  acks: z.array(Ack),
  rejected: z.array(Rejection),
});
export type AckFrame = z.infer<typeof AckFrame>;

export const ErrorFrame = z.object({
  type: z.literal('error'),
  code: z.string(),
  message: z.string(),
});
export type ErrorFrame = z.infer<typeof ErrorFrame>;

export const ServerFrame = z.discriminatedUnion('type', [WelcomeFrame, EventsFrame, SnapshotFrame, AckFrame, ErrorFrame]);
export type ServerFrame = z.infer<typeof ServerFrame>;

/** Result of parsing one text message: the frame, or why it is not one. */
export type Parsed<T> = { ok: true; frame: T } | { ok: false; code: 'bad_json' | 'invalid_frame'; message: string };

/**
 * Parse a message with a schema; never throws. `fast`, when given, is tried first: a hand-written
 * check that returns what the schema would for the common case, or null to let the schema decide.
 */
export function parseFrame<T>(schema: z.ZodType<T>, text: string, fast?: (json: unknown) => T | null): Parsed<T> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, code: 'bad_json', message: 'frame is not valid JSON' };
  }
  const quick = fast?.(json);
  if (quick) return { ok: true, frame: quick };
  const result = schema.safeParse(json);
  if (!result.success) {
    return { ok: false, code: 'invalid_frame', message: describeIssue(result.error) };
  }
  return { ok: true, frame: result.data };
}

/** One short line naming the first problem, e.g. `events.0.entityId: expected string`. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid frame';
  const path = issue.path.length ? issue.path.join('.') : 'frame';
  return `${path}: ${issue.message}`;
}

/** The path every project's stream lives at. */
export function syncPath(project: string): string {
  return `/v1/projects/${encodeURIComponent(project)}/sync`;
}
