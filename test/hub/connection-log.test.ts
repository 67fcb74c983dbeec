// A connection's log lines: every one carries the project, and the device id from the accepted
// hello on (the connection makes its child logger per line, not once per socket).
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../shared/errors.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, eventually, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | null = null;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = null;
});

/** A hub whose log lines are kept, parsed. */
async function loggedHub(options: Parameters<typeof startHub>[0] = {}) {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  h = await startHub({ ...options, log });
  return { hub: h, lines, find: (msg: string) => lines.filter((l) => l.msg === msg) };
}

describe('connection log lines', () => {
  it('carry the project, and the device id once hello is accepted', async () => {
    const { hub, find } = await loggedHub();
    const c = await SyncClient.open(hub.url, 'p1', hub.token, 'dev-log');
    await eventually(() => find('device connected').length === 1, 'device connected line');
    expect(find('device connected')[0]).toMatchObject({ project: 'p1', deviceId: 'dev-log', afterSeq: 0, headSeq: 0 });
    c.send({ type: 'hello', protocol: 1, deviceId: 'dev-log', afterSeq: 0 });
    await c.waitForClose();
    expect(find('closing connection')).toEqual([expect.objectContaining({ project: 'p1', deviceId: 'dev-log', code: ErrorCode.DuplicateHello })]);

    const d = await SyncClient.open(hub.url, 'p1', hub.token, 'dev-quiet');
    await d.close();
    await eventually(() => find('device disconnected').length === 1, 'device disconnected line');
    expect(find('device disconnected')[0]).toMatchObject({ project: 'p1', deviceId: 'dev-quiet' });
  });

  it('carry the project only before hello', async () => {
    const { hub, find } = await loggedHub({ options: { helloTimeoutMs: 100 } });
    const c = await SyncClient.connect(hub.url, 'p1', hub.token);
    await c.waitForClose();
    const [line] = find('closing connection');
    expect(line).toMatchObject({ project: 'p1', code: ErrorCode.HelloRequired });
    expect(line).not.toHaveProperty('deviceId');
  });
});
