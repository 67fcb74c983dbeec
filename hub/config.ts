// Every hub option, with its default, in one place.
import { z } from 'zod';
import { MAX_BATCH_EVENTS, MAX_FRAME_BYTES, PING_INTERVAL_MS } from '../shared/limits.ts';

export const HubOptionsSchema = z.object({
  port: z.number().int().min(0).max(65535).default(8787),
  host: z.string().min(1).default('127.0.0.1'),
  /** Largest accepted frame; bigger ones get `frame_too_large` and a close. */
  maxFrameBytes: z.number().int().positive().default(MAX_FRAME_BYTES),
  maxBatchEvents: z.number().int().positive().default(MAX_BATCH_EVENTS),
  /** Events per backlog frame read from the store. */
  pageEvents: z.number().int().positive().default(1000),
  /**
   * Stop sending to a socket while this much is queued in it: a reader that
   * stops reading pins at most this (plus one frame), never the whole log.
   */
  highWaterBytes: z.number().int().positive().default(1024 * 1024),
  /** A socket stuck above the high-water mark this long is closed (slow_consumer). */
  stallTimeoutMs: z.number().int().positive().default(60_000),
  helloTimeoutMs: z.number().int().positive().default(10_000),
  pingIntervalMs: z.number().int().positive().default(PING_INTERVAL_MS),
  /** Recent events kept in memory per project, so readers near the head never touch the store. */
  tailEvents: z.number().int().positive().default(10_000),
  /** Upper bound of events in one group commit, so one transaction never holds the writer long. */
  commitMaxEvents: z.number().int().positive().default(20_000),
});
export type HubOptions = z.infer<typeof HubOptionsSchema>;
export type HubOptionsInput = z.input<typeof HubOptionsSchema>;
