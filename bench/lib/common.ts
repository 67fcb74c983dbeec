// Shared by the orchestrator, the server children and the load workers:
// clock, payload markers, event bodies, HDR histograms, child processes over IPC.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import * as hdr from 'hdr-histogram-js';

export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const REPO_ROOT = dirname(BENCH_DIR);

export type System = 'synchub' | 'synchub-pg' | 'synchub-pg2' | 'wsfloor' | 'durablefloor' | 'sqlitefloor' | 'hocuspocus' | 'ywebsocket' | 'logux';
export const SYSTEMS: System[] = ['synchub', 'synchub-pg', 'synchub-pg2', 'wsfloor', 'durablefloor', 'sqlitefloor', 'hocuspocus', 'ywebsocket', 'logux'];
/** Systems that run as a network server (the SQLite floor is an in-process loop). */
export type ServerSystem = Exclude<System, 'sqlitefloor'>;

/** The floors that speak synchub's frames on a bare ws server (no project path, no auth). */
export function isWsFloor(s: System): boolean {
  return s === 'wsfloor' || s === 'durablefloor';
}

/** synchub itself on each of its stores: the real hub, spoken to over the real protocol. */
export type SynchubSystem = 'synchub' | 'synchub-pg' | 'synchub-pg2';
export function isSynchub(s: System): s is SynchubSystem {
  return s === 'synchub' || s === 'synchub-pg' || s === 'synchub-pg2';
}
/** synchub on PostgreSQL: `synchub-pg` one hub node, `synchub-pg2` two hub nodes on one database. */
export function onPostgres(s: System): boolean {
  return s === 'synchub-pg' || s === 'synchub-pg2';
}
/** Hub child processes a synchub system runs (each its own node, all on one store). */
export const HUB_NODES: Record<SynchubSystem, number> = { synchub: 1, 'synchub-pg': 1, 'synchub-pg2': 2 };

// ---------------------------------------------------------------- clock

/**
 * Microseconds on CLOCK_MONOTONIC (process.hrtime). The same clock in every
 * process on the machine, so a timestamp written by one process can be
 * compared with the receive time in another.
 */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------- markers

/**
 * A marker `@@<sender>.<µs>;` travels inside each event's payload. Receivers find it
 * in the raw bytes (JSON text, Yjs binary update or Logux JSON alike) without
 * decoding the message, so every system's receiver does the same small work.
 */
export function mark(sender: number, us = nowUs()): string {
  return `@@${sender}.${us};`;
}

const AT = 64; // '@'
const DOT = 46;
const SEMI = 59;

/** Calls fn(sender, sentUs) for every marker in buf. */
export function scanMarks(buf: Buffer, fn: (sender: number, sentUs: number) => void): number {
  let found = 0;
  let i = buf.indexOf('@@');
  while (i >= 0) {
    let j = i + 2;
    let sender = 0;
    let c = buf[j];
    while (c !== undefined && c >= 48 && c <= 57) {
      sender = sender * 10 + (c - 48);
      c = buf[++j];
    }
    if (c === DOT) {
      let us = 0;
      c = buf[++j];
      while (c !== undefined && c >= 48 && c <= 57) {
        us = us * 10 + (c - 48);
        c = buf[++j];
      }
      if (c === SEMI) {
        fn(sender, us);
        found++;
      }
    }
    i = buf.indexOf('@@', j);
  }
  return found;
}
void AT;

export function asBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(String(data));
}

// ---------------------------------------------------------------- events

/** One benchmark event: the row a device writes. Same fields for every system. */
export interface BenchRow {
  id: string;
  n: number;
  mark: string;
  body: string;
}

/** Filler so that one pushed synchub event is ~300 bytes of JSON (300 bytes with a 7-digit clientActionId). */
export const FILLER = 'x'.repeat(21);

export function makeRow(sender: number, n: number, entities: number): BenchRow {
  return { id: `e${n % entities}`, n, mark: mark(sender), body: FILLER };
}

/** A synchub push event as JSON text (built by hand: the load generator must not be the bottleneck). */
export function pushEventJson(clientActionId: number, row: BenchRow, ts: string): string {
  return (
    `{"clientActionId":${clientActionId},"sessionId":"bench-session","actionType":"create","entityType":"items",` +
    `"entityId":"${row.id}","payload":{"schemaVersion":1,"newData":{"id":"${row.id}","n":${row.n},"mark":"${row.mark}",` +
    `"body":"${row.body}"},"previousData":null},"clientTimestamp":"${ts}"}`
  );
}

// ---------------------------------------------------------------- histograms

export type Hist = hdr.Histogram;

/** Latencies in microseconds, 1 µs .. 120 s, 3 significant digits. */
export function newHist(): Hist {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

export function encodeHist(h: Hist): string {
  return hdr.encodeIntoCompressedBase64(h);
}

export function decodeHist(s: string): Hist {
  return hdr.decodeFromCompressedBase64(s);
}

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

/** Percentiles in milliseconds. */
export function summarize(h: Hist): LatencySummary {
  const ms = (v: number) => Math.round(v) / 1000;
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
  };
}

// ---------------------------------------------------------------- child processes

type Msg = { type: string; [k: string]: unknown };

/**
 * A TypeScript child (`node --import tsx`) with an IPC channel, started through
 * `sh -c 'ulimit -n <hard>'` so that it may hold 10,000+ sockets.
 */
export class Child {
  readonly proc: ChildProcess;
  private queue: Msg[] = [];
  private waiters: { type: string; resolve: (m: Msg) => void; reject: (e: Error) => void }[] = [];
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined = undefined;

  constructor(
    readonly name: string,
    script: string,
    execArgv: string[] = [],
    env: Record<string, string> = {},
  ) {
    const nodeArgs = ['--import', 'tsx', ...execArgv, join(BENCH_DIR, script)];
    // BENCH_NOFILE: set by the connections scenario when this machine lets it go past the hard limit.
    const ulimit = 'ulimit -n "${BENCH_NOFILE:-$(ulimit -Hn)}" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"';
    this.proc = spawn('/bin/sh', ['-c', ulimit, 'sh', process.execPath, ...nodeArgs], {
      cwd: BENCH_DIR,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...env },
    });
    this.proc.on('message', (m: Msg) => {
      const i = this.waiters.findIndex((w) => w.type === m.type || (m.type === 'fatal' && true));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        if (m.type === 'fatal') w!.reject(new Error(`${this.name}: ${String(m.message)}`));
        else w!.resolve(m);
      } else this.queue.push(m);
    });
    this.exited = new Promise((resolve) =>
      this.proc.on('exit', (code) => {
        this.exitCode = code;
        for (const w of this.waiters.splice(0)) w.reject(new Error(`${this.name} exited (code ${code}) while waiting for ${w.type}`));
        resolve(code);
      }),
    );
  }

  send(m: Msg): void {
    if (this.proc.connected) this.proc.send(m);
  }

  /** The next message of this type (or a `fatal`), within timeoutMs. */
  next<T extends Msg = Msg>(type: string, timeoutMs: number): Promise<T> {
    const qi = this.queue.findIndex((m) => m.type === type || m.type === 'fatal');
    if (qi >= 0) {
      const [m] = this.queue.splice(qi, 1);
      if (m!.type === 'fatal') return Promise.reject(new Error(`${this.name}: ${String(m!.message)}`));
      return Promise.resolve(m as T);
    }
    if (this.exitCode !== undefined) return Promise.reject(new Error(`${this.name} has exited (code ${this.exitCode})`));
    return new Promise<T>((resolve, reject) => {
      const w = {
        type,
        resolve: (m: Msg) => {
          clearTimeout(timer);
          resolve(m as T);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.name}: no '${type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  async request<T extends Msg = Msg>(m: Msg, reply: string, timeoutMs: number): Promise<T> {
    const p = this.next<T>(reply, timeoutMs);
    this.send(m);
    return p;
  }

  /** Ask the child to stop; SIGKILL it (by its pid only) if it has not exited within timeoutMs. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.send({ type: 'stop' });
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }
}

/** In a child: report an uncaught failure to the parent, then exit. */
export function childFatal(err: unknown): never {
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`[bench child ${process.pid}] ${message}\n`);
  process.send?.({ type: 'fatal', message });
  setTimeout(() => process.exit(1), 100);
  throw err;
}

/** Wait for one message of a type from the parent. */
export function fromParent<T extends Msg = Msg>(type: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Msg) => {
      if (m.type !== type) return;
      process.off('message', on);
      resolve(m as T);
    };
    process.on('message', on);
  });
}
