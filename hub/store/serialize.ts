// An event's JSON text, built once at commit and then sent as-is to every reader.
import type { PushEvent } from '../../shared/event.ts';

export function serializeEvent(seq: number, deviceId: string, serverTimestamp: string, e: PushEvent): string {
  // Key order matches the event table in docs/protocol.md.
  return JSON.stringify({
    serverSeq: seq,
    deviceId,
    sessionId: e.sessionId,
    clientActionId: e.clientActionId,
    actionType: e.actionType,
    entityType: e.entityType,
    entityId: e.entityId,
    payload: e.payload,
    clientTimestamp: e.clientTimestamp,
    serverTimestamp,
  });
}
