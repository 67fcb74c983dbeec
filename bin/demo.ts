// `synchub demo` (and `npm run demo`): a hub and two devices, each an app with its own SQLite file
// and its own agent, on temporary databases. One device writes a few changes, the other shows them
// arriving with the measured latency, then the other way round. With --keep it stays up, writing a
// change every couple of seconds, so a person can watch the dashboard.
// It lives beside the CLI entry because it is the one place that uses both the hub and the agent.
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { Agent } from '../agent/agent.ts';
import { parseCommand, portFlag, type CommandHelp } from '../shared/cli.ts';
import { silentLogger } from '../shared/log.ts';
import { Hub } from '../hub/server.ts';
import { SqliteEventStore } from '../hub/store/sqlite.ts';
import { createToken } from '../hub/tokens.ts';

export const DEMO_HELP: CommandHelp = {
  usage: 'synchub demo [--keep] [--port 0] [--admin-port 9787]',
  summary: 'A hub and two devices on temporary databases: changes written on one arrive on the other, with their latency.',
  details: [
    '--keep            stay up (a change every 2 s) until Ctrl-C, to watch the dashboard',
    '--port N          the hub port (default 0: a free one)',
    '--admin-port N    the dashboard port (default 9787, or a free one when taken)',
  ].join('\n'),
  example: 'synchub demo --keep     # then open the dashboard URL it prints',
};

/** How long one change may take to arrive before the demo says something is wrong. */
const ARRIVAL_TIMEOUT_MS = 10_000;
const KEEP_WRITE_EVERY_MS = 2000;

type Row = { id: string; title: string; status: string };

/** An app: its own SQLite file with an `issues` table, written through its own connection, and its agent. */
class DemoApp {
  readonly db: Database.Database;
  readonly agent: Agent;

  constructor(
    readonly name: string,
    readonly path: string,
    hub: string,
    token: string,
  ) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.exec('CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT, status TEXT, deleted_at TEXT)');
    this.agent = new Agent({ db: path, hub, project: 'demo', token, tables: ['issues'] });
  }

  /** The app's contract: the change and its action_log row in one transaction. */
  write(row: Row): void {
    const prev = this.get(row.id);
    this.db.transaction(() => {
      this.db.prepare('INSERT INTO issues (id, title, status) VALUES (@id, @title, @status) ON CONFLICT (id) DO UPDATE SET title = @title, status = @status').run(row);
      this.db
        .prepare(
          `INSERT INTO action_log (id, session_id, action_type, entity_type, entity_id, previous_data, new_data, timestamp)
           VALUES (?, 'demo', ?, 'issues', ?, ?, ?, ?)`,
        )
        .run(crypto.randomUUID(), prev ? 'update' : 'create', row.id, prev ? JSON.stringify(prev) : null, JSON.stringify(row), new Date().toISOString());
    })();
  }

  get(id: string): Row | undefined {
    return this.db.prepare('SELECT id, title, status FROM issues WHERE id = ?').get(id) as Row | undefined;
  }

  count(): number {
    return this.db.prepare('SELECT count(*) FROM issues').pluck().get() as number;
  }

  /** Resolves with the milliseconds until `row` is in this app's database, checked as each frame lands. */
  arrival(row: Row, since: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const r = this.get(row.id);
        if (r?.title !== row.title || r.status !== row.status) return;
        done();
        resolve(performance.now() - since);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${row.id} did not reach ${this.name} within ${ARRIVAL_TIMEOUT_MS} ms`));
      }, ARRIVAL_TIMEOUT_MS);
      const done = () => {
        clearTimeout(timer);
        this.agent.off('applied', check);
      };
      this.agent.on('applied', check);
      check();
    });
  }

  async close(): Promise<void> {
    await this.agent.stop();
    this.db.close();
  }
}

/** Write `row` on `from` and print how long it took to appear on `to`. */
async function sync(from: DemoApp, to: DemoApp, row: Row): Promise<void> {
  const start = performance.now();
  const arrived = to.arrival(row, start);
  from.write(row);
  const ms = await arrived;
  const what = `${row.id} "${row.title}" ${row.status}`;
  process.stdout.write(`  ${from.name.padEnd(6)} wrote ${what.padEnd(36)} -> on ${to.name} after ${ms.toFixed(1)} ms\n`);
}

/** A hub with its admin listener on `adminPort`, or on a free port when that one is taken. */
async function startHub(store: SqliteEventStore, port: number, adminPort: number, explicit: boolean): Promise<{ hub: Hub; url: string }> {
  const hub = new Hub(store, { port, host: '127.0.0.1', adminPort }, silentLogger);
  try {
    return { hub, url: `ws://127.0.0.1:${await hub.listen()}` };
  } catch (err) {
    if (explicit || (err as { code?: string }).code !== 'admin_listen_failed') throw err;
  }
  const fallback = new Hub(store, { port, host: '127.0.0.1', adminPort: 0 }, silentLogger);
  return { hub: fallback, url: `ws://127.0.0.1:${await fallback.listen()}` };
}

export async function demoCli(argv: string[]): Promise<number> {
  const f = parseCommand(
    argv,
    { keep: { type: 'boolean' }, port: { type: 'string' }, 'admin-port': { type: 'string' } },
    z.object({ keep: z.boolean().default(false), port: portFlag.default(0), 'admin-port': portFlag.optional(), positionals: z.tuple([]) }),
    DEMO_HELP,
  );
  const dir = mkdtempSync(join(tmpdir(), 'synchub-demo-'));
  const store = new SqliteEventStore(join(dir, 'hub.db'));
  await store.createProject('demo');
  const { token } = await createToken(store, 'demo', 'write');
  const { hub, url } = await startHub(store, f.port, f['admin-port'] ?? 9787, f['admin-port'] !== undefined);
  const laptop = new DemoApp('laptop', join(dir, 'laptop.db'), url, token);
  const phone = new DemoApp('phone', join(dir, 'phone.db'), url, token);
  const stopAll = async () => {
    await Promise.all([laptop.close(), phone.close()]);
    await hub.close();
  };
  try {
    process.stdout.write(
      `synchub demo: a hub and two devices (laptop, phone), each an app with its own SQLite file and agent\n` +
        `  hub:       ${url}   (databases in ${dir})\n` +
        `  dashboard: http://127.0.0.1:${hub.adminPort}/\n\n`,
    );
    await Promise.all([laptop.agent.start(), phone.agent.start()]);
    await sync(laptop, phone, { id: 'issue-1', title: 'Write the demo', status: 'open' });
    await sync(laptop, phone, { id: 'issue-2', title: 'Try the dashboard', status: 'open' });
    await sync(laptop, phone, { id: 'issue-3', title: 'Read the docs', status: 'open' });
    await sync(phone, laptop, { id: 'issue-1', title: 'Write the demo', status: 'closed' });
    process.stdout.write(`\nboth devices hold the same ${laptop.count()} issues; the hub's log has ${await store.headSeq('demo')} events.\n`);
    if (f.keep) {
      // A read token of this throwaway hub, so a person can watch the log too.
      const read = await createToken(store, 'demo', 'read');
      process.stdout.write(`watch the log:  SYNCHUB_TOKEN=${read.token} npx synchub agent tail --hub ${url} --project demo\n`);
      await keepWriting(laptop, phone);
    }
  } catch (err) {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
  return 0;
}

/** --keep: a change every couple of seconds, alternating devices, until SIGINT or SIGTERM. */
async function keepWriting(a: DemoApp, b: DemoApp): Promise<void> {
  process.stdout.write(`staying up (a change every ${KEEP_WRITE_EVERY_MS / 1000} s); open the dashboard, Ctrl-C to stop\n`);
  let stopped = false;
  const signalled = new Promise<void>((resolve) => {
    const stop = () => {
      stopped = true;
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  for (let n = 4; !stopped; n++) {
    const [from, to] = n % 2 ? [a, b] : [b, a];
    await sync(from, to, { id: `issue-${n}`, title: `Change number ${n}`, status: 'open' });
    await Promise.race([signalled, new Promise((r) => setTimeout(r, KEEP_WRITE_EVERY_MS))]);
  }
}
