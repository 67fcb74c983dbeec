// Progress of a long catch-up and a long push, reported from a real agent's events against a real
// hub: structured log lines (not a TTY) or a rewritten line (TTY), ending with a summary whose
// counts are the work done.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { formatProgress, ProgressReporter } from '../../agent/progress.ts';
import { Agent, type AgentOptions } from '../../agent/agent.ts';
import { FAST_AGENT, makeDevices, type Device } from '../kit/devices.ts';
import { APP_TABLES, tempDir, type TempDir } from '../kit/app-db.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, eventually, makeEvents, SyncClient } from '../kit/ws-client.ts';

let h: TestHub;
let tmp: TempDir;
let devices: Device[] = [];
let reporter: ProgressReporter | null = null;
afterEach(async () => {
  reporter?.stop();
  reporter = null;
  await Promise.all(devices.map((d) => d.close()));
  devices = [];
  await closeAllClients();
  await h?.close();
  tmp?.cleanup();
});

type Line = { msg: string; task: string; done: number; total: number; rate: number; etaSeconds?: number | null };

/** The device's agent, built but not started: the reporter is attached before the welcome. */
function newAgent(device: Device, extra: Partial<AgentOptions> = {}): Agent {
  const agent = new Agent({ db: device.path, hub: h.url, project: 'p1', token: h.token, tables: APP_TABLES, ...FAST_AGENT, ...extra });
  device.agent = agent;
  return agent;
}

function capture(): { lines: Line[]; log: pino.Logger } {
  const lines: Line[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk, _e, done) => (lines.push(JSON.parse(String(chunk)) as Line), done()) }));
  return { lines, log };
}

describe('formatProgress', () => {
  it('shows done/total, percent, rate and ETA', () => {
    expect(formatProgress({ task: 'catch-up', done: 12000, total: 40000, rate: 8200.4, etaSeconds: 3.4 })).toBe(
      'catch-up 12,000/40,000 events (30%)  8,200 ev/s  ETA 4 s',
    );
    expect(formatProgress({ task: 'push', done: 0, total: 5000, rate: 0, etaSeconds: null })).toBe('push 0/5,000 events (0%)  0 ev/s  ETA ?');
    expect(formatProgress({ task: 'push', done: 10, total: 5000, rate: 1, etaSeconds: 4990 })).toMatch(/ETA 1 h 23 min$/);
  });
});

describe('ProgressReporter on a real agent', () => {
  it('logs a long catch-up as structured lines and a summary with the events applied', async () => {
    h = await startHub();
    tmp = tempDir();
    const loader = await SyncClient.open(h.url, 'p1', h.token, 'dev-loader');
    for (let i = 0; i < 6; i++) await loader.push(i + 1, makeEvents(i * 500 + 1, 500));
    const [device] = (devices = makeDevices(tmp.dir, { ...h, project: 'p1' }, ['reader']));
    const { lines, log } = capture();
    // A replay (a device with no cursor otherwise starts from a snapshot, which logs its own progress).
    const agent = newAgent(device!, { snapshot: false });
    reporter = new ProgressReporter(agent, { tty: false, write: () => {}, log, minEvents: 1000, intervalMs: 5 });
    await agent.start();
    await eventually(() => lines.some((l) => l.msg === 'catch-up done'), 'the catch-up summary', 30_000);
    const summary = lines.find((l) => l.msg === 'catch-up done')!;
    // Sized at the welcome: the whole backlog.
    expect(summary).toMatchObject({ task: 'catch-up', done: 3000, total: 3000 });
    const progress = lines.filter((l) => l.msg === 'catch-up progress');
    for (const [i, l] of progress.entries()) {
      expect(l.done).toBeLessThanOrEqual(l.total);
      if (i) expect(l.done).toBeGreaterThanOrEqual(progress[i - 1]!.done);
    }
  });

  it('reports a push of the whole outbox from the welcome on, as a TTY line and a summary', async () => {
    h = await startHub();
    tmp = tempDir();
    const [device] = (devices = makeDevices(tmp.dir, { ...h, project: 'p1' }, ['writer']));
    device!.writer.db.transaction(() => {
      for (let i = 0; i < 2500; i++) device!.writer.create('issues', { id: `i-${i}`, title: `issue ${i}` });
    })();
    const { log } = capture();
    let text = '';
    const agent = newAgent(device!, { pushBatchSize: 100, maxPushesInFlight: 1 });
    reporter = new ProgressReporter(agent, { tty: true, write: (t) => (text += t), log, minEvents: 1000, intervalMs: 1 });
    await agent.start();
    await eventually(() => /push done: 2,500 events in [\d.]+ s \([\d,]+ ev\/s\)\n/.test(text), 'the push summary', 30_000);
    // Every progress line is drawn over the previous one, and cleared before the summary. (The own
    // events streaming back may run behind far enough to count as a catch-up of their own.)
    for (const part of text.split('\r\x1b[K').filter(Boolean)) {
      expect(part).toMatch(/^((push|catch-up) [\d,]+\/[\d,]+ events \(\d+%\) [^\n]*ETA [^\n]*|(push|catch-up) done: [^\n]*\n)+$/);
    }
    expect(text).toMatch(/\r\x1b\[Kpush done:/);
  });
});
