// The hub: an HTTP server whose upgrade handler authenticates before any socket
// exists, then hands each socket to a Connection. Also /healthz and /readyz (for a load
// balancer's checks); everything else for operators is on the admin listener (admin.ts).
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { ErrorCode } from '../shared/errors.ts';
import { silentLogger, type Logger } from '../shared/log.ts';
import { VERSION } from '../shared/version.ts';
import { AdminServer } from './admin.ts';
import { HubOptionsSchema, type HubOptions, type HubOptionsInput } from './config.ts';
import { AuthFailureLimiter, TokenConnections, type ConnectionToken } from './admission.ts';
import { GroupCommitter } from './commit.ts';
import { Connection, type ConnectionDeps } from './connection.ts';
import { ProjectChannel } from './fanout.ts';
import { createMetrics, type HubMetrics, type ProjectFigures } from './metrics.ts';
import { StatusBoard, type DeviceStatus } from './status.ts';
import type { EventStore } from './store/event-store.ts';
import { Retention } from './retention.ts';
import { authenticate, tokenIdOf } from './tokens.ts';

const SYNC_PATH_RE = /^\/v1\/projects\/([^/]+)\/sync$/;
/** The subprotocol the hub selects for clients that authenticate with one (browsers). */
const SUBPROTOCOL = 'synchub.v1';
const BEARER_PROTOCOL = 'synchub.bearer.';

/**
 * A browser cannot set headers on a WebSocket: it offers the token as a subprotocol instead, beside
 * `synchub.v1`. Returned as an Authorization header value, checked exactly as one.
 */
function bearerFromSubprotocols(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const offered = header.split(',').map((p) => p.trim());
  if (!offered.includes(SUBPROTOCOL)) return undefined;
  const bearer = offered.find((p) => p.startsWith(BEARER_PROTOCOL));
  return bearer && `Bearer ${bearer.slice(BEARER_PROTOCOL.length)}`;
}

/** An upgrading socket's error listener, one function for all (a closure would keep the whole upgrade, request included). */
function destroyOnError(this: Duplex): void {
  this.destroy();
}

const STATUS_TEXT: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' };

/** What /readyz answers (200 when `ready`, else 503). */
export interface Readiness {
  ready: boolean;
  /** Why not ready: `shutting_down` or `store_unavailable: ...`; null when ready. */
  reason: string | null;
  stopping: boolean;
  /** The store is reachable and can take a commit. */
  store: boolean;
}

export class Hub {
  readonly options: HubOptions;
  readonly metrics: HubMetrics;
  private readonly http: Server | TlsServer;
  private readonly wss: WebSocketServer;
  private readonly committer: GroupCommitter;
  private readonly channels = new Map<string, ProjectChannel>();
  private readonly loadingChannels = new Map<string, Promise<ProjectChannel>>();
  private readonly connections = new Set<Connection>();
  private pingTimer: NodeJS.Timeout | null = null;
  private stallTimer: NodeJS.Timeout | null = null;
  private retention: Retention | null = null;
  private revocationTimer: NodeJS.Timeout | null = null;
  private readonly authFailures: AuthFailureLimiter;
  private readonly tokenConnections = new TokenConnections();
  private checkingRevocations = false;
  private stopping = false;
  private closing: Promise<void> | null = null;
  private readonly board: StatusBoard;
  private readonly admin: AdminServer | null;
  /** What every Connection is given: one object for all of them. */
  private readonly connectionDeps: ConnectionDeps;
  /** Set while close() waits for the last socket to close. */
  private onAllClosed: (() => void) | null = null;

  constructor(
    readonly store: EventStore,
    options: HubOptionsInput = {},
    private readonly log: Logger = silentLogger,
  ) {
    this.options = HubOptionsSchema.parse(options);
    this.authFailures = new AuthFailureLimiter(this.options.maxAuthFailuresPerMinute);
    this.metrics = createMetrics(() => this.figures());
    this.board = new StatusBoard(
      {
        version: VERSION,
        metrics: this.metrics,
        figures: () => this.figures(),
        devices: () => this.devices(),
        connections: () => this.connections.size,
        readiness: () => this.readiness(),
      },
      this.options.statusSampleMs,
    );
    const { adminPort, adminHost, adminPortOptional } = this.options;
    this.admin =
      adminPort === null
        ? null
        : new AdminServer(
            { metrics: this.metrics, board: this.board, readiness: () => this.readiness(), stopping: () => this.stopping, log },
            { host: adminHost, port: adminPort, optional: adminPortOptional },
          );
    this.committer = new GroupCommitter(store, this.options.commitMaxEvents, (committed, ms, count) => {
      this.metrics.commits.observe(ms / 1000);
      this.metrics.eventsCommitted.inc(count);
      for (const [project, events] of committed) this.metrics.projectEventsCommitted.inc({ project }, events.length);
      // Synchronously, before any reader can look at the store again: a channel's head
      // is never behind what a reader could fetch. The channel exists: the pushing
      // connection awaited it before its first push.
      for (const [project, events] of committed) this.channels.get(project)?.publish(events);
    });
    this.connectionDeps = {
      options: this.options,
      store,
      committer: this.committer,
      metrics: this.metrics,
      log,
      channel: (p) => this.channel(p),
      stopping: () => this.stopping,
      onError: (e) => this.board.recordError(e),
      closed: (conn) => {
        this.connections.delete(conn);
        this.metrics.connections.dec();
        this.tokenConnections.release(conn.token.id);
        if (this.connections.size === 0) this.onAllClosed?.();
      },
    };
    // The server accepts frames up to twice the limit so that a frame just over it
    // gets a clear `frame_too_large` error; past that ws closes with 1009 unread.
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.options.maxFrameBytes * 2,
      // A browser offers `synchub.v1` and `synchub.bearer.<token>`: select the first, never echo the token.
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
      // `connections` holds every socket already; ws's own set would add a close listener per socket.
      clientTracking: false,
    });
    const handle = (req: IncomingMessage, res: ServerResponse) =>
      this.onRequest(req, res).catch((err: unknown) => {
        this.log.warn({ err: String(err) }, 'request failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    // With a certificate the hub serves wss:// (and https for its endpoints) itself.
    this.http = this.options.tls ? createTlsServer(this.readTls(), handle) : createServer(handle);
    this.http.on('upgrade', (req, socket, head) => void this.onUpgrade(req, socket, head));
  }

  private readTls(): { cert: Buffer; key: Buffer } {
    const tls = this.options.tls!;
    return { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) };
  }

  /**
   * Read the certificate and key files again (a renewed certificate, on SIGHUP): new connections
   * get the new one, open ones carry on. A file that cannot be read leaves the old one in place.
   */
  reloadTls(): void {
    if (!this.options.tls) return;
    try {
      (this.http as TlsServer).setSecureContext(this.readTls());
      this.log.info({ certFile: this.options.tls.certFile }, 'TLS certificate reloaded');
    } catch (err) {
      this.log.error({ err: String(err) }, 'TLS certificate reload failed; keeping the old one');
    }
  }

  /**
   * Listen on the public port, then the admin port (when configured); resolves with the bound
   * public port (useful with port 0). An admin port that cannot be bound fails the whole start,
   * unless it is the optional default (see HubOptions.adminPortOptional).
   */
  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.options.port, this.options.host, () => resolve());
    });
    try {
      await this.admin?.listen();
    } catch (err) {
      await new Promise<void>((resolve) => this.http.close(() => resolve()));
      throw err;
    }
    this.pingTimer = setInterval(() => {
      for (const c of this.connections) c.ping();
    }, this.options.pingIntervalMs);
    this.pingTimer.unref();
    // A stalled reader is closed between one and about one and a half stall timeouts after it stopped.
    this.stallTimer = setInterval(
      () => {
        for (const c of this.connections) c.checkStall();
      },
      Math.max(10, Math.floor(this.options.stallTimeoutMs / 4)),
    );
    this.stallTimer.unref();
    if (this.options.retainEvents !== undefined && !Retention.supported(this.store)) {
      this.log.warn('--retain-events is not available on this store: every event is kept');
    } else if (this.options.retainEvents !== undefined) {
      this.retention = new Retention(this.store, this.options.retainEvents, this.options.retainEveryMs, this.log);
      this.retention.start();
      void this.retention.runOnce();
    }
    // Revocation is live: a revoked token's open sockets are closed within revocationCheckMs (plus a query).
    this.revocationTimer = setInterval(() => void this.closeRevoked(), this.options.revocationCheckMs);
    this.revocationTimer.unref();
    // Several nodes on one store: commits of the others reach this node's channels here.
    this.store.watchCommits?.({
      onCommit: (project, head) => this.channels.get(project)?.sync(head),
      onResync: () => {
        for (const [project, ch] of this.channels) {
          this.store.headSeq(project).then(
            (head) => ch.sync(head),
            (err: unknown) => this.log.warn({ project, err: String(err) }, 'reading a head after a resync failed'),
          );
        }
      },
    });
    const port = (this.http.address() as AddressInfo).port;
    this.log.info({ host: this.options.host, port }, 'hub listening');
    return port;
  }

  /** The admin listener's bound port; null when there is none (not configured, or the default port was taken). */
  get adminPort(): number | null {
    return this.admin?.port ?? null;
  }

  /**
   * Ready for traffic: not shutting down, and the store reachable (PostgreSQL: its LISTEN link up)
   * and able to take a commit now (SQLite: its file there and its write lock free). /readyz on
   * both listeners answers this.
   */
  async readiness(): Promise<Readiness> {
    let store = this.store.isReady?.() ?? true;
    let reason: string | null = store ? null : 'store_unavailable: the store cannot be reached';
    if (store) {
      try {
        await this.store.ping?.();
      } catch (err) {
        store = false;
        reason = `store_unavailable: ${(err as Error).message}`;
      }
    }
    if (this.stopping) reason = 'shutting_down';
    return { ready: store && !this.stopping, reason, stopping: this.stopping, store };
  }

  /** Every streaming device, by project, with how far behind the head it is. */
  private devices(): Map<string, DeviceStatus[]> {
    const out = new Map<string, DeviceStatus[]>();
    for (const c of this.connections) {
      const s = c.streamState();
      if (!s) continue;
      const head = this.channels.get(c.project)?.head ?? s.cursor;
      const list = out.get(c.project) ?? [];
      list.push({ deviceId: c.deviceId, cursor: s.cursor, lag: Math.max(0, head - s.cursor), address: c.address, connectedSince: c.connectedSince, bytesBuffered: s.bytesBuffered });
      out.set(c.project, list);
    }
    return out;
  }

  /** Per project: the figures /metrics gauges and /api/status both report. Every project in the store, or the open ones when it cannot be read. */
  private async figures(): Promise<ProjectFigures[]> {
    const heads = new Map<string, number>();
    try {
      for (const p of await this.store.listProjects()) heads.set(p.name, p.headSeq);
    } catch {
      // The store is down (readiness says so); what the hub holds in memory is still worth showing.
    }
    // An open channel's head is the live one (the store's row may lag a commit in flight).
    for (const [project, ch] of this.channels) heads.set(project, ch.head);
    const devices = this.devices();
    return [...heads].map(([project, headSeq]) => {
      const list = devices.get(project) ?? [];
      return {
        project,
        headSeq,
        devices: list.length,
        maxLagEvents: list.reduce((m, d) => Math.max(m, d.lag), 0),
        bytesBuffered: list.reduce((n, d) => n + d.bytesBuffered, 0),
      };
    });
  }

  /** The channel of a project, created on first use with the head from the store. */
  private async channel(project: string): Promise<ProjectChannel> {
    const ready = this.channels.get(project);
    if (ready) return ready;
    let loading = this.loadingChannels.get(project);
    if (!loading) {
      loading = this.store.headSeq(project).then((head) => {
        const ch = new ProjectChannel(project, head, this.options.tailEvents, this.options.pageEvents, this.options.maxFrameBytes, undefined, this.options.tailBytes);
        ch.source = {
          read: (afterSeq, limit) => this.store.readAfter(project, afterSeq, limit),
          onError: (err) => this.log.warn({ project, err: String(err) }, 'catching up with the store failed; retrying'),
        };
        this.channels.set(project, ch);
        return ch;
      });
      loading.finally(() => this.loadingChannels.delete(project)).catch(() => {});
      this.loadingChannels.set(project, loading);
    }
    return loading;
  }

  private async onRequest(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(this.stopping ? 503 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: !this.stopping, connections: this.connections.size }));
    } else if (req.method === 'GET' && path === '/readyz') {
      // Also here, not only on the admin listener: a load balancer checks the port it routes to.
      const r = await this.readiness();
      res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(r));
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not_found' }));
    }
  }

  /** Close the sockets of tokens revoked since they connected (by any process writing the store). */
  private async closeRevoked(): Promise<void> {
    if (this.checkingRevocations || this.connections.size === 0) return;
    this.checkingRevocations = true;
    try {
      const ids = [...new Set([...this.connections].map((c) => c.token.id))];
      const revoked = new Set(await this.store.revokedTokens(ids));
      if (revoked.size === 0) return;
      for (const c of this.connections) {
        if (!revoked.has(c.token.id)) continue;
        this.log.warn({ tokenId: c.token.id, deviceId: c.deviceId, project: c.project }, 'closing a connection whose token was revoked');
        c.fail(ErrorCode.TokenRevoked, 'the token of this connection was revoked');
      }
    } catch (err) {
      this.log.warn({ err: String(err) }, 'checking for revoked tokens failed');
    } finally {
      this.checkingRevocations = false;
    }
  }

  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', destroyOnError);
    const address = req.socket.remoteAddress ?? 'unknown';
    // The credential: the Authorization header, or a browser's subprotocol offer.
    const credential = req.headers.authorization ?? bearerFromSubprotocols(req.headers['sec-websocket-protocol']);
    // For the audit line: the token's id (its public part), never the secret.
    const tokenId = tokenIdOf(credential);
    const refuse = (status: number, reason: string) => {
      this.metrics.authFailures.inc({ status: String(status) });
      if (status === 401 || status === 403) this.authFailures.record(address, Date.now());
      this.log[status === 404 || status === 503 ? 'info' : 'warn']({ status, reason, url: req.url, remoteAddress: address, tokenId }, 'upgrade refused');
      const body = JSON.stringify({ error: reason });
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    };
    if (this.stopping) return refuse(503, 'hub is shutting down');
    // Limits before any work: a flood of upgrades costs a header parse each.
    if (this.authFailures.blocked(address, Date.now())) return refuse(429, 'too many failed authentications from this address; retry later');
    if (this.connections.size >= this.options.maxConnections) return refuse(429, 'the hub is at its connection limit; retry later');
    const match = SYNC_PATH_RE.exec((req.url ?? '').split('?')[0]!);
    if (!match) return refuse(404, 'no such endpoint');
    let project: string;
    try {
      project = decodeURIComponent(match[1]!);
    } catch {
      return refuse(404, 'no such endpoint');
    }
    const origin = req.headers.origin;
    if (origin !== undefined && this.options.allowedOrigins && !this.options.allowedOrigins.includes(origin)) {
      return refuse(403, `origin ${origin} is not allowed`);
    }
    let auth: Awaited<ReturnType<typeof authenticate>>;
    try {
      auth = await authenticate(this.store, credential, project);
    } catch (err) {
      // The store cannot be read (PostgreSQL down): the device retries later, as on a shutdown.
      this.log.warn({ err: String(err) }, 'token lookup failed');
      return refuse(503, 'store unavailable');
    }
    if (!auth.ok) return refuse(auth.status, auth.reason);
    if (this.stopping) return refuse(503, 'hub is shutting down');
    const token = this.tokenConnections.admit(auth.token, this.options.maxConnectionsPerToken);
    if (!token) return refuse(429, `this token has ${this.options.maxConnectionsPerToken} connections open already`);
    this.accept(req, socket, head, project, token);
  }

  /**
   * Hand an admitted socket to `ws`, then to a Connection. Nothing of the upgrade stays referenced
   * once it is done (no closure of onUpgrade outlives it): an open socket does not keep its request.
   */
  private accept(req: IncomingMessage, socket: Duplex, head: Buffer, project: string, token: ConnectionToken): void {
    // The token's slot is released once: by the socket's close while the upgrade is under way (or if
    // `ws` aborts it), by the Connection's close (connectionDeps.closed) once it exists.
    const release = () => this.tokenConnections.release(token.id);
    socket.once('close', release);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      socket.removeListener('close', release);
      // From here `ws` destroys the socket on an error (its own listener).
      socket.removeListener('error', destroyOnError);
      const conn = new Connection(ws, socket, project, token, this.connectionDeps);
      this.connections.add(conn);
      this.metrics.connections.inc();
    });
  }

  /**
   * Clean stop: refuse new connections and frames, finish the commits already
   * under way and send their acks, close every socket with 1001, close the store.
   */
  close(): Promise<void> {
    this.closing ??= this.stop();
    return this.closing;
  }

  private async stop(): Promise<void> {
    this.stopping = true;
    this.log.info({ connections: this.connections.size }, 'hub shutting down');
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.retention?.stop();
    if (this.revocationTimer) clearInterval(this.revocationTimer);
    const httpClosed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    await this.committer.drain();
    // Acks are queued on the sockets; close() sends them before the close frame.
    for (const c of this.connections) c.shutdown();
    // Every closing handshake, for 2 s at most; then the sockets still open are cut.
    await Promise.race([
      new Promise<void>((r) => (this.connections.size === 0 ? r() : (this.onAllClosed = r))),
      new Promise((r) => setTimeout(r, 2000).unref()),
    ]);
    for (const c of this.connections) c.terminate();
    this.http.closeAllConnections?.();
    await httpClosed;
    await this.store.close();
    // Last: /readyz answers 503 for the whole shutdown.
    await this.admin?.close();
    this.log.info('hub stopped');
  }
}
