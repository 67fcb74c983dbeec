// The agent's link: backoff shape, resume after a hub restart, and detection of a
// dead link that never closes (a stalled TCP path).
import { createServer, Socket, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Backoff } from '../../agent/backoff.ts';
import { Link, MAX_AGENT_FRAME_BYTES, syncUrl } from '../../agent/link.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { eventually } from '../kit/ws-client.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('Backoff', () => {
  it('draws uniformly below an exponentially growing ceiling, capped, and resets', () => {
    let r = 0.999;
    const b = new Backoff({ baseMs: 250, capMs: 30_000 }, () => r);
    const ceilings = Array.from({ length: 10 }, () => b.next());
    expect(ceilings).toEqual([250, 500, 999, 1998, 3996, 7992, 15984, 29970, 29970, 29970]);
    r = 0;
    expect(b.next()).toBe(0); // full jitter: may be anything down to zero
    b.reset();
    r = 0.999;
    expect(b.next()).toBe(250);
  });
});

describe('syncUrl', () => {
  it('appends the sync path to a base URL and keeps a full one', () => {
    expect(syncUrl('ws://h:8787', 'p')).toBe('ws://h:8787/v1/projects/p/sync');
    expect(syncUrl('wss://h/base/', 'p')).toBe('wss://h/base/v1/projects/p/sync');
    expect(syncUrl('ws://h:1/v1/projects/p/sync', 'other')).toBe('ws://h:1/v1/projects/p/sync');
    expect(() => syncUrl('http://h', 'p')).toThrow(/ws:\/\//);
  });

  it('maps a comma-separated list of hub nodes to their sync URLs', () => {
    expect(syncUrl('ws://a:1, ws://b:2/x', 'p')).toBe('ws://a:1/v1/projects/p/sync,ws://b:2/x/v1/projects/p/sync');
    expect(() => syncUrl('ws://a:1,,ws://b:2', 'p')).toThrow();
  });
});

/** A TCP proxy on loopback that can stop forwarding without closing anything (a black hole). */
async function stallingProxy(target: number): Promise<{ port: number; stall(): void; server: Server }> {
  let stalled = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = new Socket();
    upstream.connect(target, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d) => void (!stalled && upstream.write(d)));
    upstream.on('data', (d) => void (!stalled && client.write(d)));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as AddressInfo).port, stall: () => (stalled = true), server };
}

/** Start a link, recording why it went down and how many welcomes it got. */
function started(link: Link): { downs: string[]; welcomes: () => number } {
  const downs: string[] = [];
  let welcomes = 0;
  link.on('down', (d) => downs.push(d.reason));
  link.on('welcome', () => welcomes++);
  link.start();
  return { downs, welcomes: () => welcomes };
}

describe('Link', () => {
  let hub: TestHub;

  it('notices a link that went silent (no close, no pong) within the dead-link bound', async () => {
    hub = await startHub();
    cleanups.push(() => hub.close());
    const proxy = await stallingProxy(hub.port);
    const link = new Link({
      url: syncUrl(`ws://127.0.0.1:${proxy.port}`, hub.project),
      token: hub.token,
      deviceId: 'd1',
      afterSeq: () => 0,
      pingIntervalMs: 200,
      deadAfterMs: 600,
      backoffBaseMs: 10,
      backoffCapMs: 50,
    });
    cleanups.push(() => link.stop());
    const { downs, welcomes } = started(link);
    await eventually(() => welcomes() === 1, 'first welcome');
    const stalledAt = Date.now();
    proxy.stall();
    await eventually(() => downs.length > 0, 'the link to be declared dead', 5000);
    const detectedIn = Date.now() - stalledAt;
    expect(downs[0]).toMatch(/presumed dead/);
    expect(detectedIn).toBeLessThan(2000);
  });

  it('reconnects with the current cursor after the hub goes away and comes back on the same port', async () => {
    hub = await startHub();
    const port = hub.port;
    let cursor = 7;
    const hellos: number[] = [];
    const link = new Link({ url: syncUrl(hub.url, hub.project), token: hub.token, deviceId: 'd2', afterSeq: () => {
      hellos.push(cursor);
      return 0; // the hub's head is 0: a real cursor of 7 would be cursor_ahead
    }, backoffBaseMs: 10, backoffCapMs: 100 });
    cleanups.push(() => link.stop());
    let welcomes = 0;
    link.on('welcome', () => welcomes++);
    link.start();
    await eventually(() => welcomes === 1, 'first welcome');
    cursor = 9;
    const { dbPath } = hub;
    // Keep the database file: close the hub but not its temp dir.
    await hub.hub.close();
    await eventually(() => link.state !== 'open', 'link to notice the hub is gone');
    const { Hub } = await import('../../hub/server.ts');
    const { SqliteEventStore } = await import('../../hub/store/sqlite.ts');
    const again = new Hub(new SqliteEventStore(dbPath), { port, host: '127.0.0.1' });
    await again.listen();
    cleanups.push(async () => {
      await again.close();
      await hub.close();
    });
    await eventually(() => welcomes === 2, 'welcome from the restarted hub', 5000);
    expect(hellos[0]).toBe(7);
    expect(hellos.at(-1)).toBe(9);
  });

  it('with several hub nodes, tries the next one after a failure and stays on one that works', async () => {
    hub = await startHub();
    cleanups.push(() => hub.close());
    // A port nothing listens on: the first node is down.
    const dead = await new Promise<number>((resolve) => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const link = new Link({
      url: syncUrl(`ws://127.0.0.1:${dead},${hub.url}`, hub.project),
      token: hub.token,
      deviceId: 'd3',
      afterSeq: () => 0,
      backoffBaseMs: 10,
      backoffCapMs: 50,
    });
    cleanups.push(() => link.stop());
    const { downs, welcomes } = started(link);
    await eventually(() => welcomes() === 1, 'a welcome from the second node', 5000);
    expect(downs).toHaveLength(1);
    expect(downs[0]).toMatch(/ECONNREFUSED/);
  });

  it('treats the hub as untrusted: a frame past its limit, or one that fails the schema, drops the link; it reconnects', async () => {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    cleanups.push(() => new Promise<void>((r) => wss.close(() => r())));
    let connections = 0;
    wss.on('connection', (ws) => {
      connections++;
      ws.on('message', () => {
        ws.send(JSON.stringify({ type: 'welcome', project: 'p', deviceId: 'd4', headSeq: 0 }));
        // First connection: a frame larger than the agent reads; then one that is not a frame at all.
        if (connections === 1) ws.send(Buffer.alloc(MAX_AGENT_FRAME_BYTES + 1, 32));
        else if (connections === 2) ws.send(JSON.stringify({ type: 'events', events: [{ serverSeq: '1; DROP TABLE x' }], throughSeq: 1, headSeq: 1 }));
      });
    });
    const port = (wss.address() as AddressInfo).port;
    const link = new Link({ url: syncUrl(`ws://127.0.0.1:${port}`, 'p'), token: 't', deviceId: 'd4', afterSeq: () => 0, backoffBaseMs: 10, backoffCapMs: 50 });
    cleanups.push(() => link.stop());
    const frames: unknown[] = [];
    link.on('events', (f) => frames.push(f));
    const { downs } = started(link);
    await eventually(() => connections >= 3, 'the link to reconnect after each bad frame', 10_000);
    expect(downs[0]).toMatch(/max payload/i);
    expect(downs.length).toBeGreaterThanOrEqual(2);
    expect(frames).toEqual([]);
  });
});
