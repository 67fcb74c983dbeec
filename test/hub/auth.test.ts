// Guarantee 5 (isolation) and the upgrade-time refusals: no socket is opened for a
// missing, malformed, unknown, revoked or wrong-project token; a read token cannot push.
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CloseCode, ErrorCode } from '../../shared/errors.ts';
import { syncPath } from '../../shared/protocol.ts';
import { connectionCount, metricValue, startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, eventually, makeEvent, SyncClient, upgradeRefusal } from '../kit/ws-client.ts';

let h: TestHub;
beforeEach(async () => {
  h = await startHub();
});
afterEach(async () => {
  await closeAllClients();
  await h.close();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const httpUrl = (path: string) => `http://127.0.0.1:${h.port}${path}`;

describe('auth at the upgrade', () => {
  it('refuses bad or missing tokens with 401 and opens no socket', async () => {
    const url = h.url + syncPath('p1');
    const [, id] = /^shub_([0-9a-f]{16})_/.exec(h.token)!;
    const revoked = await h.createToken('p1');
    await h.store.revokeToken(/^shub_([0-9a-f]{16})_/.exec(revoked)![1]!, new Date().toISOString());
    const cases: [string, Record<string, string>][] = [
      ['no Authorization header', {}],
      ['empty bearer', { authorization: 'Bearer ' }],
      ['not a bearer scheme', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }],
      ['malformed token', bearer('not-a-token')],
      ['token with extra text', { authorization: `Bearer ${h.token} extra` }],
      ['unknown token id', bearer(`shub_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}`)],
      ['right id, wrong secret', bearer(`shub_${id}_${randomBytes(32).toString('base64url')}`)],
      ['revoked token', bearer(revoked)],
    ];
    for (const [name, headers] of cases) {
      const refusal = await upgradeRefusal(url, headers);
      expect(refusal.status, name).toBe(401);
    }
    expect(connectionCount(h.hub)).toBe(0);
    expect(await metricValue(h.hub, 'synchub_auth_failures_total', { status: '401' })).toBe(cases.length);
    // The real token still works.
    const ok = await SyncClient.open(h.url, 'p1', h.token, 'dev-ok');
    expect(ok.closeInfo).toBeNull();
  });

  it('refuses a token of another project with 403, and an unknown project with 403', async () => {
    await h.createProject('p2');
    const t2 = await h.createToken('p2');
    expect((await upgradeRefusal(h.url + syncPath('p1'), bearer(t2))).status).toBe(403);
    expect((await upgradeRefusal(h.url + syncPath('p2'), bearer(h.token))).status).toBe(403);
    expect((await upgradeRefusal(h.url + syncPath('nosuch'), bearer(h.token))).status).toBe(403);
    expect(connectionCount(h.hub)).toBe(0);
  });

  it('answers unknown paths with 404', async () => {
    for (const path of ['/', '/v1/projects/p1', '/v1/projects/p1/sync/extra', '/v1/projects//sync', '/v2/projects/p1/sync', '/v1/projects/p1/pull', '/v1/projects/%E0%A4%A/sync']) {
      expect((await upgradeRefusal(`${h.url}${path}`, bearer(h.token))).status, path).toBe(404);
    }
    expect(connectionCount(h.hub)).toBe(0);
  });

  it('revoking a token closes its open sockets within a second and refuses new ones; other tokens carry on', async () => {
    const t = await h.createToken('p1');
    const c = await SyncClient.open(h.url, 'p1', t, 'dev-a');
    const other = await SyncClient.open(h.url, 'p1', h.token, 'dev-b');
    await h.store.revokeToken(/^shub_([0-9a-f]{16})_/.exec(t)![1]!, new Date().toISOString());
    const close = await c.waitForClose(5_000);
    expect(c.errors.map((e) => e.code)).toEqual([ErrorCode.TokenRevoked]);
    expect(close).toEqual({ code: CloseCode.PolicyViolation, reason: ErrorCode.TokenRevoked });
    expect((await upgradeRefusal(h.url + syncPath('p1'), bearer(t))).status).toBe(401);
    expect((await other.push(1, [makeEvent(1)])).acks).toHaveLength(1);
    expect(other.closeInfo).toBeNull();
  });

  it('a device id belongs to the token that first used it: another token is refused under it, and shares nothing', async () => {
    const victim = await SyncClient.open(h.url, 'p1', h.token, 'phone-1');
    await victim.push(1, [makeEvent(1)]);
    // An attacker with a write token of its own, using the victim's device id (visible in the stream).
    const attackerToken = await h.createToken('p1');
    const attacker = await SyncClient.connect(h.url, 'p1', attackerToken);
    attacker.send({ type: 'hello', protocol: 1, deviceId: 'phone-1', afterSeq: 0 });
    attacker.send({ type: 'push', batch: 1, events: [makeEvent(2), makeEvent(3)] });
    const close = await attacker.waitForClose();
    expect(attacker.errors.map((e) => e.code)).toEqual([ErrorCode.Forbidden]);
    expect(close.code).toBe(CloseCode.PolicyViolation);
    expect(attacker.acks.size).toBe(0);
    // The victim's next changes are stored as its own, not answered as duplicates of the attacker's.
    const ack = await victim.push(2, [makeEvent(2), makeEvent(3)]);
    expect(ack.rejected).toEqual([]);
    expect(ack.acks.map((a) => a.serverSeq)).toEqual([2, 3]);
    // A token shared by several devices still works, each with its own device id.
    const laptop = await SyncClient.open(h.url, 'p1', h.token, 'laptop-1');
    expect((await laptop.push(1, [makeEvent(1)])).acks).toHaveLength(1);
    // And the attacker's token works under a device id of its own.
    const own = await SyncClient.open(h.url, 'p1', attackerToken, 'attacker-own');
    expect((await own.push(1, [makeEvent(9)])).acks).toHaveLength(1);
  });

  it('a device whose token was revoked keeps its id with a new token (rotation)', async () => {
    const old = await h.createToken('p1');
    const before = await SyncClient.open(h.url, 'p1', old, 'tablet');
    await before.push(1, [makeEvent(1)]);
    await h.store.revokeToken(/^shub_([0-9a-f]{16})_/.exec(old)![1]!, new Date().toISOString());
    await before.waitForClose(5_000);
    const fresh = await h.createToken('p1');
    const after = await SyncClient.open(h.url, 'p1', fresh, 'tablet', 1);
    expect((await after.push(2, [makeEvent(2)])).acks).toHaveLength(1);
    // Now the new token holds it: another live token is refused.
    const third = await SyncClient.connect(h.url, 'p1', await h.createToken('p1'));
    third.send({ type: 'hello', protocol: 1, deviceId: 'tablet', afterSeq: 0 });
    await third.waitForClose();
    expect(third.errors.map((e) => e.code)).toEqual([ErrorCode.Forbidden]);
  });

  it('a read token can connect and stream, but a push is forbidden and stores nothing', async () => {
    const readToken = await h.createToken('p1', 'read');
    const writer = await SyncClient.open(h.url, 'p1', h.token, 'writer');
    await writer.push(1, [makeEvent(1), makeEvent(2)]);
    const reader = await SyncClient.open(h.url, 'p1', readToken, 'reader');
    await reader.waitForSeq(2);
    await writer.push(2, [makeEvent(3)]);
    await reader.waitForSeq(3);
    expect(reader.seqs).toEqual([1, 2, 3]);

    reader.send({ type: 'push', batch: 1, events: [makeEvent(100)] });
    const close = await reader.waitForClose();
    expect(reader.errors.map((e) => e.code)).toEqual([ErrorCode.Forbidden]);
    expect(close).toEqual({ code: CloseCode.PolicyViolation, reason: ErrorCode.Forbidden });
    expect(await h.store.headSeq('p1')).toBe(3);

    // Also when the push is pipelined right behind the hello.
    const eager = await SyncClient.connect(h.url, 'p1', readToken);
    eager.send({ type: 'hello', protocol: 1, deviceId: 'eager', afterSeq: 0 });
    eager.send({ type: 'push', batch: 1, events: [makeEvent(101)] });
    await eager.waitForClose();
    expect(eager.errors.map((e) => e.code)).toEqual([ErrorCode.Forbidden]);
    expect(await h.store.headSeq('p1')).toBe(3);

    // The writer was not disturbed.
    const ack = await writer.push(3, [makeEvent(4)]);
    expect(ack.acks[0]!.serverSeq).toBe(4);
  });

  it('an admin token can push', async () => {
    const admin = await h.createToken('p1', 'admin');
    const c = await SyncClient.open(h.url, 'p1', admin, 'dev-admin');
    const ack = await c.push(1, [makeEvent(1)]);
    expect(ack.acks).toEqual([{ clientActionId: 1, serverSeq: 1 }]);
  });
});

describe('HTTP endpoints', () => {
  it('/healthz answers 200 with the connection count', async () => {
    let res = await fetch(httpUrl('/healthz'));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, connections: 0 });
    await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    res = await fetch(httpUrl('/healthz'));
    expect(await res.json()).toEqual({ ok: true, connections: 1 });
  });

  it('/readyz answers 200 with the readiness, for a load balancer', async () => {
    // With PostgreSQL a hub is ready once its LISTEN connection is up, a moment after listen().
    await eventually(async () => (await fetch(httpUrl('/readyz'))).status === 200, 'the hub to be ready');
    const res = await fetch(httpUrl('/readyz'));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ready: true, reason: null, stopping: false, store: true });
  });

  it('other plain HTTP paths get 404', async () => {
    expect((await fetch(httpUrl('/nope'))).status).toBe(404);
    // Everything else for operators lives on the admin listener only (test/hub/admin.test.ts).
    for (const path of ['/metrics', '/api/status', '/']) expect((await fetch(httpUrl(path))).status, path).toBe(404);
    expect((await fetch(httpUrl('/v1/projects/p1/sync'))).status).toBe(404);
  });
});
