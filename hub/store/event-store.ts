// The storage boundary of the hub. The core (commit, fan-out, connections) only
// knows this interface, so another store (PostgreSQL) can sit behind it.
import type { PushEvent } from '../../shared/event.ts';

/** An event as the store hands it out: its seq and its JSON text, serialised once at commit. */
export interface StoredEvent {
  seq: number;
  json: string;
}

/** One push, already validated, to be committed together with others. */
export interface AppendGroup {
  project: string;
  deviceId: string;
  events: PushEvent[];
}

/** Per event of a group: stored now with a new seq, or already stored under its dedup key. */
export type AppendOutcome = { stored: true; seq: number; json: string } | { stored: false; seq: number };

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
   * array order, duplicates (same dedup key) get their original seq. Resolves
   * only once the transaction is durable; rejects having stored nothing.
   */
  append(groups: AppendGroup[], serverTimestamp: string): Promise<AppendOutcome[][]>;
  /** Events with seq > afterSeq in order, at most `limit` of them. */
  readAfter(project: string, afterSeq: number, limit: number): Promise<StoredEvent[]>;
  /** The last committed seq of a project (0 for none). */
  headSeq(project: string): Promise<number>;

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
