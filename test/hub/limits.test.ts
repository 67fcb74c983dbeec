// Admission limits, answered before any socket exists: connections in total and per token, and
// failed authentications per address, each an HTTP 429; refusals are logged with the remote
// address and the token id, never the secret.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { syncPath } from '../../shared/protocol.ts';
import { RejectReason } from '../../shared/errors.ts';
import { connectionCount, freshStoreLocation, initHubDb, metricValue, runCli, spawnHub, startHub, storeFlags, type TestHub } from '../kit/hub.ts';
import { closeAllClients, eventually, makeEvent, SyncClient, upgradeRefusal } from '../kit/ws-client.ts';

let h: TestHub | undefined;
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('admission limits', () => {
  it('maxConnections: an upgrade past the cap gets 429 and no socket; a freed slot admits again', async () => {
    h = await startHub({ options: { maxConnections: 2 } });
    const a = await SyncClient.open(h.url, 'p1', h.token, 'a');
    await SyncClient.open(h.url, 'p1', h.token, 'b');
    const refused = await upgradeRefusal(h.url + syncPath('p1'), bearer(h.token));
    expect(refused.status).toBe(429);
    expect(connectionCount(h.hub)).toBe(2);
    await a.close();
    await eventually(() => connectionCount(h!.hub) === 1, 'the slot to be freed');
    const c = await SyncClient.open(h.url, 'p1', h.token, 'c');
    expect((await c.push(1, [makeEvent(1)])).acks).toHaveLength(1);
  });

  it('maxConnectionsPerToken: one token cannot take more; other tokens are not affected', async () => {
    h = await startHub({ options: { maxConnectionsPerToken: 2 } });
    const first = await SyncClient.open(h.url, 'p1', h.token, 'a');
    await SyncClient.open(h.url, 'p1', h.token, 'b');
    expect((await upgradeRefusal(h.url + syncPath('p1'), bearer(h.token))).status).toBe(429);
    const other = await h.createToken('p1');
    await SyncClient.open(h.url, 'p1', other, 'c');
    // A closed connection gives its slot back.
    await first.close();
    await eventually(() => connectionCount(h!.hub) === 2, 'the first connection to be gone');
    const again = await SyncClient.open(h.url, 'p1', h.token, 'd');
    expect(again.closeInfo).toBeNull();
  });

  it('maxAuthFailuresPerMinute: an address that keeps failing is refused with 429, even with a good token', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
    h = await startHub({ options: { maxAuthFailuresPerMinute: 3 }, log });
    const [, id] = /^shub_([0-9a-f]{16})_/.exec(h.token)!;
    const wrongSecret = `shub_${id}_${'A'.repeat(43)}`;
    for (let i = 0; i < 3; i++) expect((await upgradeRefusal(h.url + syncPath('p1'), bearer(wrongSecret))).status).toBe(401);
    expect((await upgradeRefusal(h.url + syncPath('p1'), bearer(h.token))).status).toBe(429);
    expect(await metricValue(h.hub, 'synchub_auth_failures_total', { status: '429' })).toBe(1);
    // Audit: each refusal says from where and which token id, never the secret.
    const refusals = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.msg === 'upgrade refused');
    expect(refusals).toHaveLength(4);
    for (const r of refusals) {
      expect(r.remoteAddress).toBe('127.0.0.1');
      expect(r.tokenId).toBe(id);
    }
    expect(lines.join('\n')).not.toContain(h.token.slice('shub_0123456789abcdef_'.length));
  });

  it('the limits are flags of hub serve (and SYNCHUB_* variables); a bad value is refused with one line', async () => {
    const location = await freshStoreLocation();
    const token = await initHubDb(location);
    const hub = await spawnHub(location, 0, { args: ['--max-connections', '1'], env: { SYNCHUB_MAX_EVENT_BYTES: '2000' } });
    try {
      const c = await SyncClient.open(hub.url, 'p1', token, 'only');
      expect((await upgradeRefusal(hub.url + syncPath('p1'), bearer(token))).status).toBe(429);
      const big = makeEvent(2, { payload: { schemaVersion: 1, newData: { id: 'x', body: 'y'.repeat(3000) }, previousData: null } });
      const ack = await c.push(1, [makeEvent(1), big]);
      expect(ack.rejected.map((r) => r.reason)).toEqual([RejectReason.PayloadTooLarge]);
    } finally {
      await hub.stop();
    }
    for (const [args, env] of [
      [['--max-connections', '0'], {}],
      [['--allowed-origins', 'not an origin'], {}],
      [[], { SYNCHUB_MAX_EVENTS_PER_SECOND: 'lots' }],
    ] as const) {
      const r = await runCli(['hub', 'serve', '--port', '0', ...storeFlags(location), ...args], { env });
      expect(r.code, JSON.stringify(args)).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});
