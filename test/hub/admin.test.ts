// The admin listener: /healthz, /readyz (503 while the store cannot take a commit or the hub is
// stopping), /metrics (Prometheus text whose counters move with the traffic), /api/status (devices
// with their cursors, events/s, recent errors, the same figures as /metrics) and its port rules.
import Database from 'better-sqlite3';
import { createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { HubStatus } from '../../hub/status.ts';
import { Hub } from '../../hub/server.ts';
import { SqliteEventStore } from '../../hub/store/sqlite.ts';
import { makeTempDir, removeTempDirs, runCli, startHub, usingPostgres, type TestHub } from '../kit/hub.ts';
import { parsePrometheus, sampleValue } from '../kit/prometheus.ts';
import { closeAllClients, eventually, makeEvents, SyncClient } from '../kit/ws-client.ts';
import { join } from 'node:path';

const hubs: TestHub[] = [];
const servers: Server[] = [];
afterEach(async () => {
  await closeAllClients();
  await Promise.all(hubs.splice(0).map((h) => h.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  removeTempDirs();
});

async function adminHub(options: Parameters<typeof startHub>[0] = {}): Promise<TestHub> {
  const h = await startHub({ ...options, options: { adminPort: 0, ...options.options } });
  hubs.push(h);
  // With PostgreSQL a hub is ready once its LISTEN connection is up, a moment after listen().
  await eventually(async () => (await h.hub.readiness()).ready, 'the hub to be ready');
  return h;
}

async function status(h: TestHub): Promise<HubStatus> {
  const res = await fetch(`${h.adminUrl}/api/status`);
  expect(res.status).toBe(200);
  return (await res.json()) as HubStatus;
}

async function scrape(h: TestHub) {
  const res = await fetch(`${h.adminUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return parsePrometheus(await res.text());
}

/** A port something else is listening on. */
async function takenPort(): Promise<number> {
  const s = createServer();
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
}

describe('admin listener endpoints', () => {
  it('serves /healthz and /readyz on its own port; the public port keeps only /healthz', async () => {
    const h = await adminHub();
    expect(h.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(h.hub.adminPort).not.toBe(h.port);
    expect(await (await fetch(`${h.adminUrl}/healthz`)).json()).toEqual({ ok: true });
    const ready = await fetch(`${h.adminUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, reason: null, stopping: false, store: true });
    expect((await fetch(`http://127.0.0.1:${h.port}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${h.port}/metrics`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${h.port}/api/status`)).status).toBe(404);
    expect((await fetch(`${h.adminUrl}/nope`)).status).toBe(404);
  });

  it('/metrics parses as Prometheus text and its counters move when events flow', async () => {
    const h = await adminHub();
    const before = await scrape(h);
    expect(sampleValue(before, 'synchub_events_committed_total')).toBe(0);
    expect(sampleValue(before, 'synchub_connections')).toBe(0);

    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    await c.push(1, makeEvents(1, 5));
    await c.push(2, makeEvents(6, 3));
    await c.waitForSeq(8);

    const after = await scrape(h);
    expect(sampleValue(after, 'synchub_events_committed_total')).toBe(8);
    expect(sampleValue(after, 'synchub_project_events_committed_total', { project: 'p1' })).toBe(8);
    expect(sampleValue(after, 'synchub_pushes_total')).toBe(2);
    expect(sampleValue(after, 'synchub_connections')).toBe(1);
    expect(sampleValue(after, 'synchub_project_head_seq', { project: 'p1' })).toBe(8);
    expect(sampleValue(after, 'synchub_project_devices', { project: 'p1' })).toBe(1);
    expect(sampleValue(after, 'synchub_project_max_lag_events', { project: 'p1' })).toBe(0);
    expect(sampleValue(after, 'synchub_frames_sent_total')!).toBeGreaterThan(sampleValue(before, 'synchub_frames_sent_total')!);
  });

  // SQLite's own ways of being unable to commit; PostgreSQL outages: test/postgres/multi-node.test.ts.
  it.skipIf(usingPostgres())('/readyz answers 503 while another process holds the store write lock, and 200 again after', async () => {
    const h = await adminHub();
    const other = new Database(h.dbPath, { timeout: 0 });
    try {
      other.exec('BEGIN IMMEDIATE');
      const res = await fetch(`${h.adminUrl}/readyz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { ready: boolean; reason: string; store: boolean };
      expect(body).toMatchObject({ ready: false, store: false, stopping: false });
      expect(body.reason).toMatch(/^store_unavailable: /);
      // The public port's /readyz says the same (a load balancer looks there).
      expect((await fetch(`http://127.0.0.1:${h.port}/readyz`)).status).toBe(503);
      expect((await status(h)).hub).toMatchObject({ ready: false });
      other.exec('ROLLBACK');
      expect((await fetch(`${h.adminUrl}/readyz`)).status).toBe(200);
    } finally {
      other.close();
    }
  });

  it.skipIf(usingPostgres())('/readyz answers 503 when the database file is gone', async () => {
    const dir = makeTempDir();
    const h = await adminHub({ dbPath: join(dir, 'hub.db') });
    const { rmSync } = await import('node:fs');
    rmSync(join(dir, 'hub.db'));
    const res = await fetch(`${h.adminUrl}/readyz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { reason: string }).reason).toMatch(/is gone/);
  });

  it('is not ready once shutting down', async () => {
    const h = await adminHub();
    const closing = h.close();
    expect(await h.hub.readiness()).toMatchObject({ ready: false, reason: 'shutting_down', stopping: true });
    await closing;
  });

  it('/api/status lists every connected device with its cursor, lag, address and buffer', async () => {
    const h = await adminHub();
    await h.createProject('p2');
    const writer = await SyncClient.open(h.url, 'p1', h.token, 'dev-writer');
    await writer.push(1, makeEvents(1, 4));
    await writer.waitForSeq(4);
    // A reader that stops reading before the next events: its cursor stays behind.
    const reader = await SyncClient.open(h.url, 'p1', h.token, 'dev-reader', 2);
    await reader.waitForSeq(4);

    const s = await status(h);
    expect(s.hub).toMatchObject({ ready: true, connections: 2, notReadyReason: null });
    expect(s.totals.eventsCommitted).toBe(4);
    const p1 = s.projects.find((p) => p.project === 'p1')!;
    expect(p1.headSeq).toBe(4);
    expect(s.projects.find((p) => p.project === 'p2')).toMatchObject({ headSeq: 0, devices: [] });
    const byId = Object.fromEntries(p1.devices.map((d) => [d.deviceId, d]));
    expect(Object.keys(byId).sort()).toEqual(['dev-reader', 'dev-writer']);
    for (const d of p1.devices) {
      expect(d).toMatchObject({ cursor: 4, lag: 0 });
      expect(d.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(Date.parse(d.connectedSince)).not.toBeNaN();
      expect(d.bytesBuffered).toBeGreaterThanOrEqual(0);
    }
    // The same figures as a scrape.
    const samples = await scrape(h);
    expect(sampleValue(samples, 'synchub_events_committed_total')).toBe(s.totals.eventsCommitted);
    expect(sampleValue(samples, 'synchub_project_head_seq', { project: 'p1' })).toBe(p1.headSeq);
  });

  it('/api/status reports events/s from the committed counter, and recent connection errors', async () => {
    const h = await adminHub({ options: { statusSampleMs: 50 } });
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    await c.push(1, makeEvents(1, 20));
    await eventually(async () => (await status(h)).projects.find((p) => p.project === 'p1')!.eventsPerSecond > 0, 'a non-zero events/s');
    const s = await status(h);
    expect(s.rates.intervalMs).toBe(50);
    // Every committed event is in exactly one sample of the series.
    const series = s.rates.series.p1!;
    expect(series.reduce((a, b) => a + b, 0) * (50 / 1000)).toBeCloseTo(20, 6);

    const bad = await SyncClient.open(h.url, 'p1', h.token, 'dev-bad');
    bad.send('{not json');
    await bad.waitForClose();
    const after = await status(h);
    expect(after.totals.errors).toMatchObject({ bad_json: 1 });
    expect(after.recentErrors[0]).toMatchObject({ code: 'bad_json', project: 'p1', deviceId: 'dev-bad' });
  });

  it('serves the dashboard page with nothing from other origins', async () => {
    const h = await adminHub();
    const res = await fetch(`${h.adminUrl}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain('/api/status');
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
  });
});

describe('admin port rules', () => {
  it('an explicit admin port that is taken fails the start', async () => {
    const port = await takenPort();
    const dir = makeTempDir();
    const store = new SqliteEventStore(join(dir, 'hub.db'));
    const hub = new Hub(store, { port: 0, adminPort: port });
    await expect(hub.listen()).rejects.toMatchObject({ code: 'admin_listen_failed' });
    await store.close();
  });

  it('the default admin port taken is a warning: the hub serves without it', async () => {
    const port = await takenPort();
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
    const h = await startHub({ log, options: { adminPort: port, adminPortOptional: true } });
    hubs.push(h);
    expect(h.hub.adminPort).toBeNull();
    const warning = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => l.level === 40);
    expect(warning?.msg).toMatch(/admin port \d+ is taken/);
    // Still a working hub.
    const c = await SyncClient.open(h.url, 'p1', h.token, 'dev-a');
    expect((await c.push(1, makeEvents(1, 1))).acks).toHaveLength(1);
  });

  it('the CLI: an explicit --admin-port that is taken exits non-zero with one line', async () => {
    const port = await takenPort();
    const r = await runCli(['hub', 'serve', '--port', '0', '--admin-port', String(port), '--db', join(makeTempDir(), 'hub.db')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split('\n').filter((l) => l.startsWith('synchub:'))).toEqual([expect.stringMatching(/admin_listen_failed: .*EADDRINUSE/)]);
  });
});
