// The admin commands through the real CLI (child processes), acting on the store directly
// (a SQLite file with --db, or a PostgreSQL database with --postgres in the postgres project).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syncPath } from '../../shared/protocol.ts';
import { freshStoreLocation, makeTempDir, openStoreAt, removeTempDirs, runCli, startHub, storeFlags, usingPostgres } from '../kit/hub.ts';
import { closeAllClients, makeEvent, SyncClient, upgradeRefusal } from '../kit/ws-client.ts';

let dbPath: string;
let store: string[];
beforeAll(async () => {
  // In a directory that does not exist yet: project create makes it.
  dbPath = usingPostgres() ? await freshStoreLocation() : join(makeTempDir(), 'sub', 'hub.db');
  store = storeFlags(dbPath);
});
afterAll(async () => {
  await closeAllClients();
  removeTempDirs();
});

const TOKEN_RE = /^shub_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

/** Everything the admin commands could change, read straight from the file. */
async function snapshot() {
  const s = await openStoreAt(dbPath);
  try {
    const projects = await s.listProjects();
    const tokens = await Promise.all(projects.map((p) => s.listTokens(p.name)));
    return { projects, tokens };
  } finally {
    await s.close();
  }
}

describe('admin CLI', () => {
  let token = '';
  let tokenId = '';
  let readToken = '';

  it('project create makes a project (creating the db directory)', async () => {
    const r = await runCli(['hub', 'project', 'create', 'team-1.app_x', ...store]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('created project team-1.app_x');
    const s = await snapshot();
    expect(s.projects.map((p) => p.name)).toEqual(['team-1.app_x']);
    expect(s.projects[0]!.headSeq).toBe(0);
  });

  it('token create prints the token alone on stdout, once, and it works', async () => {
    const [w, r] = await Promise.all([
      runCli(['hub', 'token', 'create', '--project', 'team-1.app_x', ...store]),
      runCli(['hub', 'token', 'create', '--project', 'team-1.app_x', '--role', 'read', ...store]),
    ]);
    for (const res of [w, r]) {
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout.endsWith('\n')).toBe(true);
      expect(res.stdout.trim().split('\n')).toHaveLength(1);
      expect(res.stdout.trim()).toMatch(TOKEN_RE);
    }
    token = w.stdout.trim();
    readToken = r.stdout.trim();
    tokenId = TOKEN_RE.exec(token)![1]!;
    expect(w.stderr).toContain(tokenId);
    expect(w.stderr).toContain('(write)');
    expect(r.stderr).toContain('(read)');
    // The secret is not on stderr.
    expect(w.stderr).not.toContain(TOKEN_RE.exec(token)![2]!);

    // It opens the project's stream on a hub running on that file, and can push.
    const hub = await startHub({ dbPath, project: null });
    try {
      const c = await SyncClient.open(hub.url, 'team-1.app_x', token, 'dev-cli');
      const ack = await c.push(1, [makeEvent(1)]);
      expect(ack.acks).toEqual([{ clientActionId: 1, serverSeq: 1 }]);
      await c.close();
      const rc = await SyncClient.open(hub.url, 'team-1.app_x', readToken, 'dev-read');
      await rc.waitForSeq(1);
      await rc.close();
    } finally {
      await hub.close();
    }
  });

  it('token list shows id, role and status but never the secret or its hash', async () => {
    const r = await runCli(['hub', 'token', 'list', '--project', 'team-1.app_x', ...store]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    const mine = lines.find((l) => l.startsWith(tokenId))!;
    expect(mine.split('\t')).toEqual([tokenId, 'write', expect.stringMatching(/^created=\d{4}-/), 'active']);
    const readId = TOKEN_RE.exec(readToken)![1]!;
    expect(lines.find((l) => l.startsWith(readId))!.split('\t')[1]).toBe('read');
    for (const t of [token, readToken]) {
      const secret = TOKEN_RE.exec(t)![2]!;
      expect(r.stdout).not.toContain(secret);
      expect(r.stdout).not.toContain(createHash('sha256').update(secret).digest('hex'));
    }
  });

  it('token revoke marks it revoked; list shows it; a running hub refuses it from then on', async () => {
    const hub = await startHub({ dbPath, project: null });
    try {
      const live = await SyncClient.open(hub.url, 'team-1.app_x', token, 'dev-x');
      const r = await runCli(['hub', 'token', 'revoke', tokenId, ...store]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(`revoked token ${tokenId}`);
      expect((await upgradeRefusal(hub.url + syncPath('team-1.app_x'), { authorization: `Bearer ${token}` })).status).toBe(401);
      await live.close();
    } finally {
      await hub.close();
    }
    const list = await runCli(['hub', 'token', 'list', '--project', 'team-1.app_x', ...store]);
    const line = list.stdout.split('\n').find((l) => l.startsWith(tokenId))!;
    expect(line.split('\t')[3]).toMatch(/^revoked=\d{4}-\d\d-\d\dT/);
    // Revoking twice is not an error and keeps the first revocation time.
    const again = await runCli(['hub', 'token', 'revoke', tokenId, ...store]);
    expect(again.code).toBe(0);
    const list2 = await runCli(['hub', 'token', 'list', '--project', 'team-1.app_x', ...store]);
    expect(list2.stdout.split('\n').find((l) => l.startsWith(tokenId))).toBe(line);
  });

  const bad: [string, string[], number][] = [
    ['a bad project name', ['hub', 'project', 'create', 'bad name!'], 2],
    ['a project name starting with a dot', ['hub', 'project', 'create', '.hidden'], 2],
    ['a project that exists', ['hub', 'project', 'create', 'team-1.app_x'], 1],
    ['project create without a name', ['hub', 'project', 'create'], 2],
    ['an unknown role', ['hub', 'token', 'create', '--project', 'team-1.app_x', '--role', 'superuser'], 2],
    ['a token for an unknown project', ['hub', 'token', 'create', '--project', 'nosuch'], 1],
    ['token create without --project', ['hub', 'token', 'create'], 2],
    ['--project without a value', ['hub', 'token', 'create', '--project'], 2],
    ['an unknown flag', ['hub', 'token', 'create', '--project', 'team-1.app_x', '--colour', 'red'], 2],
    ['token list without --project', ['hub', 'token', 'list'], 2],
    ['token list of an unknown project', ['hub', 'token', 'list', '--project', 'nosuch'], 1],
    ['revoke of an unknown id', ['hub', 'token', 'revoke', '0123456789abcdef'], 1],
    ['revoke of a malformed id', ['hub', 'token', 'revoke', 'not-an-id'], 2],
    ['revoke without an id', ['hub', 'token', 'revoke'], 2],
    ['an unknown subcommand', ['hub', 'token', 'rotate'], 2],
  ];

  it.each(bad)('%s: exits non-zero with one line on stderr and changes nothing', async (_name, args, code) => {
    const before = await snapshot();
    const r = await runCli([...args, ...store]);
    expect(r.code).toBe(code);
    expect(r.stdout).toBe('');
    expect(r.stderr.endsWith('\n')).toBe(true);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^synchub: \S/);
    expect(await snapshot()).toEqual(before);
  });

  it.skipIf(usingPostgres())('commands other than project create refuse a missing --db file instead of creating one', async () => {
    const missing = join(makeTempDir(), 'typo', 'hub.db');
    for (const args of [
      ['hub', 'token', 'list', '--project', 'team-1.app_x'],
      ['hub', 'token', 'create', '--project', 'team-1.app_x'],
      ['hub', 'token', 'revoke', '0123456789abcdef'],
      ['hub', 'project', 'list'],
    ]) {
      const r = await runCli([...args, '--db', missing]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(missing);
      expect(existsSync(missing)).toBe(false);
      expect(existsSync(join(missing, '..'))).toBe(false);
    }
  });
});
