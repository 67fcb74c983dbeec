// A server under test, alone in its own process (so it never shares an event loop
// with the load generator). Started by run.ts; configured by a `start` message:
//   {system, db?, postgres?, port?, preload?}  -> replies {type:'ready', port}
// then answers {type:'rss'} with its memory use and {type:'stop'} by closing and exiting
// (a clean exit, so that --cpu-prof can write its profile).
import { createServer, type IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import * as Y from 'yjs';
import type { EventStore } from '../../hub/store/event-store.ts';
import Database from 'better-sqlite3';
import { childFatal, fromParent, makeRow, type ServerSystem } from '../lib/common.ts';
import { EVENTS_SCHEMA } from '../../hub/store/sqlite-schema.ts';
import { CHANNEL, DOC, SECRET } from '../lib/clients.ts';

interface StartMsg {
  [k: string]: unknown;
  type: 'start';
  system: ServerSystem;
  /** synchub: hub database file (project and token already created); durablefloor: a file to create. */
  db?: string;
  /** synchub-pg, synchub-pg2 (each node): the PostgreSQL database URL (schema, project and token already there). */
  postgres?: string;
  /** Logux picks no free port by itself: the orchestrator passes one. */
  port?: number;
  /** Catch-up: events already in the server before any client connects (wsfloor, Yjs servers). */
  preload?: number;
}

const require = createRequire(import.meta.url);
process.on('uncaughtException', childFatal);
process.on('unhandledRejection', childFatal);

const start = await fromParent<StartMsg>('start');
let close: () => Promise<void> = async () => {};
let port: number;

switch (start.system) {
  case 'synchub':
  case 'synchub-pg':
  case 'synchub-pg2':
    ({ port, close } = await startSynchub(start));
    break;
  case 'wsfloor':
    ({ port, close } = await startWsFloor(start));
    break;
  case 'durablefloor':
    ({ port, close } = await startDurableFloor(start));
    break;
  case 'hocuspocus':
    ({ port, close } = await startHocuspocus(start));
    break;
  case 'ywebsocket':
    ({ port, close } = await startYWebsocket(start));
    break;
  case 'logux':
    ({ port, close } = await startLogux(start));
    break;
  default:
    throw new Error(`unknown system ${String(start.system)}`);
}

process.on('message', (m: { type: string }) => {
  if (m.type === 'rss') {
    const mem = process.memoryUsage();
    process.send!({ type: 'rss', rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external });
  } else if (m.type === 'stop') {
    const hard = setTimeout(() => process.exit(0), 5000);
    hard.unref();
    close()
      .catch(() => {})
      .finally(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready', port });

// ---------------------------------------------------------------- synchub: the real Hub over a real SQLite file or PostgreSQL

async function startSynchub(s: StartMsg) {
  // BENCH_HUB_DIR: benchmark a patched copy of hub/ (with its shared/ beside it) instead of the tree's own.
  const hubDir = process.env.BENCH_HUB_DIR ? pathToFileURL(`${process.env.BENCH_HUB_DIR.replace(/\/$/, '')}/`).href : new URL('../../hub/', import.meta.url).href;
  const { Hub } = (await import(new URL('server.ts', hubDir).href)) as typeof import('../../hub/server.ts');
  let store: EventStore;
  if (s.postgres) {
    // One node of several, as `hub serve --postgres URL` opens it: its own pool and LISTEN connection.
    const { PostgresEventStore } = (await import(new URL('store/postgres.ts', hubDir).href)) as typeof import('../../hub/store/postgres.ts');
    store = await PostgresEventStore.open(s.postgres);
  } else {
    const { SqliteEventStore } = (await import(new URL('store/sqlite.ts', hubDir).href)) as typeof import('../../hub/store/sqlite.ts');
    store = new SqliteEventStore(s.db!);
  }
  const debug = process.env.BENCH_DEBUG_HUB === '1' ? instrument(store) : null;
  // The conns scenario opens 10,000+ sockets with one token: the product's admission caps (1,000 per
  // token, 50,000 in all) are raised here, in the benchmark, not in the product.
  const hub = new Hub(store, { port: 0, host: '127.0.0.1', maxConnections: 1_000_000, maxConnectionsPerToken: 1_000_000 });
  const port = await hub.listen();
  return {
    port,
    close: async () => {
      await hub.close();
      debug?.();
    },
  };
}

/**
 * BENCH_DEBUG_HUB=1: time every store.append until its promise settles (SQLite: synchronous
 * on the event loop, fsync included; PostgreSQL: the round trips of the transaction, COMMIT's
 * WAL flush included) and the event-loop delay, and print both when the hub stops.
 */
function instrument(store: { append: (...a: never[]) => Promise<unknown> }) {
  const { monitorEventLoopDelay } = require('node:perf_hooks') as typeof import('node:perf_hooks');
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const appends: number[] = [];
  const orig = store.append.bind(store);
  store.append = ((...a: never[]) => {
    const t = performance.now();
    const r = orig(...a);
    const done = () => appends.push(performance.now() - t);
    r.then(done, done);
    return r;
  }) as typeof store.append;
  return () => {
    appends.sort((x, y) => x - y);
    const q = (p: number) => appends[Math.min(appends.length - 1, Math.floor(appends.length * p))]?.toFixed(2);
    process.stderr.write(
      `[hub debug] appends ${appends.length}: p50 ${q(0.5)} p99 ${q(0.99)} p999 ${q(0.999)} max ${q(1)} ms; ` +
        `event-loop delay p50 ${(loop.percentile(50) / 1e6).toFixed(2)} p99 ${(loop.percentile(99) / 1e6).toFixed(2)} max ${(loop.max / 1e6).toFixed(2)} ms\n`,
    );
  };
}

// ---------------------------------------------------------------- the floor: raw ws broadcast, no storage

/**
 * The least a broadcast server speaking synchub's frames must do: parse the push,
 * number its events, ack, and send one events frame to every socket. No auth, no
 * validation, no storage, no cursor.
 */
async function startWsFloor(s: StartMsg) {
  const sockets = new Set<WebSocket>();
  let head = 0;
  const backlog: string[] = [];
  if (s.preload) {
    const ts = new Date().toISOString();
    for (let i = 1; i <= s.preload; i++) {
      const row = makeRow(0, i, Number.MAX_SAFE_INTEGER);
      backlog.push(
        JSON.stringify({
          serverSeq: i,
          deviceId: 'preload',
          sessionId: 's',
          clientActionId: i,
          actionType: 'create',
          entityType: 'items',
          entityId: row.id,
          payload: { schemaVersion: 1, newData: row, previousData: null },
          clientTimestamp: ts,
          serverTimestamp: ts,
        }),
      );
    }
    head = s.preload;
  }
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 8 * 1024 * 1024 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('close', () => sockets.delete(ws));
    let deviceId = '';
    ws.on('message', (data) => {
      const f = JSON.parse(String(data)) as {
        type: string;
        deviceId?: string;
        afterSeq?: number;
        batch?: number;
        events?: { clientActionId: number; [k: string]: unknown }[];
      };
      if (f.type === 'hello') {
        deviceId = f.deviceId!;
        ws.send(JSON.stringify({ type: 'welcome', project: 'floor', deviceId, headSeq: head }));
        if (backlog.length && f.afterSeq! < backlog.length) void streamBacklog(ws, f.afterSeq!);
        sockets.add(ws);
      } else if (f.type === 'push') {
        const ts = new Date().toISOString();
        const acks: { clientActionId: number; serverSeq: number }[] = [];
        let body = '{"type":"events","events":[';
        f.events!.forEach((e, i) => {
          const serverSeq = ++head;
          acks.push({ clientActionId: e.clientActionId, serverSeq });
          body += (i ? ',' : '') + JSON.stringify({ serverSeq, deviceId, ...e, serverTimestamp: ts });
        });
        const frame = Buffer.from(`${body}],"throughSeq":${head},"headSeq":${head}}`);
        ws.send(JSON.stringify({ type: 'ack', batch: f.batch, acks, rejected: [] }));
        for (const s of sockets) s.send(frame);
      }
    });
  });
  async function streamBacklog(ws: WebSocket, afterSeq: number) {
    for (let from = afterSeq; from < backlog.length && ws.readyState === ws.OPEN; from += 1000) {
      const page = backlog.slice(from, from + 1000);
      const through = from + page.length;
      const frame = `{"type":"events","events":[${page.join(',')}],"throughSeq":${through},"headSeq":${head}}`;
      await new Promise<void>((resolve) => {
        ws.send(frame, () => resolve());
        if (ws.bufferedAmount < 1024 * 1024) resolve();
      });
    }
  }
  const port = (wss.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.terminate();
        wss.close(() => r());
      }),
  };
}

// ---------------------------------------------------------------- the durable floor: commit to SQLite, then broadcast

type PushFrame = { batch: number; events: { clientActionId: number; sessionId?: string; [k: string]: unknown }[] };

/**
 * The least a server that sends an event only once it is durable must do: the ws floor's
 * frames, and between parse and ack/broadcast a commit into the hub's own `events` table,
 * opened with the hub store's pragmas (WAL, synchronous=FULL, busy_timeout, 64 MiB cache).
 *
 * "Commit each event, then send it" becomes, under load, one transaction per event-loop
 * turn holding every push that arrived in that turn: one event per transaction at the
 * fan-out rate (1 event per push, 1 ms apart), a group commit under ingest. A transaction
 * per event under ingest would measure the fsync rate, not a server (the hub groups too).
 * No auth, no validation, no digest, no dedup answer (a duplicate would throw), no cursor.
 */
async function startDurableFloor(s: StartMsg) {
  const db = new Database(s.db!);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.pragma('cache_size = -65536');
  db.exec(EVENTS_SCHEMA);
  const insert = db.prepare('INSERT INTO events (project, server_seq, device_id, session_id, client_action_id, body) VALUES (?, ?, ?, ?, ?, ?)');
  const sockets = new Set<WebSocket>();
  let head = 0;
  // Pushes parsed in this turn of the event loop, committed together in the next setImmediate.
  let pending: { ws: WebSocket; deviceId: string; f: PushFrame }[] = [];
  const commit = db.transaction((rows: [number, string, string, number, string][]) => {
    for (const r of rows) insert.run('floor', ...r);
  });
  function flush() {
    const pushes = pending;
    pending = [];
    const ts = new Date().toISOString();
    const rows: [number, string, string, number, string][] = [];
    const out = pushes.map(({ ws, deviceId, f }) => {
      const acks: { clientActionId: number; serverSeq: number }[] = [];
      const bodies: string[] = [];
      for (const e of f.events) {
        const serverSeq = ++head;
        const body = JSON.stringify({ serverSeq, deviceId, ...e, serverTimestamp: ts });
        rows.push([serverSeq, deviceId, String(e.sessionId ?? ''), e.clientActionId, body]);
        acks.push({ clientActionId: e.clientActionId, serverSeq });
        bodies.push(body);
      }
      return { ws, batch: f.batch, acks, frame: Buffer.from(`{"type":"events","events":[${bodies.join(',')}],"throughSeq":${head},"headSeq":${head}}`) };
    });
    commit.immediate(rows); // durable (fsynced WAL) before anything leaves
    for (const o of out) {
      o.ws.send(JSON.stringify({ type: 'ack', batch: o.batch, acks: o.acks, rejected: [] }));
      for (const s of sockets) s.send(o.frame);
    }
  }
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 8 * 1024 * 1024 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('close', () => sockets.delete(ws));
    let deviceId = '';
    ws.on('message', (data) => {
      const f = JSON.parse(String(data)) as { type: string; deviceId?: string } & PushFrame;
      if (f.type === 'hello') {
        deviceId = f.deviceId!;
        ws.send(JSON.stringify({ type: 'welcome', project: 'floor', deviceId, headSeq: head }));
        sockets.add(ws);
      } else if (f.type === 'push') {
        if (pending.length === 0) setImmediate(flush);
        pending.push({ ws, deviceId, f });
      }
    });
  });
  const port = (wss.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.terminate();
        wss.close(() => {
          db.close();
          r();
        });
      }),
  };
}

/** The Yjs peers' catch-up document: `n` rows, each set in its own transaction (one update per event). */
function preloadUpdate(n: number): Uint8Array {
  const doc = new Y.Doc();
  const map = doc.getMap<unknown>('items');
  for (let i = 1; i <= n; i++) {
    const row = makeRow(0, i, Number.MAX_SAFE_INTEGER);
    doc.transact(() => map.set(row.id, { ...row }));
  }
  return Y.encodeStateAsUpdate(doc);
}

// ---------------------------------------------------------------- Hocuspocus

async function startHocuspocus(s: StartMsg) {
  const { Server } = await import('@hocuspocus/server');
  const preload = s.preload ? preloadUpdate(s.preload) : null;
  const server = new Server({
    port: 0,
    address: '127.0.0.1',
    quiet: true,
    stopOnSignals: false,
    async onAuthenticate({ token }: { token: string }) {
      if (token !== SECRET) throw new Error('bad token');
    },
    async onLoadDocument({ document }: { document: Y.Doc }) {
      if (preload) Y.applyUpdate(document, preload);
    },
  });
  await server.listen();
  const port = (server.httpServer.address() as AddressInfo).port;
  return { port, close: () => server.destroy() };
}

// ---------------------------------------------------------------- y-websocket (@y/websocket-server)

async function startYWebsocket(s: StartMsg) {
  const { setupWSConnection, getYDoc } = await import('@y/websocket-server/utils');
  if (s.preload) Y.applyUpdate(getYDoc(DOC), preloadUpdate(s.preload));
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const http = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('okay');
  });
  // y-websocket leaves auth to the app; its README checks the request in the upgrade handler.
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.searchParams.get('token') !== SECRET) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => setupWSConnection(ws, req, { docName: url.pathname.slice(1) }));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  const port = (http.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const ws of wss.clients) ws.terminate();
        http.close(() => r());
        http.closeAllConnections();
      }),
  };
}

// ---------------------------------------------------------------- Logux (@logux/server, production mode)

async function startLogux(s: StartMsg) {
  process.env.NODE_ENV = 'production';
  const { Server } = await import('@logux/server');
  // Production deployments log at `warn`: per-action info lines would measure the logger, not the server.
  const write = (level: string) => (details: unknown, msg?: string) =>
    process.stderr.write(`[logux ${level}] ${msg ?? ''} ${JSON.stringify(details).slice(0, 300)}\n`);
  const logger = { debug() {}, info() {}, warn: write('warn'), error: write('error'), fatal: write('fatal') };
  const server = new Server(
    Server.loadOptions(process, {
      subprotocol: 1,
      minSubprotocol: 1,
      host: '127.0.0.1',
      port: s.port!,
      env: 'production',
      root: process.cwd(),
      logger,
    } as never),
  );
  server.auth(({ token }: { token: string }) => token === SECRET);
  server.channel(CHANNEL, { access: () => true });
  server.type('bench/event', {
    access: () => true,
    resend: () => ({ channel: CHANNEL }),
    process: () => {},
  });
  await server.listen();
  return { port: s.port!, close: () => server.destroy() };
}
