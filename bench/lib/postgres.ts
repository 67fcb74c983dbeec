// The PostgreSQL behind the synchub-pg systems: one throwaway cluster per bench run (the test
// kit's: initdb + pg_ctl in a temp dir on a free port, run as the `postgres` user when we are
// root), a fresh database per run of a system, dropped when that run's hubs have stopped.
//
// The cluster keeps PostgreSQL's durability defaults (fsync on, synchronous_commit on,
// full_page_writes on): synchub acks a push only after its COMMIT is durable, as it does on
// SQLite with synchronous=FULL, so the two stores are compared on the same promise.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase, findPostgresBin, startCluster, type Cluster } from '../../test/kit/postgres.ts';

/** Settings read back from the running server and recorded with the results (proof of the defaults). */
const SHOWN = ['server_version', 'fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes', 'shared_buffers', 'wal_buffers', 'commit_delay', 'max_wal_size', 'checkpoint_timeout'];

export interface BenchPostgres {
  url: string;
  /** `postgres --version` and the settings above, for the results JSON. */
  info: { bin: string; settings: Record<string, string> };
  /** pid of the postmaster: its process tree is PostgreSQL's CPU (not the machine's noise). */
  postmasterPid(): number | null;
  /** A fresh database for one run of a system. */
  createDatabase(): Promise<string>;
  /** Drop a run's database (its hubs have stopped). */
  dropDatabase(url: string): Promise<void>;
  /**
   * Write out the dirty buffers of earlier runs before a measurement: PostgreSQL's own
   * `sync` (a checkpoint that fell into the next run would be measured there).
   */
  checkpoint(): Promise<void>;
  stop(): Promise<void>;
}

/** Why the PostgreSQL systems cannot run here, or null when they can. */
export function postgresMissing(): string | null {
  return findPostgresBin() ? null : 'PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under /usr/lib/postgresql/*/bin';
}

async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {}); // a backend terminated under us must not crash the orchestrator
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function startPostgres(): Promise<BenchPostgres> {
  const cluster: Cluster = await startCluster();
  try {
    const settings: Record<string, string> = {};
    for (const name of SHOWN) settings[name] = String((await query(cluster.url, `SHOW ${name}`)).rows[0]?.[name]);
    if (settings.fsync !== 'on' || settings.synchronous_commit !== 'on') {
      throw new Error(`the bench cluster must keep fsync and synchronous_commit on (got fsync=${settings.fsync}, synchronous_commit=${settings.synchronous_commit})`);
    }
    const bin = findPostgresBin()!;
    const version = execFileSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8' }).trim();
    return {
      url: cluster.url,
      info: { bin: `${version} (${bin})`, settings },
      postmasterPid() {
        try {
          return Number(readFileSync(join(cluster.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]) || null;
        } catch {
          return null;
        }
      },
      createDatabase: () => createDatabase(cluster.url, 'bench'),
      async dropDatabase(url) {
        const name = new URL(url).pathname.slice(1);
        // WITH (FORCE): a hub killed by the orchestrator may leave a backend behind for a moment.
        await query(cluster.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      },
      async checkpoint() {
        await query(cluster.url, 'CHECKPOINT');
      },
      stop: () => cluster.stop(),
    };
  } catch (err) {
    await cluster.stop().catch(() => {});
    throw err;
  }
}
