// Test kit: real hubs for tests, chaos runs and benchmarks.
//
//   startHub(opts)       an in-process Hub on 127.0.0.1:0 over a fresh store (see below)
//   spawnHub(location)   the real CLI (`synchub hub serve`) as a child process, for crash/restart tests
//                        (its admin listener on a free port: many hubs run side by side)
//   runCli(args)         any `synchub ...` command as a child process, collecting exit code and output
//   initHubDb(location)  create a project and a token in a hub store without a running hub
//   freshStoreLocation() a new, empty store: a SQLite file path, or a PostgreSQL database URL
//
// Which store: SQLite files by default; PostgreSQL when SYNCHUB_TEST_STORE=postgres (the vitest
// project "postgres" sets it, with SYNCHUB_TEST_POSTGRES_URL pointing at a throwaway cluster that
// its global setup started). A location is a file path or a postgres:// URL.
//   makeTempDir()        a fresh temp dir (removed by the caller, or by removeTempDirs())
//   serverSocketOf(hub)  test-only peek at the hub's server-side socket of one device
//
// Everything binds 127.0.0.1 only. Every wait is bounded by a timeout.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WebSocket } from 'ws';
import type { Logger } from '../../shared/log.ts';
import type { HubOptionsInput } from '../../hub/config.ts';
import { Hub } from '../../hub/server.ts';
import type { EventStore, Role } from '../../hub/store/event-store.ts';
import { PostgresEventStore } from '../../hub/store/postgres.ts';
import { SqliteEventStore } from '../../hub/store/sqlite.ts';
import { createDatabase } from './postgres.ts';
import { createToken } from '../../hub/tokens.ts';

/** The repository root (where bin/synchub.js lives). */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The CLI entry, run with `process.execPath`. */
export const CLI_PATH = join(REPO_ROOT, 'bin', 'synchub.js');

const tempDirs = new Set<string>();

/** True when this run's hubs use PostgreSQL (the "postgres" vitest project). */
export function usingPostgres(): boolean {
  return process.env.SYNCHUB_TEST_STORE === 'postgres';
}

const isUrl = (location: string) => /^postgres(ql)?:\/\//.test(location);

/** A new, empty store location for this run's store kind. */
export async function freshStoreLocation(): Promise<string> {
  if (!usingPostgres()) return join(makeTempDir(), 'hub.db');
  const cluster = process.env.SYNCHUB_TEST_POSTGRES_URL;
  if (!cluster) throw new Error('SYNCHUB_TEST_STORE=postgres needs SYNCHUB_TEST_POSTGRES_URL (set by test/kit/postgres-setup.ts)');
  return createDatabase(cluster);
}

/** Open the store at a location (a file path or a postgres:// URL). */
export async function openStoreAt(location: string): Promise<EventStore> {
  return isUrl(location) ? PostgresEventStore.open(location) : new SqliteEventStore(location);
}

/** The CLI flags that select the store at a location. */
export function storeFlags(location: string): string[] {
  return isUrl(location) ? ['--postgres', location] : ['--db', location];
}

/** A fresh directory under the OS temp dir. Remembered for removeTempDirs(). */
export function makeTempDir(prefix = 'synchub-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Remove every dir made by makeTempDir() that still exists (for afterAll). */
export function removeTempDirs(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

export interface StartHubOptions {
  /** Project created at start (default 'p1'); null creates none (and no token). */
  project?: string | null;
  /** Role of the token created for `project` (default 'write'). */
  role?: Role;
  /** Hub options (port and host are fixed to 0 and 127.0.0.1 unless given; no admin listener unless adminPort is given). */
  options?: HubOptionsInput;
  /** Use this store location (file path or postgres:// URL) instead of a fresh one (e.g. written by the CLI). */
  dbPath?: string;
  /** Logger for the hub (default silent). */
  log?: Logger;
}

export interface TestHub {
  /** Base URL, `ws://127.0.0.1:PORT`; clients append `/v1/projects/<p>/sync`. */
  url: string;
  port: number;
  /** The admin listener's base URL (`http://127.0.0.1:PORT`) when options.adminPort was given, else ''. */
  adminUrl: string;
  hub: Hub;
  store: EventStore;
  /** Where the store is: a SQLite file path, or a postgres:// URL. */
  dbPath: string;
  /** A temp dir of this hub (holding the SQLite file; removed by close() when the kit created it). */
  dir: string;
  /** The project created at start ('' when none). */
  project: string;
  /** A token for `project` with the requested role ('' when none). */
  token: string;
  createProject(name: string): Promise<void>;
  /** Create a token; resolves with the token string and its id. */
  createToken(project: string, role?: Role): Promise<string>;
  /** Stop the hub (clean shutdown), close the store, remove the temp dir. Idempotent. */
  close(): Promise<void>;
}

/** A real Hub on 127.0.0.1, port 0, over a real store (a SQLite file, or a PostgreSQL database). */
export async function startHub(opts: StartHubOptions = {}): Promise<TestHub> {
  const dbPath = opts.dbPath ?? (await freshStoreLocation());
  const ownDir = opts.dbPath === undefined && !isUrl(dbPath);
  const dir = isUrl(dbPath) ? makeTempDir() : dirname(dbPath);
  const store = await openStoreAt(dbPath);
  const project = opts.project === undefined ? 'p1' : opts.project;
  let token = '';
  if (project !== null) {
    await store.createProject(project);
    token = (await createToken(store, project, opts.role ?? 'write')).token;
  }
  const hub = new Hub(store, { port: 0, host: '127.0.0.1', ...opts.options }, opts.log);
  const port = await hub.listen();
  let closing: Promise<void> | null = null;
  return {
    url: `${opts.options?.tls ? 'wss' : 'ws'}://127.0.0.1:${port}`,
    port,
    adminUrl: hub.adminPort === null ? '' : `http://127.0.0.1:${hub.adminPort}`,
    hub,
    store,
    dbPath,
    dir,
    project: project ?? '',
    token,
    createProject: (name) => store.createProject(name),
    createToken: async (p, role = 'write') => (await createToken(store, p, role)).token,
    close() {
      closing ??= (async () => {
        await hub.close();
        await store.close();
        if (ownDir) {
          rmSync(dir, { recursive: true, force: true });
          tempDirs.delete(dir);
        }
      })();
      return closing;
    },
  };
}

/** Create `project` (if missing) and a token in a hub store (file path or URL); the store is closed again. */
export async function initHubDb(dbPath: string, project = 'p1', role: Role = 'write'): Promise<string> {
  const store = await openStoreAt(dbPath);
  try {
    if (!(await store.projectExists(project))) await store.createProject(project);
    return (await createToken(store, project, role)).token;
  } finally {
    await store.close();
  }
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedHub {
  /** Base URL, `ws://127.0.0.1:PORT`. */
  url: string;
  port: number;
  /** The admin listener's base URL, `http://127.0.0.1:PORT`. */
  adminUrl: string;
  pid: number;
  proc: ChildProcess;
  /** Everything written to stdout / stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Send a signal (default SIGTERM); no-op once exited. */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves when the process has exited. */
  exited: Promise<ExitInfo>;
  /** SIGKILL if still running, and wait for the exit. For afterEach. */
  stop(): Promise<ExitInfo>;
}

const LISTENING_RE = /listening on (wss?):\/\/([^\s:]+):(\d+)/;
const DASHBOARD_RE = /dashboard: (http:\/\/\S+?)\//;

/**
 * Run `synchub hub serve --port P --db F` (or `--postgres URL`) as a child process and wait for
 * its "listening on ws://HOST:PORT" line (which carries the bound port, also with port 0).
 */
export async function spawnHub(dbPath: string, port = 0, opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; args?: string[] } = {}): Promise<SpawnedHub> {
  const args = ['hub', 'serve', '--port', String(port), '--host', '127.0.0.1', '--admin-port', '0', ...storeFlags(dbPath), ...(opts.args ?? [])];
  const proc = spawn(process.execPath, [CLI_PATH, ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SYNCHUB_LOG_LEVEL: 'warn', ...opts.env },
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<ExitInfo>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const kill = (signal: NodeJS.Signals = 'SIGTERM') => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
  };
  const stop = async () => {
    kill('SIGKILL');
    return exited;
  };
  const bound = await new Promise<{ scheme: string; port: number; adminUrl: string }>((resolve, reject) => {
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const timer = setTimeout(() => {
      kill('SIGKILL');
      reject(new Error(`hub did not print its listening line within ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    const onData = () => {
      const m = LISTENING_RE.exec(out);
      const admin = DASHBOARD_RE.exec(out);
      if (!m || !admin) return;
      clearTimeout(timer);
      proc.stdout!.off('data', onData);
      resolve({ scheme: m[1]!, port: Number(m[3]), adminUrl: admin[1]! });
    };
    proc.stdout!.on('data', onData);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`hub exited (${e.code ?? e.signal}) before listening; stderr: ${err}`));
    });
  });
  return {
    url: `${bound.scheme}://127.0.0.1:${bound.port}`,
    port: bound.port,
    adminUrl: bound.adminUrl,
    pid: proc.pid!,
    proc,
    stdout: () => out,
    stderr: () => err,
    kill,
    exited,
    stop,
  };
}

/** A process's resident size now (VmRSS) or at its peak so far (VmHWM, kept by the kernel), in kB, from /proc (Linux). */
export function processMemoryKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

export interface CliResult extends ExitInfo {
  stdout: string;
  stderr: string;
}

/** Run `synchub <args...>` to completion (killed after timeoutMs). */
export function runCli(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [CLI_PATH, ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`synchub ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * The hub's own server-side socket for a connected device (test-only: reads
 * Hub internals, so a test can check what the hub buffers for that connection).
 */
export function serverSocketOf(hub: Hub, deviceId: string): WebSocket | undefined {
  const connections = (hub as unknown as { connections: Set<{ deviceId: string; ws: WebSocket }> }).connections;
  for (const c of connections) if (c.deviceId === deviceId) return c.ws;
  return undefined;
}

/** Number of device connections the hub currently holds (test-only internals). */
export function connectionCount(hub: Hub): number {
  return (hub as unknown as { connections: Set<unknown> }).connections.size;
}

/** A counter's value from the hub's Prometheus registry (sum over labels matching `labels`). */
export async function metricValue(hub: Hub, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = hub.metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val))
    .reduce((sum, v) => sum + v.value, 0);
}

export interface RunningCli {
  proc: ChildProcess;
  /** Everything written to stdout / stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout matches `re` (rejects after timeoutMs, or if the process exits first). */
  waitForStdout(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<ExitInfo>;
  /** SIGKILL if still running, and wait for the exit. For afterEach. */
  stop(): Promise<ExitInfo>;
}

/** Start a long-running `synchub <args...>` (e.g. `agent tail`, `demo --keep`) and watch its output. */
export function spawnCli(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): RunningCli {
  const proc = spawn(process.execPath, [CLI_PATH, ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<ExitInfo>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    waitForStdout(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out);
          if (m) {
            finish();
            resolve(m);
          } else if (done) {
            finish();
            reject(new Error(`synchub ${args.join(' ')} exited before printing ${re}; stdout: ${out}; stderr: ${err}`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`synchub ${args.join(' ')} did not print ${re} within ${timeoutMs} ms; stdout: ${out}; stderr: ${err}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          proc.stdout!.off('data', check);
          void exited.then(() => {}, () => {});
        };
        proc.stdout!.on('data', check);
        void exited.then(check);
        check();
      });
    },
    exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      return exited;
    },
  };
}
