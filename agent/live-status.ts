// The running agent's live state, in a small JSON file beside the app DB (`<db>-synchub-agent.json`).
//
// Why not in sync_state: while the app holds the database's write lock, the agent cannot write to the
// database at all, and that is exactly when `agent status` must be able to say "running, waiting for
// the app's lock" rather than "not running" (a stale heartbeat). The file is rewritten whole (temp
// file + rename, so a reader never sees half of it) on every state change and every heartbeat.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { z } from 'zod';

export const LiveStateSchema = z.object({
  pid: z.number().int(),
  /** connected | disconnected | stopped (as sync_state.status). */
  status: z.string(),
  /** When the agent last wrote this file (ISO-8601): a heartbeat. */
  heartbeatAt: z.string(),
  /** When the agent started waiting for a write lock it has not got yet (past the report threshold), or null. */
  lockWaitSince: z.string().nullable(),
});
export type LiveState = z.infer<typeof LiveStateSchema>;

export function liveStatePath(dbPath: string): string {
  return `${dbPath}-synchub-agent.json`;
}

/** Write the state; returns the error instead of throwing (a status file must never stop sync). */
export function writeLiveState(dbPath: string, state: LiveState): Error | null {
  const path = liveStatePath(dbPath);
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${JSON.stringify(state)}\n`);
    renameSync(tmp, path);
    return null;
  } catch (err) {
    return err as Error;
  }
}

/** The state last written for this DB, or null (no agent has run since this was added, or the file is unreadable). */
export function readLiveState(dbPath: string): LiveState | null {
  let text: string;
  try {
    text = readFileSync(liveStatePath(dbPath), 'utf8');
  } catch {
    return null;
  }
  try {
    const r = LiveStateSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
