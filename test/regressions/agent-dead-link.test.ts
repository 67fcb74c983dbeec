// Regression (found by the chaos suite's stalled links): an Agent never noticed a dead link. Agent
// passes `deadAfterMs: undefined` to its Link when the option is not set (the CLI never sets it), and
// Link spread its options over its defaults, so the undefined replaced the default bound
// (2 pings + 1 s) and `silence > undefined` was never true. A black-holed connection (no FIN, no RST:
// a dropped Wi-Fi, a NAT that forgot the flow) then held the device until the network came back,
// however long that took. Link tests passed because they construct Link with deadAfterMs set.
import { afterEach, describe, expect, it } from 'vitest';
import { startHub, type TestHub } from '../kit/hub.ts';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { Device, makeDevices } from '../kit/devices.ts';
import { eventually } from '../kit/ws-client.ts';
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

describe('an agent with only pingIntervalMs set', () => {
  it('drops a black-holed link within two pings plus a second, and reconnects', async () => {
    hub = await startHub();
    proxy = new FaultProxy(hub.port);
    await proxy.listen();
    tmp = tempDir('synchub-dead-link-');
    // FAST_AGENT sets pingIntervalMs (1 s) and leaves deadAfterMs to its default: 3 s.
    devices = makeDevices(tmp.dir, { url: proxy.url, project: hub.project, token: hub.token, store: hub.store }, ['d']);
    const [d] = devices as [Device];
    const agent = await d.start();
    const downs: string[] = [];
    agent.on('status', (s) => void (s.state !== 'open' && downs.push(s.state)));
    await eventually(() => d.status().connected, 'first connection', 10_000);
    const stalledAt = Date.now();
    proxy.stall();
    await eventually(() => proxy!.stats.connections >= 2, 'a reconnect attempt after the link went silent', 8_000, 20);
    expect(Date.now() - stalledAt).toBeLessThan(3_000 + 1_000 + 1_000); // dead bound + backoff cap (FAST_AGENT: 300 ms) + slack
    expect(d.status().status).toBe('disconnected');
    // The network comes back: the agent is connected again.
    proxy.heal();
    await eventually(() => d.status().connected, 'reconnected after heal', 10_000);
  }, 30_000);
});
