// Access tokens: `shub_<id>_<secret>`. Only a hash of the secret is stored, so a
// copy of the hub's database does not hand out working tokens.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { SyncError } from '../shared/errors.ts';
import { PROJECT_NAME_RE } from '../shared/limits.ts';
import type { EventStore, Role, TokenRecord } from './store/event-store.ts';

const TOKEN_RE = /^shub_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Create a token; the returned `token` string is the only time the secret exists in clear. */
export async function createToken(store: EventStore, project: string, role: Role): Promise<{ token: string; record: TokenRecord }> {
  if (!(await store.projectExists(project))) throw new SyncError('unknown_project', `project ${project} does not exist`);
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const record: TokenRecord = { id, project, role, hash: hashSecret(secret), createdAt: new Date().toISOString(), revokedAt: null };
  await store.insertToken(record);
  return { token: `shub_${id}_${secret}`, record };
}

/** Why a connection attempt is refused, as the HTTP status the upgrade gets. */
export type AuthResult =
  | { ok: true; token: TokenRecord }
  | { ok: false; status: 401 | 403 | 404; reason: string };

/** The token id (its public part) in an `Authorization` header value, for audit lines; null when none. */
export function tokenIdOf(header: string | undefined): string | null {
  return /^Bearer\s+shub_([0-9a-f]{16})_/i.exec(header ?? '')?.[1] ?? null;
}

/** Check an `Authorization` header value against the store for one project. */
export async function authenticate(store: EventStore, header: string | undefined, project: string): Promise<AuthResult> {
  if (!header) return { ok: false, status: 401, reason: 'missing bearer token' };
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  const parts = m && TOKEN_RE.exec(m[1]!);
  if (!parts) return { ok: false, status: 401, reason: 'malformed token' };
  const record = await store.findToken(parts[1]!);
  if (!record) return { ok: false, status: 401, reason: 'unknown token' };
  const given = Buffer.from(hashSecret(parts[2]!), 'hex');
  if (!timingSafeEqual(given, Buffer.from(record.hash, 'hex'))) return { ok: false, status: 401, reason: 'unknown token' };
  if (record.revokedAt) return { ok: false, status: 401, reason: 'token revoked' };
  if (record.project !== project) return { ok: false, status: 403, reason: 'token is not valid for this project' };
  return { ok: true, token: record };
}

export function assertProjectName(name: string): void {
  if (!PROJECT_NAME_RE.test(name)) {
    throw new SyncError('invalid_project', `invalid project name ${JSON.stringify(name)}: use letters, digits, '.', '_' or '-' (max 100)`);
  }
}
