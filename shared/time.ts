/** Now, as the ISO-8601 UTC string used in every timestamp field. */
export function nowIso(): string {
  return new Date().toISOString();
}

/**
 * Read a timestamp as apps write them (ISO-8601, SQLite's `YYYY-MM-DD HH:MM:SS`,
 * td's Go formats) and return it as ISO-8601 UTC, or null when it cannot be read.
 */
export function toIso(value: string): string | null {
  // Go appends the monotonic clock reading (" m=+0.000123") to time.String(); it is not a time.
  let text = value.trim().replace(/ m=[+-]\d+(\.\d+)?$/, '');
  if (text === '') return null;
  // Go's time.String(): "2006-01-02 15:04:05.999 -0700 MST" -> drop the zone name.
  const go = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?) ([+-]\d{4})(?: \S+)?$/.exec(text);
  if (go) text = `${go[1]}T${go[2]}${go[3]!.slice(0, 3)}:${go[3]!.slice(3)}`;
  else if (/^\d{4}-\d\d-\d\d \d/.test(text)) text = text.replace(' ', 'T');
  // No zone at all: SQLite's CURRENT_TIMESTAMP is UTC.
  if (/T\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(text)) text += 'Z';
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}
