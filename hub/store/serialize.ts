// An event's JSON text, built once at commit and then sent as-is to every reader.
import type { PushEvent } from '../../shared/event.ts';

const str = JSON.stringify;

/** What every event's JSON starts with; the seq follows, then serializeEventRest(). */
export const EVENT_JSON_HEAD = '{"serverSeq":';

/**
 * Built by concatenation rather than JSON.stringify of a fresh object: this runs for
 * every ingested event, and the intermediate object showed up in ingest profiles.
 * Key order matches the event table in docs/protocol.md.
 */
export function serializeEvent(seq: number, deviceId: string, serverTimestamp: string, e: PushEvent, payloadJson?: string): string {
  return EVENT_JSON_HEAD + seq + serializeEventRest(deviceId, serverTimestamp, e, payloadJson);
}

/**
 * The event's JSON after its seq. The PostgreSQL store sends this before the seq is known and
 * the database prepends EVENT_JSON_HEAD and the seq it assigns (the same text as serializeEvent).
 */
export function serializeEventRest(deviceId: string, serverTimestamp: string, e: PushEvent, payloadJson = str(e.payload)): string {
  return (
    `,"deviceId":${str(deviceId)},"sessionId":${str(e.sessionId)},` +
    `"clientActionId":${e.clientActionId},"actionType":${str(e.actionType)},"entityType":${str(e.entityType)},` +
    `"entityId":${str(e.entityId)},"payload":${payloadJson},"clientTimestamp":${str(e.clientTimestamp)},` +
    `"serverTimestamp":${str(serverTimestamp)}}`
  );
}
