// The agent notices the app's commits: at once through a watch on the WAL file, and by
// polling PRAGMA data_version whatever the file system does.
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DataVersionWatcher } from '../../agent/watch.ts';
import { makeTempDir, removeTempDirs } from '../kit/hub.ts';
import { delay, eventually } from '../kit/ws-client.ts';

const open: { close(): void }[] = [];
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});
afterAll(() => removeTempDirs());

function appDb(): { path: string; app: Database.Database; agent: Database.Database } {
  const path = join(makeTempDir(), 'app.db');
  const app = new Database(path);
  app.pragma('journal_mode = WAL');
  app.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  const agent = new Database(path);
  open.push(agent, app);
  return { path, app, agent };
}

describe('DataVersionWatcher', () => {
  it('sees an app commit through the WAL watch long before its (here 10 s) poll', async () => {
    const { path, app, agent } = appDb();
    const seen: number[] = [];
    const w = new DataVersionWatcher(agent, () => seen.push(performance.now()), 10_000, undefined, path);
    open.push({ close: () => w.stop() });
    w.start();
    for (let i = 0; i < 5; i++) {
      const committed = performance.now();
      app.prepare('INSERT INTO t (v) VALUES (?)').run(`row ${i}`);
      await eventually(() => seen.length === i + 1, `commit ${i} noticed`, 2_000, 1);
      expect(seen[i]! - committed).toBeLessThan(1_000);
    }
  });

  it("does not report the agent's own writes, and polls when there is no file to watch", async () => {
    const { path, app, agent } = appDb();
    let changes = 0;
    const w = new DataVersionWatcher(agent, () => changes++, 5, undefined, path);
    open.push({ close: () => w.stop() });
    w.start();
    agent.prepare('INSERT INTO t (v) VALUES (?)').run('own');
    await delay(100);
    expect(changes).toBe(0);

    // Poll only (no path): the app's commit is still seen.
    const p = new DataVersionWatcher(agent, () => changes++, 5);
    open.push({ close: () => p.stop() });
    w.stop();
    p.start();
    app.prepare('INSERT INTO t (v) VALUES (?)').run('app');
    await eventually(() => changes === 1, 'the poll notices the commit', 2_000);
  });
});
