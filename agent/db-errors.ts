// How the agent tells SQLite failures apart: the app holding a lock (wait and retry), a database that
// is gone or damaged (stop: nothing the agent does can fix it), and the rest (recover and carry on).

/** The SQLite result code of an error thrown by better-sqlite3 (e.g. SQLITE_BUSY_SNAPSHOT), or null. */
export function sqliteCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : null;
}

/** SQLITE_BUSY / SQLITE_LOCKED (and their extended codes): another connection holds a lock; retry later. */
export function isTransientDbError(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== null && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

/** The file is not a database any more, is damaged, or cannot be opened: only a person can fix that. */
export function isFatalDbError(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== null && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CANTOPEN'));
}

/** "SQLITE_FULL: database or disk is full": the code in front when the message lacks it. */
export function dbErrorText(err: unknown): string {
  if (err instanceof Error) {
    const code = sqliteCode(err);
    return code !== null && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
