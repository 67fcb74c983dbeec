// Stable error codes. Clients may switch on these; never rename one.

/** Codes sent in an `error` frame. Protocol violations are followed by a close. */
export const ErrorCode = {
  /** The frame is not valid JSON text. */
  BadJson: 'bad_json',
  /** The frame is JSON but fails its schema (missing/wrong field, unknown type). */
  InvalidFrame: 'invalid_frame',
  /** A frame other than `hello` arrived before `hello`. */
  HelloRequired: 'hello_required',
  /** A second `hello` on the same connection. */
  DuplicateHello: 'duplicate_hello',
  /** `hello.protocol` is a version this hub does not speak. */
  UnsupportedProtocol: 'unsupported_protocol',
  /** The frame is larger than the hub's maxFrameBytes. */
  FrameTooLarge: 'frame_too_large',
  /** A push carries more events than maxBatchEvents. */
  BatchTooLarge: 'batch_too_large',
  /** The token's role does not allow this (a `read` token pushing). */
  Forbidden: 'forbidden',
  /** hello.afterSeq is past the project's head (client has a future cursor: wrong hub or restored backup). */
  CursorAhead: 'cursor_ahead',
  /** The connection stopped reading its stream for longer than the stall timeout. */
  SlowConsumer: 'slow_consumer',
  /** The store failed to commit; nothing of that push was stored. Safe to retry. */
  StoreUnavailable: 'store_unavailable',
  /** The connection's token was revoked while it was open. */
  TokenRevoked: 'token_revoked',
  /** The client stayed over its events/s (maxEventsPerSecond) for floodMs. */
  RateLimited: 'rate_limited',
  /** The hub is shutting down. Reconnect later. */
  ShuttingDown: 'shutting_down',
  /** An unexpected failure inside the hub. */
  Internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Reasons in an ack's `rejected` list. The rest of the batch is unaffected. */
export const RejectReason = {
  /** Already stored under the same dedup key; `serverSeq` is the original one. */
  Duplicate: 'duplicate',
  InvalidEntityId: 'invalid_entity_id',
  InvalidEntityType: 'invalid_entity_type',
  InvalidActionType: 'invalid_action_type',
  InvalidSessionId: 'invalid_session_id',
  InvalidTimestamp: 'invalid_timestamp',
  /** newData/previousData nest deeper than MAX_PAYLOAD_DEPTH. */
  InvalidPayload: 'invalid_payload',
  /** The payload's JSON is larger than the hub's maxEventBytes. */
  PayloadTooLarge: 'payload_too_large',
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];

/** WebSocket close codes the hub uses. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  PolicyViolation: 1008,
  TooBig: 1009,
  Internal: 1011,
} as const;

/** An error with a stable code, for CLI and library callers. */
export class SyncError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'SyncError';
  }
}
