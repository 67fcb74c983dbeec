// Structured logging: JSON lines (pino) in production, one place to configure it.
import { pino, type Logger } from 'pino';

export type { Logger };

/** A logger writing JSON lines to stderr; level from SYNCHUB_LOG_LEVEL (default info). */
export function createLogger(name: string, level = process.env.SYNCHUB_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything, for libraries used without one. */
export const silentLogger: Logger = pino({ level: 'silent' });
