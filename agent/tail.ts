// `synchub agent tail`: follow a project's log as it commits, one event per JSON line on stdout
// (for jq, grep, a log shipper). A read token is enough: it never pushes and keeps no database;
// it reconnects like the agent does and resumes after the last event it printed.
import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import { SyncError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { Link, syncUrl } from './link.ts';

export interface TailOptions {
  hub: string;
  project: string;
  token: string;
  /** Print events with serverSeq > after (0: the whole retained log, then live). */
  after: number;
  out: Writable;
  log: Logger;
  pingIntervalMs?: number;
  deadAfterMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

/** Hub answers that waiting will not fix: stop with one line instead of retrying forever. */
const FATAL_HUB_ERRORS = new Set(['cursor_ahead', 'cursor_diverged', 'forbidden', 'unsupported_protocol']);

export class Tail {
  private readonly link: Link;
  private cursor: number;
  /** Resolves when tailing ends: stop() (null) or an error no retry can fix. */
  readonly ended: Promise<SyncError | null>;
  private end!: (err: SyncError | null) => void;

  constructor(private readonly o: TailOptions) {
    this.cursor = o.after;
    this.ended = new Promise((resolve) => (this.end = resolve));
    this.link = new Link({
      url: syncUrl(o.hub, o.project),
      token: o.token,
      // Its own device id each time: a tail is a reader, not a device with state.
      deviceId: `tail-${randomUUID()}`,
      afterSeq: () => this.cursor,
      log: o.log,
      pingIntervalMs: o.pingIntervalMs,
      deadAfterMs: o.deadAfterMs,
      backoffBaseMs: o.backoffBaseMs,
      backoffCapMs: o.backoffCapMs,
    });
    this.link.on('events', (frame) => {
      let text = '';
      for (const e of frame.events) if (e.serverSeq > this.cursor) text += `${JSON.stringify(e)}\n`;
      this.cursor = Math.max(this.cursor, frame.throughSeq);
      // A slow reader of our stdout (a pipe into a busy program) slows the stream, not our memory.
      if (text && !o.out.write(text)) {
        this.link.pause();
        o.out.once('drain', () => this.link.resume());
      }
    });
    this.link.on('welcome', (w) => o.log.info({ project: o.project, headSeq: w.headSeq, after: this.cursor }, 'tailing'));
    this.link.on('hubError', (e) => {
      if (FATAL_HUB_ERRORS.has(e.code)) void this.stop(new SyncError(e.code, e.message));
    });
    this.link.on('down', ({ reason }) => {
      // A wrong or revoked token is not fixed by waiting at a terminal.
      if (/HTTP (401|403|404)\b/.test(reason)) void this.stop(new SyncError('refused', reason));
    });
  }

  start(): void {
    this.link.start();
  }

  async stop(err: SyncError | null = null): Promise<void> {
    await this.link.stop();
    this.end(err);
  }
}
