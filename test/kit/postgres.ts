// Test kit: a throwaway PostgreSQL cluster (initdb + pg_ctl in a temp dir, on a free port).
//
//   findPostgresBin()       the directory holding initdb/pg_ctl/postgres, or null
//   startCluster()          a running cluster with trust auth on 127.0.0.1; stop() removes it
//   createDatabase(url)     a fresh, empty database on that cluster: one per test hub
//
// initdb and postgres refuse to run as root, which is what CI runs as: then the cluster runs as
// the `postgres` user (or `nobody`), which owns the temp dir and starts in it. pg_ctl detaches the
// server from our process group, so stop() must be called (the global setup does it at teardown).
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

const BINARIES = ['initdb', 'pg_ctl', 'postgres'];

/** Where the server binaries are: on PATH, or Debian's /usr/lib/postgresql/<version>/bin (newest first). */
export function findPostgresBin(): string | null {
  const candidates = (process.env.PATH ?? '').split(':').filter(Boolean);
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian).sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => join(debian, v, 'bin')));
  }
  return candidates.find((dir) => BINARIES.every((b) => existsSync(join(dir, b)))) ?? null;
}

export interface Cluster {
  /** `postgres://postgres@127.0.0.1:PORT/postgres`: the maintenance database. */
  url: string;
  port: number;
  dir: string;
  /** Stop the server (fast shutdown) and remove its directory. Idempotent. */
  stop(): Promise<void>;
  /** Stop and start the server again on the same port and data (an outage). */
  restart(): Promise<void>;
  /** Stop the server without removing anything (start() brings it back). */
  halt(): Promise<void>;
  start(): Promise<void>;
}

/** The user the server runs as: ourselves, or an unprivileged one when we are root. */
function serverUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
      const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
      return { uid, gid };
    } catch {
      // try the next one
    }
  }
  throw new Error('running as root and neither a postgres nor a nobody user exists to run PostgreSQL as');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function run(bin: string, args: string[], user: { uid: number; gid: number } | null, cwd: string, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${bin} ${args.join(' ')} failed (${code ?? signal}):\n${out.slice(-2000)}`));
    });
  });
}

/** initdb a cluster in a fresh temp dir and start it on a free port of 127.0.0.1. */
export async function startCluster(): Promise<Cluster> {
  const bin = findPostgresBin();
  if (!bin) throw new Error('PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under /usr/lib/postgresql/*/bin');
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'synchub-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  const port = await freePort();
  await run(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8'], user, dir);
  // Unix sockets in our own dir (the default /var/run/postgresql may not exist or be writable);
  // fsync stays on: acks must mean durable on this store too.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=64MB`;
  const pgctl = join(bin, 'pg_ctl');
  let running = false;
  const cluster: Cluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    async start() {
      // -l: without a log file the server keeps our stdout pipe open.
      await run(pgctl, ['start', '-w', '-t', '60', '-D', data, '-l', log, '-o', options], user, dir, 90_000);
      running = true;
    },
    async halt() {
      if (!running) return;
      running = false;
      await run(pgctl, ['stop', '-w', '-t', '60', '-m', 'fast', '-D', data], user, dir, 90_000);
    },
    async restart() {
      await cluster.halt();
      await cluster.start();
    },
    async stop() {
      try {
        await cluster.halt();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  try {
    await cluster.start();
  } catch (err) {
    const tail = existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : '';
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${tail}`);
  }
  return cluster;
}

let counter = 0;

/** A new empty database on the cluster at `url`; resolves with its URL. */
export async function createDatabase(url: string, prefix = 'hub'): Promise<string> {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`;
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name} TEMPLATE template0`);
  } finally {
    await client.end();
  }
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}
