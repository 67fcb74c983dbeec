// `npm run demo`: a hub on SQLite and two devices, each an app DB with its own
// agent, syncing live. Everything lives in ./data/demo and is made anew each run.
import Database from 'better-sqlite3';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../agent/agent.ts';
import { Hub } from '../hub/server.ts';
import { SqliteEventStore } from '../hub/store/sqlite.ts';
import { createToken } from '../hub/tokens.ts';

const dir = join('data', 'demo');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

const store = new SqliteEventStore(join(dir, 'hub.db'));
await store.createProject('demo');
const { token } = await createToken(store, 'demo', 'write');
const hub = new Hub(store, { port: 0 });
const port = await hub.listen();
console.log(`hub on ws://127.0.0.1:${port}, store ${join(dir, 'hub.db')}`);

/** An app: its own SQLite file with an `issues` table, written through its own connection. */
async function makeApp(name: string) {
  const path = join(dir, `${name}.db`);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE issues (id TEXT PRIMARY KEY, title TEXT, status TEXT, deleted_at TEXT)');
  const agent = new Agent({ db: path, hub: `ws://127.0.0.1:${port}`, project: 'demo', token, tables: ['issues'] });
  await agent.start();
  // The app's contract: the change and its action_log row in one transaction.
  const write = db.transaction((action: 'create' | 'update', row: Record<string, string>, prev?: Record<string, string>) => {
    if (action === 'create') db.prepare('INSERT INTO issues (id, title, status) VALUES (@id, @title, @status)').run(row);
    else db.prepare('UPDATE issues SET title = @title, status = @status WHERE id = @id').run(row);
    db.prepare(
      `INSERT INTO action_log (id, session_id, action_type, entity_type, entity_id, previous_data, new_data, timestamp)
       VALUES (?, 'demo', ?, 'issues', ?, ?, ?, ?)`,
    ).run(crypto.randomUUID(), action, row.id, prev ? JSON.stringify(prev) : null, JSON.stringify(row), new Date().toISOString());
  });
  return { name, db, agent, write };
}

const laptop = await makeApp('laptop');
const phone = await makeApp('phone');

async function until(what: string, check: () => boolean): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > 10_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  console.log(`  ${what}: ${Date.now() - start} ms`);
}
const row = (app: { db: Database.Database }) => app.db.prepare("SELECT * FROM issues WHERE id = 'i1'").get() as Record<string, string> | undefined;

console.log('laptop creates issue i1');
laptop.write('create', { id: 'i1', title: 'Write the demo', status: 'open' });
await until('phone has i1', () => row(phone)?.title === 'Write the demo');

console.log('phone closes it');
phone.write('update', { id: 'i1', title: 'Write the demo', status: 'closed' }, { id: 'i1', title: 'Write the demo', status: 'open' });
await until('laptop sees status=closed', () => row(laptop)?.status === 'closed');

console.log('laptop:', row(laptop));
console.log('phone: ', row(phone));
await Promise.all([laptop.agent.stop(), phone.agent.stop()]);
laptop.db.close();
phone.db.close();
await hub.close();
console.log(`done. Inspect: npx synchub agent status --db ${join(dir, 'phone.db')}`);
