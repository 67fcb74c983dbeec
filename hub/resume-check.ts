// Where a device's stream starts, decided once per hello: resume from its cursor, send a snapshot
// first, or refuse with a code that tells the device what to do. This is where a restored or
// compacted hub is noticed, before a single event is sent from a cursor that means another log.
import { ErrorCode } from '../shared/errors.ts';
import type { HelloFrame } from '../shared/protocol.ts';
import type { EventStore } from './store/event-store.ts';

export type ResumeDecision =
  | { kind: 'stream' }
  | { kind: 'snapshot' }
  | { kind: 'refuse'; code: string; message: string };

export async function decideResume(store: EventStore, project: string, hello: HelloFrame, head: number): Promise<ResumeDecision> {
  const { afterSeq, afterDigest, bootstrap } = hello;
  if (afterSeq > head) {
    return {
      kind: 'refuse',
      code: ErrorCode.CursorAhead,
      message: `afterSeq ${afterSeq} is past the project's head ${head}: this hub was restored from an older backup, or the device synced with another hub`,
    };
  }
  // A store without history features keeps the whole log and no digests: a replay, as before.
  if (!store.logInfo || !store.digestAt || !store.openSnapshot) return { kind: 'stream' };
  const info = await store.logInfo(project);
  if (afterSeq < info.baseSeq) {
    // The events after the cursor are partly compacted away: only a snapshot can bring the device up.
    if (bootstrap) return { kind: 'snapshot' };
    return {
      kind: 'refuse',
      code: ErrorCode.CursorTooOld,
      message: `the log up to seq ${info.baseSeq} was compacted; afterSeq ${afterSeq} is older: reconnect with bootstrap: true`,
    };
  }
  if (afterDigest !== undefined && afterSeq > 0) {
    const digest = await store.digestAt(project, afterSeq);
    if (digest !== afterDigest) {
      return {
        kind: 'refuse',
        code: ErrorCode.CursorDiverged,
        message: `the hub's log at seq ${afterSeq} is not the one this device synced (restored from a backup or reset): bootstrap again and re-push`,
      };
    }
  }
  if (afterSeq === 0 && bootstrap) return { kind: 'snapshot' };
  return { kind: 'stream' };
}
