// Every hub option, with its default, in one place.
import { z } from 'zod';
import { MAX_BATCH_EVENTS, MAX_EVENT_PAYLOAD_BYTES, MAX_FRAME_BYTES, PING_INTERVAL_MS } from '../shared/limits.ts';

export const HubOptionsSchema = z.object({
  port: z.number().int().min(0).max(65535).default(8787),
  host: z.string().min(1).default('127.0.0.1'),
  /** Largest accepted frame; bigger ones get `frame_too_large` and a close. */
  maxFrameBytes: z.number().int().positive().default(MAX_FRAME_BYTES),
  maxBatchEvents: z.number().int().positive().default(MAX_BATCH_EVENTS),
  /** Largest payload of one event (bytes of its JSON); a bigger event is rejected alone (`payload_too_large`). */
  maxEventBytes: z.number().int().positive().default(MAX_EVENT_PAYLOAD_BYTES),
  /**
   * Most events in one frame. Frames are also sized in bytes to about a second of
   * the device's measured reading (8 KiB up to maxFrameBytes; see flow-control.ts).
   */
  pageEvents: z.number().int().positive().default(1000),
  /**
   * Stop sending to a socket while this much is queued in it: a bound on the
   * memory one socket can pin. Slow readers are held well below it, to about
   * two seconds of their reading in flight.
   */
  highWaterBytes: z.number().int().positive().default(1024 * 1024),
  /**
   * A device that has unread bytes waiting and reads nothing of them for this
   * long is closed (slow_consumer). Reading at any pace, however slow, is progress.
   */
  stallTimeoutMs: z.number().int().positive().default(60_000),
  helloTimeoutMs: z.number().int().positive().default(10_000),
  pingIntervalMs: z.number().int().positive().default(PING_INTERVAL_MS),
  /** Recent events kept in memory per project, so readers near the head never touch the store. */
  tailEvents: z.number().int().positive().default(10_000),
  /**
   * Keep only the newest N events of each project's log (--retain-events); older ones are compacted
   * away every retainEveryMs, keeping the state (snapshots) and the dedup keys. Unset: keep everything.
   */
  retainEvents: z.number().int().nonnegative().optional(),
  retainEveryMs: z.number().int().positive().default(60_000),
  /** ...and at most this many bytes of them (the oldest go first): memory is bounded in bytes, not only in events. */
  tailBytes: z.number().int().positive().default(16 * 1024 * 1024),
  /**
   * Events per second one connection may push (a token bucket holding a second of them, at least
   * one full push). Over it the hub stops reading that socket until the bucket refills: nothing is
   * dropped and other devices are not slowed.
   */
  maxEventsPerSecond: z.number().int().positive().default(20_000),
  /** A client over its rate for this long without a pause is closed (`rate_limited`). */
  floodMs: z.number().int().positive().default(60_000),
  /**
   * Browser origins allowed to open a socket (exact `Origin` values); others get 403. Null: any
   * origin, since the token is the credential. Clients that send no Origin (agents) are unaffected.
   */
  allowedOrigins: z.array(z.string().min(1)).nullable().default(null),
  /** Serve wss:// directly with this certificate and key (PEM files); null: plain ws:// (e.g. behind a TLS proxy). */
  tls: z.object({ certFile: z.string().min(1), keyFile: z.string().min(1) }).nullable().default(null),
  /** Open sockets in all; an upgrade past it gets HTTP 429 before a socket exists. */
  maxConnections: z.number().int().positive().default(50_000),
  /** Open sockets per token (a token shared by a household's devices is fine; a leaked one cannot take the hub). */
  maxConnectionsPerToken: z.number().int().positive().default(1_000),
  /** Failed authentications (401/403) per remote address per minute; past it, upgrades from there get 429 (generous: devices behind one NAT share an address). */
  maxAuthFailuresPerMinute: z.number().int().positive().default(100),
  /** How often the tokens of open sockets are checked for revocation (their sockets are then closed). */
  revocationCheckMs: z.number().int().positive().default(500),
  /** Upper bound of events in one group commit, so one transaction never holds the writer long. */
  commitMaxEvents: z.number().int().positive().default(20_000),
  /**
   * The admin listener (health, readiness, metrics, status, dashboard): never on the public port,
   * and off (null) unless asked for, so an embedded hub or a test hub opens nothing extra.
   * 0 picks a free port. The CLI asks for 9787.
   */
  adminPort: z.number().int().min(0).max(65535).nullable().default(null),
  /** Loopback by default: the admin listener has no auth. */
  adminHost: z.string().min(1).default('127.0.0.1'),
  /**
   * When adminPort is taken: false (an explicit port) fails listen(); true (the CLI's default
   * port, taken by another hub on the same machine) logs a warning and serves without it.
   */
  adminPortOptional: z.boolean().default(false),
  /** How often the admin listener samples counters for events/s; 300 samples are kept (5 minutes at 1 s). */
  statusSampleMs: z.number().int().positive().default(1000),
});
export type HubOptions = z.infer<typeof HubOptionsSchema>;
export type HubOptionsInput = z.input<typeof HubOptionsSchema>;
