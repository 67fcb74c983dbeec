// A real web page (headless Chromium, Debian's, via playwright-core) syncs with the hub using the
// subprotocols `synchub.v1` + `synchub.bearer.<token>`: it gets welcome and live events; a bad token
// or an origin outside allowedOrigins never gets a socket.
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { syncPath } from '../../shared/protocol.ts';
import { startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvents, SyncClient } from '../kit/ws-client.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let browser: Browser;
let site: Server;
let origin: string;
let h: TestHub | undefined;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 30_000 });
  // The app's page, from its own origin.
  site = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title>'));
  await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await browser?.close();
  await new Promise<void>((r) => site?.close(() => r()));
});
afterEach(async () => {
  await closeAllClients();
  await h?.close();
  h = undefined;
});

/** Open the hub's socket from the page; the page records what happens in window.sync. */
async function openFromPage(page: Page, url: string, token: string): Promise<void> {
  await page.goto(origin);
  await page.evaluate(
    ({ url, token }) => {
      const sync = { opened: false, closed: false, protocol: '', frames: [] as Array<Record<string, unknown>> };
      (window as unknown as { sync: typeof sync }).sync = sync;
      const ws = new WebSocket(url, ['synchub.v1', `synchub.bearer.${token}`]);
      ws.onopen = () => {
        sync.opened = true;
        sync.protocol = ws.protocol;
        ws.send(JSON.stringify({ type: 'hello', protocol: 1, deviceId: 'browser-tab', afterSeq: 0 }));
      };
      ws.onmessage = (m) => sync.frames.push(JSON.parse(String(m.data)));
      ws.onclose = () => (sync.closed = true);
    },
    { url, token },
  );
}

type PageSync = { opened: boolean; closed: boolean; protocol: string; frames: Array<{ type: string; throughSeq?: number }> };
const state = (page: Page) => page.evaluate(() => (window as unknown as { sync: PageSync }).sync);

describe('a web page in Chromium', () => {
  it('connects with the token as a subprotocol, gets welcome and live events', async () => {
    h = await startHub({ options: { allowedOrigins: [origin] } });
    const page = await browser.newPage();
    await openFromPage(page, h.url + syncPath('p1'), h.token);
    await expect.poll(async () => (await state(page)).frames.map((f) => f.type), { timeout: 15_000 }).toContain('welcome');
    expect((await state(page)).protocol).toBe('synchub.v1');
    await (await SyncClient.open(h.url, 'p1', h.token, 'desktop')).push(1, makeEvents(1, 3));
    await expect.poll(async () => Math.max(0, ...(await state(page)).frames.map((f) => f.throughSeq ?? 0)), { timeout: 15_000 }).toBe(3);
    await page.close();
  });

  it('is refused without a valid token, and from an origin outside allowedOrigins', async () => {
    h = await startHub({ options: { allowedOrigins: ['https://app.example'] } });
    const page = await browser.newPage();
    // Right token, wrong origin (this page's origin is not in the list).
    await openFromPage(page, h.url + syncPath('p1'), h.token);
    await expect.poll(async () => (await state(page)).closed, { timeout: 15_000 }).toBe(true);
    expect((await state(page)).opened).toBe(false);
    await h.close();

    h = await startHub({ options: { allowedOrigins: [origin] } });
    await openFromPage(page, h.url + syncPath('p1'), `shub_0123456789abcdef_${'A'.repeat(43)}`);
    await expect.poll(async () => (await state(page)).closed, { timeout: 15_000 }).toBe(true);
    expect((await state(page)).opened).toBe(false);
    expect((await state(page)).frames).toEqual([]);
    await page.close();
  });
});
