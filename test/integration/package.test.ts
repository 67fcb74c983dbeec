// The package as a user gets it: `npm pack` gives a tarball that installs into an empty directory,
// whose CLI runs with no TypeScript loader, and whose library a plain .mjs file imports to sync
// with a real hub.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeTempDirs, REPO_ROOT, startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvent, SyncClient } from '../kit/ws-client.ts';

const run = promisify(execFile);
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
// npm prints notices on stderr; only the exit code and stdout matter here.
const quiet = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

let h: TestHub | undefined;
afterAll(async () => {
  await closeAllClients();
  await h?.close();
  removeTempDirs();
});

const APP = `
import Database from 'better-sqlite3';
import { Agent } from 'synchub';

const { HUB_URL, TOKEN, DB } = process.env;
const db = new Database(DB);
db.exec('CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)');
const agent = new Agent({ db: DB, hub: HUB_URL, project: 'p1', token: TOKEN, tables: ['notes'] });
const acked = new Promise((resolve) => agent.on('acked', resolve));
await agent.start();
db.exec("INSERT INTO notes (id, body) VALUES ('n1', 'from the packed agent')");
db.prepare("INSERT INTO action_log (id, session_id, action_type, entity_type, entity_id, new_data, timestamp) VALUES ('a1', 's', 'create', 'notes', 'n1', ?, ?)")
  .run(JSON.stringify({ id: 'n1', body: 'from the packed agent' }), new Date().toISOString());
await acked;
// The hub's event (pushed before we started) has been applied too.
for (let i = 0; i < 500 && !db.prepare("SELECT 1 FROM notes WHERE id = 'from-hub'").get(); i++) await new Promise((r) => setTimeout(r, 20));
const rows = db.prepare('SELECT id FROM notes ORDER BY id').all().map((r) => r.id);
await agent.stop();
console.log(JSON.stringify({ rows }));
`;

describe('the npm package', () => {
  it('packs, installs into an empty directory, runs its CLI without tsx and syncs from plain JavaScript', { timeout: 240_000 }, async () => {
    const packDir = makeTempDir('synchub-pack-');
    // prepack compiles dist/ first.
    const packed = await run(NPM, ['pack', '--json', '--pack-destination', packDir], { cwd: REPO_ROOT, env: quiet, timeout: 150_000 });
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const files = info!.files.map((f) => f.path);
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.d.ts');
    expect(files).toContain('bin/synchub.js');
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);

    const app = makeTempDir('synchub-install-');
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'an-app', private: true, type: 'module' }));
    // --ignore-scripts: better-sqlite3's install would compile for minutes (no prebuilt binary can
    // be fetched here); the binary the repository's own install built for this Node is copied in.
    await run(NPM, ['install', '--ignore-scripts', '--prefer-offline', join(packDir, info!.filename)], { cwd: app, env: quiet, timeout: 120_000 });
    const release = join(app, 'node_modules', 'better-sqlite3', 'build', 'Release');
    mkdirSync(release, { recursive: true });
    copyFileSync(join(REPO_ROOT, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'), join(release, 'better_sqlite3.node'));
    expect(existsSync(join(app, 'node_modules', 'tsx'))).toBe(false);
    expect(existsSync(join(app, 'node_modules', 'typescript'))).toBe(false);

    const help = await run(NPM, ['exec', '--offline', '--', 'synchub', '--help'], { cwd: app, env: quiet, timeout: 60_000 });
    expect(help.stdout).toMatch(/synchub agent tail/);
    expect(help.stdout).toMatch(/synchub hub serve/);

    h = await startHub();
    const writer = await SyncClient.open(h.url, 'p1', h.token, 'dev-hub-side');
    await writer.push(1, [makeEvent(1, { entityType: 'notes', entityId: 'from-hub', payload: { schemaVersion: 1, newData: { id: 'from-hub', body: 'hi' }, previousData: null } })]);
    writeFileSync(join(app, 'app.mjs'), APP);
    const out = await run(process.execPath, ['app.mjs'], { cwd: app, env: { ...process.env, HUB_URL: h.url, TOKEN: h.token, DB: join(app, 'app.db') }, timeout: 60_000 });
    expect(JSON.parse(out.stdout.trim())).toEqual({ rows: ['from-hub', 'n1'] });
    const log = await h.store.readAfter('p1', 0, 10);
    expect(log.map((e) => JSON.parse(e.json) as { entityId: string }).map((e) => e.entityId)).toEqual(['from-hub', 'n1']);
  });
});
