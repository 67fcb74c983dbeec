// The chained log digest: digest(0) = '' and digest(N) = sha256(digest(N-1) + event N's JSON text),
// as 64 hex digits. Event N's JSON is the text the hub stored at commit and streams unchanged, so a
// device never recomputes it: it keeps the digest the hub sent with its cursor, and a hub whose log
// at that seq is another log (restored from a backup, reset) cannot produce the same value.
import * as crypto from 'node:crypto';

/** The digest of the empty log (seq 0). */
export const EMPTY_DIGEST = '';

/** One-shot hashing (Node >= 20.12; absent before): about twice as fast as a Hash object per event. */
const oneShot = typeof crypto.hash === 'function' ? crypto.hash : null;

/** digest(N) from digest(N-1) and event N's stored JSON text. */
export function chainDigest(previous: string, eventJson: string): string {
  // The same bytes either way: UTF-8 of the two texts one after the other.
  return oneShot ? oneShot('sha256', previous + eventJson, 'hex') : crypto.createHash('sha256').update(previous).update(eventJson).digest('hex');
}
