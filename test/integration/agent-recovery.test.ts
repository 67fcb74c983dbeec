// What the agent does when something goes wrong that is not a lock: it exits only for what it cannot
// recover from (the database file gone or damaged, a bad configuration at start), with one clear line;
// any other failure is logged and recovered from (reconnect, re-read from the cursor), and it converges.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type Database from 'better-sqlite3';
import type { Agent } from '../../agent/agent.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { checkConverged, makeDevices, quiesce, spawnAgent, type Device } from '../kit/devices.ts';
import { runCli, startHub, type TestHub } from '../kit/hub.ts';

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-recovery-');
});

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

/** The agent's own connection (test-only internals), to plant a failure inside its apply. */
function agentDb(agent: Agent): Database.Database {
  return (agent as unknown as { db: Database.Database }).db;
}

/**
 * Make the agent's apply of a comment with body `boom` throw an error with SQLite code `code`, `times`
 * times. The trigger runs only inside the agent's apply (sync_applying holds a row then), where the
 * function exists: the app's own writes never call it.
 */
function plantFailure(agent: Agent, code: string, times: number): () => number {
  let thrown = 0;
  agentDb(agent).function('synchub_test_fail', () => {
    if (thrown >= times) return 0;
    thrown++;
    throw Object.assign(new Error(`planted ${code}`), { code });
  });
  agentDb(agent).exec(
    `CREATE TRIGGER test_fail AFTER INSERT ON comments WHEN NEW.body = 'boom' AND EXISTS (SELECT 1 FROM sync_applying)
     BEGIN SELECT synchub_test_fail(); END`,
  );
  return () => thrown;
}

describe('agent recovery', () => {
  it('a failure applying a frame (an I/O error) is logged, the link reconnects, and the frame applies on the next try', async () => {
    devices = makeDevices(tmp.dir, hub, ['victim', 'writer']);
    const [victim, writer] = devices as [Device, Device];
    const agent = await victim.start();
    await writer.start();
    const problems: string[] = [];
    agent.on('problem', (p) => problems.push(p.code));
    const fatal: unknown[] = [];
    agent.on('fatal', (e) => fatal.push(e));
    const thrown = plantFailure(agent, 'SQLITE_IOERR_WRITE', 2);

    writer.writer.create('issues', { id: 'i-1', title: 'before' });
    writer.writer.create('comments', { id: 'c-1', issue_id: 'i-1', body: 'boom' });
    writer.writer.create('issues', { id: 'i-2', title: 'after' });
    await quiesce(hub, devices, 20_000);
    expect(thrown()).toBe(2);
    expect(problems.filter((c) => c === 'apply_failed')).toHaveLength(2);
    expect(fatal).toEqual([]);
    await checkConverged(hub, devices, tmp.dir);
    expect(victim.writer.row('comments', 'c-1')).toMatchObject({ body: 'boom' });
  });

  it('a damaged database (SQLITE_CORRUPT) stops the agent with a fatal error instead of looping', async () => {
    devices = makeDevices(tmp.dir, hub, ['victim', 'writer']);
    const [victim, writer] = devices as [Device, Device];
    const agent = await victim.start();
    await writer.start();
    const fatal = new Promise<Error>((resolve) => agent.once('fatal', resolve));
    plantFailure(agent, 'SQLITE_CORRUPT', 1000);
    writer.writer.create('comments', { id: 'c-1', body: 'boom' });
    const err = await fatal;
    expect(err.message).toMatch(/cannot be used: .*SQLITE_CORRUPT/);
    expect(agent.status().state).toBe('stopped');
  });

  it('the daemon exits 1 with one clear line when its database file is deleted', async () => {
    devices = makeDevices(tmp.dir, hub, ['gone']);
    const [gone] = devices as [Device];
    const daemon = spawnAgent(tmp.dir, gone.path, hub, { SYNCHUB_AGENT_TUNING: JSON.stringify({ heartbeatMs: 200 }) });
    gone.writer.create('issues', { id: 'i-1', title: 'x' });
    await quiesce(hub, devices, 20_000);
    for (const suffix of ['', '-wal', '-shm']) rmSync(gone.path + suffix, { force: true });
    expect(await daemon.exited).toBe(1);
    expect(daemon.stderr()).toMatch(/^synchub agent: the app database .* was deleted or moved/m);
  });

  it('the daemon exits at start with one line for a bad configuration (a missing table, another project)', async () => {
    devices = makeDevices(tmp.dir, hub, ['bad']);
    const [bad] = devices as [Device];
    const tokenFile = join(tmp.dir, 'token');
    writeFileSync(tokenFile, hub.token);
    const run = (project: string, tables: string) =>
      runCli(['agent', 'run', '--db', bad.path, '--hub', hub.url, '--project', project, '--tables', tables, '--token-file', tokenFile], { env: { SYNCHUB_LOG_LEVEL: 'silent' } });

    const missing = await run(hub.project, 'issues,nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/table nope does not exist/);

    await bad.start(); // binds the file to hub.project
    await bad.stop();
    const other = await run('another-project', 'issues');
    expect(other.code).toBe(1);
    expect(other.stderr.trim().split('\n')).toHaveLength(1);
    expect(other.stderr).toMatch(/already syncs project/);
  });
});
