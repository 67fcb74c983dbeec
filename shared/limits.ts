// Protocol-wide limits and timings, each in one place with why it exists.

export const PROTOCOL_VERSION = 1;

/** A frame above this is refused: bounds the memory one message can pin (a client could otherwise send 100 MB). */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** Events per push: bounds the time one commit holds the single writer. */
export const MAX_BATCH_EVENTS = 1000;

/** Identifier-like fields (device, session, project, entity type) stay short: they are index keys. */
export const MAX_ID_LENGTH = 200;

/** Entity ids are app data but still index keys. */
export const MAX_ENTITY_ID_LENGTH = 1000;

/**
 * How deep a row's JSON may nest. Rows are flat records; deeper nesting is an attack: 4,000 levels
 * parse fine but overflow the stack when serialised again (at the hub's commit, or a device's apply).
 */
export const MAX_PAYLOAD_DEPTH = 64;

/**
 * Default largest payload of one event, in bytes of its JSON (the hub's maxEventBytes): with the
 * in-memory tail bounded in bytes too, a client cannot make the hub hold gigabytes.
 */
export const MAX_EVENT_PAYLOAD_BYTES = 1024 * 1024;

/** Both ends ping at this interval; a peer that misses two in a row is dead. */
export const PING_INTERVAL_MS = 15_000;

/** Project names appear in URLs and file paths: keep them to a safe alphabet. */
export const PROJECT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** SQL identifiers (entity types, column names) the agent will ever interpolate. */
export const IDENTIFIER_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
