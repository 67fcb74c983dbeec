// The storage boundary of the hub. The core (commit, fan-out, connections) only
// knows this interface, so another store (PostgreSQL) can sit behind it.
import type { PushEvent } from '../../shared/event.ts';

/** An event as the store hands it out: its seq, its JSON text (serialised once at commit) and the log digest through it. */
export interface StoredEvent {
  seq: number;
  json: string;
  /**
   * digest(seq) = sha256(digest(seq-1) + json), see shared/digest.ts. Absent from a store without the
   * history features (see EventStore.logInfo): its frames then carry no throughDigest.
   */
  digest?: string;
}

/** Where a project's log stands: its head, and the point before which compaction dropped the events. */
export interface LogInfo {
  headSeq: number;
  headDigest: string;
  /** Events up to here were compacted away (0: the whole log is kept); the state still includes them. */
  baseSeq: number;
  baseDigest: string;
}

/** One entity's current row, ready to send: `{"entityType","entityId","data"}` as JSON text. */
export interface SnapshotRowText {
  json: string;
}

/**
 * The state of every live entity of a project at one seq, read page by page from one consistent
 * read (pushes keep committing meanwhile). close() must be called, also when abandoned.
 */
export interface SnapshotReader {
  readonly throughSeq: number;
  readonly throughDigest: string;
  /** The next rows, about maxBytes of JSON (at least one row while any is left); done once none is left. */
  next(maxBytes: number): Promise<{ rows: SnapshotRowText[]; done: boolean }>;
  close(): void;
}

/** One push, already validated, to be committed together with others. */
export interface AppendGroup {
  project: string;
  deviceId: string;
  events: PushEvent[];
  /** The events' payloads as JSON text, when the caller has it already (validation made it); else serialised here. */
  payloadJson?: string[];
}

/** Per event of a group: stored now with a new seq, or already stored under its dedup key. */
export type AppendOutcome = { stored: true; seq: number; json: string; digest?: string } | { stored: false; seq: number };

export type Role = 'read' | 'write' | 'admin';

export interface TokenRecord {
  id: string;
  project: string;
  role: Role;
  hash: string;
  createdAt: string;
  revokedAt: string | null;
}

/** What a store shared by several hub nodes tells each node. */
export interface CommitWatcher {
  /** Some node committed: the project's head is now `head` (events up to it are readable). */
  onCommit(project: string, head: number): void;
  /** Commits may have gone unheard (the notification link was down): re-read every head. */
  onResync(): void;
}

export interface EventStore {
  /**
   * Commit every group in one transaction: seqs are assigned per project in
   * array order, duplicates (same dedup key, compacted events included) get their
   * original seq. In the same transaction each new event gets its chained digest
   * (from the project's head digest) and the project's entity state is updated with
   * shared/apply-rules.ts. Resolves only once the transaction is durable; rejects
   * having stored nothing.
   */
  append(groups: AppendGroup[], serverTimestamp: string): Promise<AppendOutcome[][]>;
  /** Events with seq > afterSeq in order, at most `limit` of them. */
  readAfter(project: string, afterSeq: number, limit: number): Promise<StoredEvent[]>;
  /** The last committed seq of a project (0 for none). */
  headSeq(project: string): Promise<number>;

  // History (docs/protocol.md "History"). A store implements all of these or none: without them the
  // hub still syncs, but sends no digests (no divergence check), answers bootstrap with a replay, and
  // cannot compact or back up. SQLite has them; PostgreSQL does not yet. To add them to a store:
  // `append` stores each new event's digest with it (StoredEvent.digest, chained from a per-project
  // head digest kept with the head) and applies it to a per-project entity state with
  // shared/apply-rules.ts (entity type normalised with entityTable), all in the commit transaction;
  // dedup also consults the keys of compacted events.

  /** Head and compaction point of a project's log, with their digests. */
  logInfo?(project: string): Promise<LogInfo>;
  /** The log digest through `seq` ('' for 0); null when seq was compacted away or is past the head. */
  digestAt?(project: string, seq: number): Promise<string | null>;
  /** Open a consistent read of the project's state at its current head (see SnapshotReader). */
  openSnapshot?(project: string): Promise<SnapshotReader>;
  /**
   * Drop the events older than the newest `keepEvents` (the state and the dedup keys stay), in steps
   * that never hold the writer long. Returns the number of events dropped and the new compaction point.
   */
  compact?(project: string, keepEvents: number): Promise<{ dropped: number; baseSeq: number }>;
  /** Write a consistent, self-contained copy of the whole store to `toPath` (must not exist). */
  backup?(toPath: string): Promise<void>;

  createProject(name: string): Promise<void>;
  projectExists(name: string): Promise<boolean>;
  listProjects(): Promise<{ name: string; headSeq: number; createdAt: string }[]>;

  insertToken(token: TokenRecord): Promise<void>;
  findToken(id: string): Promise<TokenRecord | undefined>;
  listTokens(project: string): Promise<TokenRecord[]>;
  /** Marks the token revoked; false when there is no such token. */
  revokeToken(id: string, at: string): Promise<boolean>;
  /** Of these token ids, the ones that are revoked or no longer exist (open sockets of those are closed). */
  revokedTokens(ids: string[]): Promise<string[]>;

  /**
   * A device id belongs to the token that first used it in a project: binds it when it is new, or
   * when the token holding it was revoked (a device given a new token keeps its id). True when the
   * device id is (now) bound to `tokenId`, false when another live token holds it.
   */
  bindDevice(project: string, deviceId: string, tokenId: string, at: string): Promise<boolean>;

  /**
   * Stores that several hub nodes share (PostgreSQL) report commits made by any node here.
   * Absent for a store only this process writes (SQLite): its commits are all local.
   */
  watchCommits?(watcher: CommitWatcher): void;
  /** False while the store cannot be reached (readyz answers 503). Absent: always ready. */
  isReady?(): boolean;
  /**
   * Rejects when the store could not take a commit now (its file gone, its write lock held by
   * another process); answers at once, without waiting for a lock. For /readyz. Absent: as isReady.
   */
  ping?(): Promise<void>;

  close(): Promise<void>;
}
