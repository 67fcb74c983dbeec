// The chained log digest: digest(0) = '' and digest(N) = sha256(digest(N-1) + event N's JSON text),
// as 64 hex digits. Event N's JSON is the text the hub stored at commit and streams unchanged, so a
// device never recomputes it: it keeps the digest the hub sent with its cursor, and a hub whose log
// at that seq is another log (restored from a backup, reset) cannot produce the same value.
import { createHash } from 'node:crypto';

/** The digest of the empty log (seq 0). */
export const EMPTY_DIGEST = '';

/** digest(N) from digest(N-1) and event N's stored JSON text. */
export function chainDigest(previous: string, eventJson: string): string {
  return createHash('sha256').update(previous).update(eventJson).digest('hex');
}
