// The chaos suite's own parts: the fault proxy does what each fault claims, and the fault plan is a
// pure function of the seed that places every guaranteed fault. (A harness that injects nothing
// proves nothing.)
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom, eventually, delay } from '../kit/ws-client.ts';
import { planFaults, shortConfig } from './harness.ts';
import { FaultProxy } from './proxy.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A loopback server that echoes, or streams `stream` bytes on connect. */
async function server(opts: { stream?: number } = {}): Promise<number> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((c) => {
    sockets.add(c);
    c.on('error', () => {});
    if (opts.stream) c.write(Buffer.alloc(opts.stream, 1));
    else c.pipe(c);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const c of sockets) c.destroy();
    return new Promise<void>((r) => s.close(() => r()));
  });
  return (s.address() as net.AddressInfo).port;
}

async function proxyTo(port: number): Promise<FaultProxy> {
  const p = new FaultProxy(port);
  await p.listen();
  cleanups.push(() => p.close());
  return p;
}

interface Client {
  socket: net.Socket;
  received(): number;
  closed(): 'open' | 'end' | 'error';
}

async function connect(port: number): Promise<Client> {
  const socket = net.connect(port, '127.0.0.1');
  let bytes = 0;
  let state: 'open' | 'end' | 'error' = 'open';
  socket.on('data', (d: Buffer) => (bytes += d.length));
  socket.on('end', () => (state = 'end'));
  socket.on('error', () => (state = 'error'));
  socket.on('close', () => (state = state === 'open' ? 'end' : state));
  // A proxy in `cut` may reset the connection before Node reports it connected.
  await new Promise<void>((r) => {
    socket.once('connect', () => r());
    socket.once('close', () => r());
  });
  cleanups.push(() => void socket.destroy());
  return { socket, received: () => bytes, closed: () => state };
}

describe('FaultProxy', () => {
  it('forwards both ways when up', async () => {
    const p = await proxyTo(await server());
    const c = await connect(p.port);
    c.socket.write('hello');
    await eventually(() => c.received() === 5, 'echo through the proxy');
  });

  it('cut resets open connections and refuses new ones until healed', async () => {
    const p = await proxyTo(await server());
    const c = await connect(p.port);
    p.cut();
    await eventually(() => c.closed() !== 'open', 'the open connection to be reset');
    const refused = await connect(p.port);
    await eventually(() => refused.closed() !== 'open', 'a new connection to be reset');
    p.heal();
    const again = await connect(p.port);
    again.socket.write('ok');
    await eventually(() => again.received() === 2, 'echo after heal');
  });

  it('stall delivers nothing and closes nothing, then delivers what was held on heal', async () => {
    const p = await proxyTo(await server());
    const c = await connect(p.port);
    p.stall();
    c.socket.write('held');
    await delay(300);
    expect(c.received()).toBe(0);
    expect(c.closed()).toBe('open');
    p.heal();
    await eventually(() => c.received() === 4, 'the held bytes after heal');
  });

  it('slow delivers hub -> agent bytes at about the given rate', async () => {
    const p = await proxyTo(await server({ stream: 200_000 }));
    p.slow(20_000);
    const c = await connect(p.port);
    await delay(1_000);
    // ~20 KB in the first second (one tick of slack either way), far from the 200 KB sent.
    expect(c.received()).toBeGreaterThan(10_000);
    expect(c.received()).toBeLessThan(30_000);
    p.slow(null);
    await eventually(() => c.received() === 200_000, 'the rest at full speed');
  });

  it('reset drops the open connections once and accepts new ones', async () => {
    const p = await proxyTo(await server());
    const c = await connect(p.port);
    p.reset();
    await eventually(() => c.closed() !== 'open', 'the connection to be reset');
    const next = await connect(p.port);
    next.socket.write('x');
    await eventually(() => next.received() === 1, 'echo on a new connection');
  });
});

describe('planFaults', () => {
  it('is a function of the seed and places every guaranteed fault inside the phase', () => {
    const cfg = shortConfig(7);
    const a = planFaults(cfg, seededRandom(7));
    expect(planFaults(cfg, seededRandom(7))).toEqual(a);
    expect(planFaults(cfg, seededRandom(8))).not.toEqual(a);
    for (const [kind, n] of Object.entries(cfg.guaranteed)) {
      expect(a.filter((f) => f.kind === kind).length, kind).toBeGreaterThanOrEqual(n);
    }
    for (const f of a) expect(f.at + f.durationMs).toBeLessThanOrEqual(cfg.faultMs);
    // No two link faults overlap on one device.
    const link = a.filter((f) => !['hub_kill', 'agent_kill'].includes(f.kind));
    for (const x of link) {
      for (const y of link) {
        if (x !== y && x.device === y.device) expect(x.at + x.durationMs <= y.at || y.at + y.durationMs <= x.at).toBe(true);
      }
    }
  });
});
