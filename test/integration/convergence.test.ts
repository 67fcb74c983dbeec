// Property: random interleavings of writes, disconnects and reconnects on three
// devices always end, at quiescence, with every device equal to a fresh replay of
// the hub's log, no pending rows, and each local change in the log exactly once.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHub, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { checkConverged, makeDevices, quiesce, type Device } from '../kit/devices.ts';
import { delay, seededRandom } from '../kit/ws-client.ts';

let hub: TestHub;
let tmp: TempDir;
let devices: Device[] = [];

beforeEach(async () => {
  hub = await startHub();
  tmp = tempDir('synchub-conv-');
});

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await hub.close();
  tmp.cleanup();
});

const SEEDS = [1, 2, 3, 4, 5, 6];
const IDS = ['i1', 'i2', 'i3', 'i4', 'i5'];
const STATUSES = ['open', 'doing', 'done'];

async function runScenario(seed: number): Promise<void> {
  const rnd = seededRandom(seed);
  const pick = <T,>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  devices = makeDevices(tmp.dir, hub, [`a${seed}`, `b${seed}`, `c${seed}`]);
  for (const d of devices) await d.start();

  for (let step = 0; step < 150; step++) {
    const d = pick(devices);
    const id = pick(IDS);
    const r = rnd();
    if (r < 0.08) {
      // Disconnect / reconnect the device.
      if (d.agent) await d.stop();
      else await d.start();
    } else if (r < 0.3) {
      d.writer.create('issues', { id, title: `t${step}`, status: pick(STATUSES), priority: step });
    } else if (r < 0.7) {
      d.writer.update('issues', id, rnd() < 0.5 ? { status: pick(STATUSES) } : { title: `u${step}` });
    } else if (r < 0.8) {
      d.writer.softDelete('issues', id);
    } else if (r < 0.85) {
      d.writer.restore('issues', id);
    } else if (r < 0.9) {
      d.writer.hardDelete('issues', id);
    } else {
      d.writer.create('comments', { id: `c${step}`, issue_id: id, body: `b${step}` });
    }
    if (rnd() < 0.3) await delay(Math.floor(rnd() * 5));
  }
  for (const d of devices) if (!d.agent) await d.start();
  await quiesce(hub, devices, 60_000);
  await checkConverged(hub, devices, tmp.dir);
  for (const d of devices) expect(d.status().pending).toBe(0);
}

describe('convergence under random interleavings', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}`, async () => {
      await runScenario(seed);
    });
  }
});
