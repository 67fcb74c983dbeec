// The admin listener: everything for operators, on its own port (loopback by default, no auth),
// never on the public one. /healthz, /readyz, /metrics, /api/status and / (the dashboard).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../shared/log.ts';
import { DASHBOARD_HTML } from './dashboard-page.ts';
import type { HubMetrics } from './metrics.ts';
import type { Readiness } from './server.ts';
import type { StatusBoard } from './status.ts';

export interface AdminDeps {
  metrics: HubMetrics;
  board: StatusBoard;
  readiness: () => Promise<Readiness>;
  stopping: () => boolean;
  log: Logger;
}

export interface AdminOptions {
  host: string;
  port: number;
  /** The port is the CLI's default: when taken, warn and serve without the listener. */
  optional: boolean;
}

export class AdminServer {
  private readonly http: Server;
  /** The bound port, or null while not listening (never started, or the default port was taken). */
  port: number | null = null;

  constructor(
    private readonly deps: AdminDeps,
    private readonly options: AdminOptions,
  ) {
    this.http = createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => {
        deps.log.error({ err: String(err), url: req.url }, 'admin request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'internal' }));
      });
    });
  }

  /** Bind; resolves with the port, or null when the optional default port is taken. */
  async listen(): Promise<number | null> {
    const { host, port, optional } = this.options;
    try {
      await new Promise<void>((resolve, reject) => {
        this.http.once('error', reject);
        this.http.listen(port, host, () => {
          this.http.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (optional && code === 'EADDRINUSE') {
        this.deps.log.warn({ host, port }, `admin port ${port} is taken (another hub?): serving without the admin listener; pick one with --admin-port`);
        return null;
      }
      throw Object.assign(new Error(`cannot listen on admin address ${host}:${port}: ${code ?? (err as Error).message}`), { code: 'admin_listen_failed' });
    }
    this.port = (this.http.address() as AddressInfo).port;
    this.deps.board.start();
    this.deps.log.info({ host, port: this.port }, 'admin listener up');
    return this.port;
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method_not_allowed' });
    switch (path) {
      case '/healthz':
        return json(res, this.deps.stopping() ? 503 : 200, { ok: !this.deps.stopping() });
      case '/readyz': {
        const r = await this.deps.readiness();
        return json(res, r.ready ? 200 : 503, r);
      }
      case '/metrics':
        res.writeHead(200, { 'content-type': this.deps.metrics.registry.contentType });
        res.end(await this.deps.metrics.registry.metrics());
        return;
      case '/api/status':
        return json(res, 200, await this.deps.board.status());
      case '/':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(DASHBOARD_HTML);
        return;
      default:
        return json(res, 404, { error: 'not_found' });
    }
  }

  async close(): Promise<void> {
    this.deps.board.stop();
    if (this.port === null) return;
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeAllConnections();
    await closed;
    this.port = null;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}
