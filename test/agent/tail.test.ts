// `synchub agent tail`: the real CLI process against a real hub, with a read token: every event
// as one JSON line on stdout, in seq order, the backlog first and then live ones as they commit.
import { afterEach, describe, expect, it } from 'vitest';
import type { TestHub } from '../kit/hub.ts';
import { removeTempDirs, spawnCli, startHub, type RunningCli } from '../kit/hub.ts';
import { closeAllClients, makeEvent, makeEvents, SyncClient } from '../kit/ws-client.ts';

let h: TestHub;
const procs: RunningCli[] = [];
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.stop()));
  await closeAllClients();
  await h?.close();
  removeTempDirs();
});

function tail(args: string[], token: string): RunningCli {
  const p = spawnCli(['agent', 'tail', '--hub', h.url, '--project', 'p1', ...args], { env: { SYNCHUB_TOKEN: token } });
  procs.push(p);
  return p;
}

/** stdout as parsed JSON lines, once it holds `n` of them. */
async function lines(p: RunningCli, n: number): Promise<Record<string, unknown>[]> {
  await p.waitForStdout(new RegExp(`^(?:.*\\n){${n}}`));
  return p.stdout().trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('agent tail', () => {
  it('prints the backlog and then live events, one JSON line each, with a read token', async () => {
    h = await startHub();
    const readToken = await h.createToken('p1', 'read');
    const writer = await SyncClient.open(h.url, 'p1', h.token, 'dev-writer');
    await writer.push(1, makeEvents(1, 3));

    const t = tail([], readToken);
    const backlog = await lines(t, 3);
    expect(backlog.map((e) => e.serverSeq)).toEqual([1, 2, 3]);

    await writer.push(2, [makeEvent(4, { entityId: 'live-one' })]);
    const all = await lines(t, 4);
    expect(all.map((e) => e.serverSeq)).toEqual([1, 2, 3, 4]);
    expect(all[3]).toMatchObject({ serverSeq: 4, deviceId: 'dev-writer', clientActionId: 4, entityId: 'live-one', actionType: 'create' });
    expect(typeof all[3]!.serverTimestamp).toBe('string');

    t.proc.kill('SIGTERM');
    expect(await t.exited).toEqual({ code: 0, signal: null });
    expect(t.stdout().trimEnd().split('\n')).toHaveLength(4);
  });

  it('--after N starts after seq N; SYNCHUB_AFTER does the same and the flag beats it', async () => {
    h = await startHub();
    const writer = await SyncClient.open(h.url, 'p1', h.token, 'dev-writer');
    await writer.push(1, makeEvents(1, 5));
    const t = tail(['--after', '3'], h.token);
    expect((await lines(t, 2)).map((e) => e.serverSeq)).toEqual([4, 5]);

    const fromEnv = spawnCli(['agent', 'tail', '--hub', h.url, '--project', 'p1'], { env: { SYNCHUB_TOKEN: h.token, SYNCHUB_AFTER: '4' } });
    procs.push(fromEnv);
    expect((await lines(fromEnv, 1)).map((e) => e.serverSeq)).toEqual([5]);
    const both = spawnCli(['agent', 'tail', '--hub', h.url, '--project', 'p1', '--after', '2'], { env: { SYNCHUB_TOKEN: h.token, SYNCHUB_AFTER: '4' } });
    procs.push(both);
    expect((await lines(both, 3)).map((e) => e.serverSeq)).toEqual([3, 4, 5]);
  });

  it('exits 1 saying why when the hub refuses the token', async () => {
    h = await startHub();
    const t = tail([], 'shub_0123456789abcdef_nope');
    const exit = await t.exited;
    expect(exit.code).toBe(1);
    expect(t.stdout()).toBe('');
    expect(t.stderr()).toMatch(/^synchub agent tail: refused: hub refused the connection: HTTP 401\n$/m);
  });

  it('exits 1 when --after is past the head', async () => {
    h = await startHub();
    const t = tail(['--after', '10'], h.token);
    expect((await t.exited).code).toBe(1);
    expect(t.stderr()).toMatch(/synchub agent tail: cursor_ahead: /);
  });
});
