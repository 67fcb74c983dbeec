// Regression (found by the chaos suite's slow device): the agent took a slow but live link for a dead
// one. Liveness counted only whole WebSocket messages, so while a large events frame trickled in
// (a device on a poor link catching up a backlog) the link looked silent, was dropped after
// deadAfterMs, and the same frame was requested again on the next connection: the device never got
// past its first backlog frame. Bytes arriving are traffic; a link that delivers them is alive.
// The hub had the mirror image: it took only a pong as proof of life, and a slow reader's pong waits
// behind the stream it is still reading; now any frame from the device counts (the agent pings the
// hub at its own interval, whatever it is receiving).
import { afterEach, describe, expect, it } from 'vitest';
import { startHub, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { Device, makeDevices } from '../kit/devices.ts';
import { eventually, makeEvents } from '../kit/ws-client.ts';
import { FaultProxy } from '../chaos/proxy.ts';

let hub: TestHub | undefined;
let proxy: FaultProxy | undefined;
let tmp: TempDir | undefined;
let devices: Device[] = [];

afterEach(async () => {
  for (const d of devices) await d.close();
  devices = [];
  await proxy?.close();
  await hub?.close();
  tmp?.cleanup();
  hub = proxy = tmp = undefined;
});

describe('a slow but live link', () => {
  it('is not dropped as dead while a frame larger than deadAfterMs worth of bytes trickles in', async () => {
    // Backlog frames of 200 events of ~600 bytes (~120 KB); the hub's own pings kept out of the way.
    hub = await startHub({ options: { pageEvents: 200, pingIntervalMs: 60_000 } });
    await hub.store.append([{ project: hub.project, deviceId: 'loader', events: makeEvents(1, 600, { payloadBytes: 600 }) }], new Date().toISOString());
    proxy = new FaultProxy(hub.port);
    await proxy.listen();
    proxy.slow(40_000); // ~3 s per frame, against a dead-link bound of 3 s + 2 x 1 s pings
    tmp = tempDir('synchub-slow-link-');
    devices = makeDevices(tmp.dir, { url: proxy.url, project: hub.project, token: hub.token, store: hub.store }, ['slow'], {
      pingIntervalMs: 1000,
      deadAfterMs: 2000,
    });
    const [slow] = devices as [Device];
    await slow.start();
    // Before the fix: dropped every 2 s, mid-frame, and the cursor never left 0.
    await eventually(() => slow.status().cursor >= 400, 'two backlog frames over the trickle', 20_000, 50);
    expect(proxy.stats.connections).toBe(1);
  }, 30_000);

  it('is not terminated by the hub while its pong waits behind a trickling frame', async () => {
    // The hub pings every second; its ping queues behind ~120 KB frames delivered at 40 KB/s, so the
    // pong comes back seconds late although the device is reading all along.
    hub = await startHub({ options: { pageEvents: 200, pingIntervalMs: 1000 } });
    await hub.store.append([{ project: hub.project, deviceId: 'loader', events: makeEvents(1, 600, { payloadBytes: 600 }) }], new Date().toISOString());
    proxy = new FaultProxy(hub.port);
    await proxy.listen();
    proxy.slow(40_000);
    tmp = tempDir('synchub-slow-link-');
    devices = makeDevices(tmp.dir, { url: proxy.url, project: hub.project, token: hub.token, store: hub.store }, ['slow'], {
      pingIntervalMs: 1000,
      deadAfterMs: 2000,
    });
    const [slow] = devices as [Device];
    await slow.start();
    // Before the fix: terminated 1-2 s into every connection; the bytes already in flight carried the
    // cursor to 400 once, then every reconnect died before its first frame was through.
    await eventually(() => slow.status().cursor === 600, 'the whole backlog over the trickle', 25_000, 50);
    expect(proxy.stats.connections).toBe(1);
  }, 35_000);
});
