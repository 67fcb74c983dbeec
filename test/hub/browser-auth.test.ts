// Browser auth: a web page cannot set headers on a WebSocket, so it offers two subprotocols,
// `synchub.v1` and `synchub.bearer.<token>`. The hub checks that token exactly as the header
// (401/403 before a socket exists), selects `synchub.v1`, never echoes the token, and with
// allowedOrigins set refuses other origins with 403.
import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { syncPath } from '../../shared/protocol.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvent, SyncClient } from '../kit/ws-client.ts';

let h: TestHub | undefined;
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  await closeAllClients();
  await h?.close();
  h = undefined;
});

/** Open like a browser would; resolves with the socket and the hub's response headers, or the refusal status. */
function browserOpen(url: string, protocols: string[], origin?: string): Promise<{ ws: WebSocket; headers: IncomingMessage['headers'] } | { status: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, origin ? { origin } : {});
    sockets.push(ws);
    let headers: IncomingMessage['headers'] = {};
    ws.once('upgrade', (res) => (headers = res.headers));
    ws.once('open', () => resolve({ ws, headers }));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    ws.once('error', reject);
  });
}

function firstFrame(ws: WebSocket): Promise<Record<string, unknown>> {
  return new Promise((resolve) => ws.once('message', (d) => resolve(JSON.parse(String(d)))));
}

describe('browser auth with subprotocols', () => {
  it('accepts the token as a subprotocol, selects synchub.v1, never echoes the token, and streams', async () => {
    h = await startHub();
    const opened = await browserOpen(h.url + syncPath('p1'), ['synchub.v1', `synchub.bearer.${h.token}`], 'https://app.example');
    if (!('ws' in opened)) throw new Error(`refused with ${opened.status}`);
    const { ws, headers } = opened;
    expect(ws.protocol).toBe('synchub.v1');
    expect(JSON.stringify(headers)).not.toContain(h.token.slice('shub_0123456789abcdef_'.length));
    const welcome = firstFrame(ws);
    ws.send(JSON.stringify({ type: 'hello', protocol: 1, deviceId: 'browser-1', afterSeq: 0 }));
    expect(await welcome).toMatchObject({ type: 'welcome', deviceId: 'browser-1' });
    // Live events reach the page.
    const next = firstFrame(ws);
    await (await SyncClient.open(h.url, 'p1', h.token, 'desktop')).push(1, [makeEvent(1)]);
    expect(await next).toMatchObject({ type: 'events', throughSeq: 1 });
  });

  it('refuses a bad, missing or other-project token offered as a subprotocol, before any socket', async () => {
    h = await startHub();
    await h.createProject('p2');
    const other = await h.createToken('p2');
    const url = h.url + syncPath('p1');
    expect(await browserOpen(url, ['synchub.v1', `synchub.bearer.shub_0123456789abcdef_${'A'.repeat(43)}`])).toEqual({ status: 401 });
    expect(await browserOpen(url, ['synchub.v1'])).toEqual({ status: 401 });
    expect(await browserOpen(url, ['synchub.v1', `synchub.bearer.${other}`])).toEqual({ status: 403 });
    // The token only counts beside synchub.v1.
    expect(await browserOpen(url, [`synchub.bearer.${h.token}`])).toEqual({ status: 401 });
  });

  it('with allowedOrigins, refuses any other Origin with 403; agents (no Origin) are unaffected', async () => {
    h = await startHub({ options: { allowedOrigins: ['https://app.example'] } });
    const url = h.url + syncPath('p1');
    const protocols = ['synchub.v1', `synchub.bearer.${h.token}`];
    expect(await browserOpen(url, protocols, 'https://evil.example')).toEqual({ status: 403 });
    const ok = await browserOpen(url, protocols, 'https://app.example');
    expect('ws' in ok).toBe(true);
    const agent = await SyncClient.open(h.url, 'p1', h.token, 'agent');
    expect((await agent.push(1, [makeEvent(1)])).acks).toHaveLength(1);
  });
});
