// The command line as a new user meets it: --help everywhere with an example, --version, every
// flag also from its SYNCHUB_* variable (a flag beats it, a bad value is refused like a bad flag),
// and `synchub demo` syncing two devices and exiting 0.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { CLI_PATH, makeTempDir, REPO_ROOT, removeTempDirs, runCli, spawnCli } from '../kit/hub.ts';
import { eventually } from '../kit/ws-client.ts';

afterAll(() => removeTempDirs());

const COMMANDS = [
  ['hub', 'serve'],
  ['hub', 'project', 'create'],
  ['hub', 'project', 'list'],
  ['hub', 'token', 'create'],
  ['hub', 'token', 'list'],
  ['hub', 'token', 'revoke'],
  ['agent', 'init'],
  ['agent', 'run'],
  ['agent', 'status'],
  ['agent', 'conflicts'],
  ['agent', 'tail'],
  ['demo'],
];

/** Run many commands, a few at a time (each is a Node process). */
async function runAll(argvs: string[][], env: NodeJS.ProcessEnv = {}) {
  const results: Awaited<ReturnType<typeof runCli>>[] = [];
  for (let i = 0; i < argvs.length; i += 4) results.push(...(await Promise.all(argvs.slice(i, i + 4).map((a) => runCli(a, { env, timeoutMs: 30_000 })))));
  return results;
}

describe('help and version', () => {
  it('every command answers --help with its usage and an example, exit 0, doing nothing', async () => {
    const results = await runAll(COMMANDS.map((c) => [...c, '--help']));
    results.forEach((r, i) => {
      const name = COMMANDS[i]!.join(' ');
      expect(r.code, name).toBe(0);
      expect(r.stdout, name).toMatch(new RegExp(`^usage: synchub ${name}`));
      expect(r.stdout, name).toMatch(/\nexample:\n {2}\S/);
    });
    // `hub serve --help` exited without starting a hub.
    expect(results[0]!.stdout).not.toContain('listening');
  });

  it('synchub --help lists every command; hub --help and agent --help list theirs', async () => {
    const [top, hub, agent] = await runAll([['--help'], ['hub', '--help'], ['agent', '--help']]);
    for (const r of [top, hub, agent]) expect(r!.code).toBe(0);
    for (const c of COMMANDS) expect(top!.stdout, c.join(' ')).toContain(`synchub ${c.join(' ')}`);
    for (const c of COMMANDS.filter((c) => c[0] === 'hub')) expect(hub!.stdout).toContain(`synchub ${c.join(' ')}`);
    for (const c of COMMANDS.filter((c) => c[0] === 'agent')) expect(agent!.stdout).toContain(`synchub ${c.join(' ')}`);
    expect(hub!.stdout).not.toContain('synchub agent');
    expect(agent!.stdout).not.toContain('synchub hub');
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    expect(r).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });
});

describe('SYNCHUB_* variables', () => {
  it('a variable sets a flag, and the flag beats it', async () => {
    const dir = makeTempDir();
    const fromEnv = join(dir, 'env.db');
    const fromFlag = join(dir, 'flag.db');
    const r1 = await runCli(['hub', 'project', 'create', 'a'], { env: { SYNCHUB_DB: fromEnv } });
    expect(r1.code).toBe(0);
    expect(existsSync(fromEnv)).toBe(true);
    const r2 = await runCli(['hub', 'project', 'create', 'b', '--db', fromFlag], { env: { SYNCHUB_DB: fromEnv } });
    expect(r2.code).toBe(0);
    const list = await runCli(['hub', 'project', 'list'], { env: { SYNCHUB_DB: fromFlag } });
    expect(list.stdout).toMatch(/^b\thead=0/);
    expect((await runCli(['hub', 'project', 'list', '--db', fromEnv])).stdout).toMatch(/^a\thead=0\t[^\n]*\n$/);
  });

  it.each([
    ['SYNCHUB_PORT', 'notaport', ['hub', 'serve']],
    ['SYNCHUB_ADMIN_PORT', '70000', ['hub', 'serve']],
    ['SYNCHUB_ROLE', 'superuser', ['hub', 'token', 'create', '--project', 'p']],
    ['SYNCHUB_JSON', 'maybe', ['agent', 'status', '--db', 'x.db']],
    ['SYNCHUB_AFTER', '-1', ['agent', 'tail', '--hub', 'ws://127.0.0.1:1', '--project', 'p']],
  ])('a bad %s is refused like a bad flag: exit 2, one line naming it', async (name, value, args) => {
    const db = join(makeTempDir(), 'hub.db');
    const r = await runCli(args, { env: { [name]: value, SYNCHUB_DB: db } });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^synchub: ${name}: [^\\n]+\\n$`));
    expect(existsSync(db)).toBe(false);
  });
});

describe('synchub demo', () => {
  it('syncs changes between two devices, prints their arrival and the dashboard URL, exits 0', async () => {
    // Admin port 0: other hubs (other tests, other engineers) may hold the default.
    const r = await runCli(['demo', '--admin-port', '0'], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/dashboard: http:\/\/127\.0\.0\.1:\d+\//);
    expect(r.stdout).toMatch(/laptop wrote issue-1 .* -> on phone after \d+\.\d ms/);
    expect(r.stdout).toMatch(/phone +wrote issue-1 "Write the demo" closed .* -> on laptop after \d+\.\d ms/);
    expect(r.stdout).toMatch(/both devices hold the same 3 issues; the hub's log has 4 events/);
  });

  it('--keep stays up, serving the dashboard, until SIGINT, then exits 0', async () => {
    const demo = spawnCli(['demo', '--keep', '--admin-port', '0']);
    try {
      const [, dashboard] = (await demo.waitForStdout(/dashboard: (http:\/\/\S+)/, 60_000)) as unknown as [string, string];
      await demo.waitForStdout(/wrote issue-4 .* -> on \w+ after/, 60_000);
      const status = (await (await fetch(`${dashboard}api/status`)).json()) as { projects: { project: string; headSeq: number; devices: unknown[] }[] };
      const p = status.projects.find((x) => x.project === 'demo')!;
      expect(p.headSeq).toBeGreaterThanOrEqual(5);
      expect(p.devices).toHaveLength(2);
      demo.proc.kill('SIGINT');
      expect(await demo.exited).toEqual({ code: 0, signal: null });
    } finally {
      await demo.stop();
    }
  });
});

describe('logs', () => {
  it('are JSON lines when stderr is not a terminal', async () => {
    const hub = spawnCli(['hub', 'serve', '--port', '0', '--admin-port', '0', '--log-level', 'info', '--db', join(makeTempDir(), 'hub.db')]);
    try {
      await hub.waitForStdout(/listening on ws:/);
      await eventually(() => /hub listening[^\n]*\n/.test(hub.stderr()), 'the listening log line', 20_000);
      const lines = hub.stderr().trimEnd().split('\n');
      for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
      expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('hub listening');
      hub.proc.kill('SIGTERM');
      expect((await hub.exited).code).toBe(0);
    } finally {
      await hub.stop();
    }
  });

  it('are short readable lines in a terminal', async () => {
    // `script` runs the hub on a pseudo-terminal, as a person's shell would.
    const cmd = [process.execPath, CLI_PATH, 'hub', 'serve', '--port', '0', '--admin-port', '0', '--db', join(makeTempDir(), 'hub.db')].map((a) => `'${a}'`).join(' ');
    const proc = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { ...process.env, SYNCHUB_LOG_LEVEL: 'info' } });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise((r) => proc.once('exit', r));
    try {
      await eventually(() => /hub listening[^\n]*\n/.test(out), 'the listening log line', 20_000);
      // Each log line first clears the terminal's line (a progress line may be drawn there).
      const line = out.split(/\r?\n/).find((l) => l.includes('hub listening'))!.replace('\r\x1b[K', '');
      expect(line).toMatch(/^\d\d:\d\d:\d\d INFO {2}hub listening {2}host=127\.0\.0\.1 port=\d+$/);
      expect(out).not.toMatch(/"level":/);
    } finally {
      // Ctrl-C on the terminal stops the hub (SIGINT to its foreground group): killing `script`
      // alone would leave it running, since the hub takes SIGHUP as "reload the certificate".
      proc.stdin.write('\x03');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    }
  });
});
