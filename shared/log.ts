// Structured logging (pino), one place to configure it. Two reporters: JSON lines for
// machines (stderr is a file, a pipe, journald) and short readable lines for a person
// at a terminal, so a newcomer's first screen is not raw JSON.
import { pino, type DestinationStream, type Logger } from 'pino';
import { z } from 'zod';

export type { Logger };

export const LogFormat = { Json: 'json', Pretty: 'pretty' } as const;
export type LogFormat = (typeof LogFormat)[keyof typeof LogFormat];

/** JSON lines unless stderr is a terminal. */
export function defaultLogFormat(): LogFormat {
  return process.stderr.isTTY ? LogFormat.Pretty : LogFormat.Json;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Fields every line has; the readable form shows them in its own way or not at all. */
const FRAME_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);

/** One pino JSON line as `12:00:01 WARN  closing connection  project=p1 code=slow_consumer`. */
export function prettyLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = new Date(typeof rec.time === 'number' ? rec.time : Date.now()).toTimeString().slice(0, 8);
  const level = (LEVELS[rec.level as number] ?? String(rec.level)).padEnd(5);
  const fields = Object.entries(rec)
    .filter(([k]) => !FRAME_FIELDS.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${time} ${level} ${String(rec.msg ?? '')}${fields ? `  ${fields}` : ''}\n`;
}

/**
 * A destination that rewrites each JSON line as a readable one on stderr. Each starts by clearing
 * the terminal's current line: a progress line drawn there (agent/progress.ts) is replaced, not
 * run into, and is drawn again below on its next tick.
 */
function prettyDestination(): DestinationStream {
  return { write: (line: string) => void process.stderr.write(`\r\x1b[K${prettyLine(line)}`) };
}

/**
 * A logger on stderr; level from SYNCHUB_LOG_LEVEL (default info), format from the terminal
 * (JSON lines when stderr is not a TTY).
 */
export function createLogger(name: string, level: string = process.env.SYNCHUB_LOG_LEVEL ?? 'info', format = defaultLogFormat()): Logger {
  const dest = format === LogFormat.Pretty ? prettyDestination() : pino.destination({ fd: 2, sync: false });
  return pino({ name, level, base: { pid: process.pid } }, dest);
}

/** `--log-level` / SYNCHUB_LOG_LEVEL. */
export const logLevelFlag = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

/** A logger that drops everything, for libraries used without one. */
export const silentLogger: Logger = pino({ level: 'silent' });
