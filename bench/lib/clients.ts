// One client per system, speaking each server's own wire protocol over a raw `ws`
// socket, so that every system's receiver does the same small amount of work:
// find the markers in the raw message, nothing else (no Y.Doc apply, no Logux log).
//
//   synchub / wsfloor / durablefloor  hello -> welcome; push frames -> ack frames; events frames (synchub-pg and
//                      synchub-pg2 too: the same hub on PostgreSQL, one or two nodes)
//   hocuspocus         Auth(token) + SyncStep1 -> SyncStep2; one Yjs update message per event -> SyncStatus ack
//   ywebsocket         SyncStep1 -> SyncStep2; one Yjs update per event; the server echoes every update
//                      to every socket of the document, the pushing one included: the echo is the ack
//   logux              connect -> connected; logux/subscribe to the channel; one `sync` per action ->
//                      `logux/processed` (the server's answer once the action's process() ran)
import WebSocket from 'ws';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { asBuffer, isWsFloor, pushEventJson, scanMarks, type BenchRow, type ServerSystem } from './common.ts';

export interface Target {
  system: ServerSystem;
  /** ws://127.0.0.1:PORT (the first node's, when there are several) */
  url: string;
  /** synchub-pg2: every hub node's URL, the first being `url`. Absent: one server. */
  nodes?: string[];
  /** synchub: project + bearer token; the others: a shared secret. */
  project?: string;
  token?: string;
}

/** The target as reached through node k (k wraps; a one-server target is itself). */
export function viaNode(t: Target, k: number): Target {
  if (!t.nodes || t.nodes.length < 2) return t;
  return { ...t, url: t.nodes[k % t.nodes.length]! };
}

export interface ClientOptions {
  index: number;
  /** Called with each message that may carry markers (event streams). */
  onMessage?: (buf: Buffer) => void;
  /** Events acknowledged by the server, in push order. */
  onAcked?: (n: number) => void;
  /** Connect timeout. */
  timeoutMs?: number;
  /**
   * Source address (any of 127.0.0.0/8 reaches a server on 127.0.0.1): one address has ~28,000
   * ephemeral ports towards one server port, so tens of thousands of sockets need several.
   */
  localAddress?: string;
}

export interface BenchClient {
  /** Resolves once the handshake is done and the client is subscribed to the stream. */
  ready: Promise<void>;
  /** Push rows: one frame (synchub) or one message per row (the others). */
  push(rows: BenchRow[]): void;
  close(): void;
  readonly ws: WebSocket;
}

export const DOC = 'bench';
export const CHANNEL = 'room';
export const SECRET = 'bench-secret-token';

export function connectClient(t: Target, o: ClientOptions): BenchClient {
  switch (t.system) {
    case 'synchub':
    case 'synchub-pg':
    case 'synchub-pg2':
    case 'wsfloor':
    case 'durablefloor':
      return synchubClient(t, o);
    case 'hocuspocus':
      return hocuspocusClient(t, o);
    case 'ywebsocket':
      return yWebsocketClient(t, o);
    case 'logux':
      return loguxClient(t, o);
  }
}

function readyPromise(ws: WebSocket, o: ClientOptions) {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  let settled = false;
  const ready = new Promise<void>((res, rej) => {
    resolve = () => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        res();
      }
    };
    reject = (e) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        rej(e);
      }
    };
  });
  ready.catch(() => {});
  const timer = setTimeout(() => reject(new Error('handshake timed out')), o.timeoutMs ?? 30_000);
  ws.on('error', (e) => reject(e));
  ws.on('close', (code) => reject(new Error(`closed before ready (${code})`)));
  ws.on('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
  return { ready, resolve, reject };
}

const WS_OPTS = { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 } as const;
const wsOpts = (o: ClientOptions) => (o.localAddress ? { ...WS_OPTS, localAddress: o.localAddress } : WS_OPTS);

// ---------------------------------------------------------------- synchub (and the ws floor, same frames)

function synchubClient(t: Target, o: ClientOptions): BenchClient {
  const url = isWsFloor(t.system) ? t.url : `${t.url}/v1/projects/${encodeURIComponent(t.project!)}/sync`;
  const ws = new WebSocket(url, { ...wsOpts(o), headers: { Authorization: `Bearer ${t.token}` } });
  const r = readyPromise(ws, o);
  let batch = 0;
  let clientActionId = 0;
  ws.on('open', () => {
    const deviceId = `bench-${process.pid}-${o.index}-${Math.random().toString(36).slice(2, 8)}`;
    ws.send(JSON.stringify({ type: 'hello', protocol: 1, deviceId, afterSeq: 0 }));
  });
  ws.on('message', (data) => {
    const buf = asBuffer(data);
    // Every hub frame starts with {"type":"<kind>"
    const c = buf[9];
    if (c === 101 /* e: events or error */ && buf[10] === 118) {
      o.onMessage?.(buf);
    } else if (c === 97 /* a: ack */) {
      const f = JSON.parse(buf.toString()) as { acks: unknown[]; rejected: { reason: string }[] };
      if (f.rejected.length) process.stderr.write(`synchub rejected: ${JSON.stringify(f.rejected[0])}\n`);
      o.onAcked?.(f.acks.length + f.rejected.length);
    } else if (c === 119 /* w: welcome */) {
      r.resolve();
    } else {
      const text = buf.toString();
      process.stderr.write(`[${t.system} client ${o.index}] ${text.slice(0, 300)}\n`);
      r.reject(new Error(text.slice(0, 300)));
    }
  });
  return {
    ready: r.ready,
    ws,
    push(rows) {
      const ts = new Date().toISOString();
      let body = `{"type":"push","batch":${++batch},"events":[`;
      for (let i = 0; i < rows.length; i++) body += (i ? ',' : '') + pushEventJson(++clientActionId, rows[i]!, ts);
      ws.send(body + ']}');
    },
    close: () => ws.terminate(),
  };
}

// ---------------------------------------------------------------- Yjs helpers

const MSG_SYNC = 0;
const MSG_AWARENESS = 1;
const MSG_AUTH = 2;
const MSG_SYNC_REPLY = 4; // hocuspocus
const MSG_SYNC_STATUS = 8; // hocuspocus
const SYNC_STEP1 = 0;
const SYNC_STEP2 = 1;
const SYNC_UPDATE = 2;

/** A Y.Doc whose local updates (one transaction per row) are handed to `send`. */
function yWriter(send: (update: Uint8Array) => void) {
  const doc = new Y.Doc();
  const map = doc.getMap<unknown>('items');
  doc.on('update', (update: Uint8Array, origin: unknown) => {
    if (origin !== 'remote') send(update);
  });
  return {
    doc,
    set(row: BenchRow) {
      doc.transact(() => map.set(row.id, { id: row.id, n: row.n, mark: row.mark, body: row.body }));
    },
  };
}

// ---------------------------------------------------------------- Hocuspocus

function hocuspocusClient(t: Target, o: ClientOptions): BenchClient {
  const ws = new WebSocket(t.url, wsOpts(o));
  const r = readyPromise(ws, o);
  const prefix = (e: encoding.Encoder) => encoding.writeVarString(e, DOC);
  let writer: ReturnType<typeof yWriter> | null = null;
  ws.on('open', () => {
    const auth = encoding.createEncoder();
    prefix(auth);
    encoding.writeVarUint(auth, MSG_AUTH);
    encoding.writeVarUint(auth, 0); // AuthMessageType.Token
    encoding.writeVarString(auth, t.token ?? SECRET);
    ws.send(encoding.toUint8Array(auth));
    const step1 = encoding.createEncoder();
    prefix(step1);
    encoding.writeVarUint(step1, MSG_SYNC);
    encoding.writeVarUint(step1, SYNC_STEP1);
    encoding.writeVarUint8Array(step1, Y.encodeStateVector(new Y.Doc()));
    ws.send(encoding.toUint8Array(step1));
  });
  ws.on('message', (data) => {
    const buf = asBuffer(data);
    const d = decoding.createDecoder(buf);
    decoding.readVarString(d);
    const type = decoding.readVarUint(d);
    if (type === MSG_SYNC_STATUS) {
      o.onAcked?.(1);
    } else if (type === MSG_SYNC || type === MSG_SYNC_REPLY) {
      const sub = decoding.readVarUint(d);
      if (sub === SYNC_UPDATE) o.onMessage?.(buf);
      else if (sub === SYNC_STEP2) {
        o.onMessage?.(buf);
        r.resolve();
      }
    } else if (type === MSG_AUTH) {
      const sub = decoding.readVarUint(d);
      if (sub === 1) r.reject(new Error('hocuspocus: permission denied'));
    }
  });
  return {
    ready: r.ready,
    ws,
    push(rows) {
      writer ??= yWriter((update) => {
        const e = encoding.createEncoder();
        prefix(e);
        encoding.writeVarUint(e, MSG_SYNC);
        encoding.writeVarUint(e, SYNC_UPDATE);
        encoding.writeVarUint8Array(e, update);
        ws.send(encoding.toUint8Array(e));
      });
      for (const row of rows) writer.set(row);
    },
    close: () => ws.terminate(),
  };
}

// ---------------------------------------------------------------- y-websocket

function yWebsocketClient(t: Target, o: ClientOptions): BenchClient {
  const ws = new WebSocket(`${t.url}/${DOC}?token=${encodeURIComponent(t.token ?? SECRET)}`, wsOpts(o));
  const r = readyPromise(ws, o);
  let writer: ReturnType<typeof yWriter> | null = null;
  ws.on('open', () => {
    const step1 = encoding.createEncoder();
    encoding.writeVarUint(step1, MSG_SYNC);
    encoding.writeVarUint(step1, SYNC_STEP1);
    encoding.writeVarUint8Array(step1, Y.encodeStateVector(new Y.Doc()));
    ws.send(encoding.toUint8Array(step1));
  });
  ws.on('message', (data) => {
    const buf = asBuffer(data);
    const type = buf[0];
    if (type === MSG_SYNC) {
      const sub = buf[1];
      if (sub === SYNC_UPDATE) {
        o.onMessage?.(buf);
        // The server sends each update to every socket of the doc, this one included: our own echo is the ack.
        if (o.onAcked && writer) {
          let own = 0;
          scanMarks(buf, (sender) => {
            if (sender === o.index) own++;
          });
          if (own) o.onAcked(own);
        }
      } else if (sub === SYNC_STEP2) {
        o.onMessage?.(buf);
        r.resolve();
      }
    } else if (type !== MSG_AWARENESS) {
      // ignore
    }
  });
  return {
    ready: r.ready,
    ws,
    push(rows) {
      writer ??= yWriter((update) => {
        const e = encoding.createEncoder();
        encoding.writeVarUint(e, MSG_SYNC);
        encoding.writeVarUint(e, SYNC_UPDATE);
        encoding.writeVarUint8Array(e, update);
        ws.send(encoding.toUint8Array(e));
      });
      for (const row of rows) writer.set(row);
    },
    close: () => ws.terminate(),
  };
}

// ---------------------------------------------------------------- Logux (protocol 5)

function loguxClient(t: Target, o: ClientOptions): BenchClient {
  const ws = new WebSocket(t.url, wsOpts(o));
  const r = readyPromise(ws, o);
  const userId = `u${o.index}`;
  const nodeId = `${userId}:${process.pid}x${o.index}x${Math.random().toString(36).slice(2, 8)}`;
  let added = 0;
  ws.on('open', () => {
    ws.send(JSON.stringify(['connect', 5, nodeId, 0, { token: t.token ?? SECRET, subprotocol: 1 }]));
  });
  const SYNC_RE = /^\["sync",(\d+)/;
  ws.on('message', (data) => {
    const buf = asBuffer(data);
    const c = buf[3];
    if (c === 121 /* y: sync / synced */ && buf[6] === 34 /* ["sync" */) {
      const text = buf.toString();
      const m = SYNC_RE.exec(text);
      if (m) ws.send(`["synced",${m[1]}]`);
      if (text.includes('"logux/processed"') || text.includes('"logux/undo"')) {
        const msg = JSON.parse(text) as unknown[];
        let acked = 0;
        for (let i = 2; i < msg.length; i += 2) {
          const action = msg[i] as { type: string; id?: string; reason?: string };
          if (action.type === 'logux/undo') process.stderr.write(`logux undo: ${JSON.stringify(action).slice(0, 200)}\n`);
          if (action.type !== 'logux/processed' && action.type !== 'logux/undo') continue;
          const k = Number(String(action.id).split(' ').pop());
          if (k === 1) r.resolve();
          else acked++;
        }
        if (acked) o.onAcked?.(acked);
      }
      if (buf.indexOf('@@') >= 0) o.onMessage?.(buf);
    } else if (buf[2] === 99 && c === 111 /* ["co: connected */) {
      added = 1;
      ws.send(JSON.stringify(['sync', 1, { type: 'logux/subscribe', channel: CHANNEL }, { id: [0, 1], time: 0 }]));
    } else if (buf[2] === 112 && c === 105 /* ["pi: ping */) {
      const n = /^\["ping",(\d+)/.exec(buf.toString());
      ws.send(`["pong",${n ? n[1] : 0}]`);
    } else if (buf[2] === 101 && c === 114 /* ["er: error */) {
      const text = buf.toString();
      process.stderr.write(`[logux client ${o.index}] ${text.slice(0, 300)}\n`);
      r.reject(new Error(text));
    }
  });
  return {
    ready: r.ready,
    ws,
    push(rows) {
      for (const row of rows) {
        const k = ++added;
        ws.send(
          JSON.stringify([
            'sync',
            k,
            { type: 'bench/event', entityType: 'items', entityId: row.id, actionType: 'create', row },
            { id: [0, k], time: 0 },
          ]),
        );
      }
    },
    close: () => ws.terminate(),
  };
}
