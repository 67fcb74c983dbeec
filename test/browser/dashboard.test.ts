// The dashboard in a real headless Chromium (Debian's, driven by playwright-core): with a device
// connected and events flowing, the page shows the project, the device and a head seq that moves
// without a reload. Leaves a screenshot in test-output/dashboard.png.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, startHub, type TestHub } from '../kit/hub.ts';
import { closeAllClients, makeEvents, SyncClient } from '../kit/ws-client.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const SCREENSHOT = join(REPO_ROOT, 'test-output', 'dashboard.png');

let browser: Browser;
let h: TestHub;
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  // --no-sandbox: CI and these machines run as root, where Chromium's sandbox refuses to start.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 30_000 });
});
afterAll(async () => {
  await browser?.close();
  await closeAllClients();
  await h?.close();
});

describe('dashboard page', () => {
  it('shows the project, the connected device and a head seq that changes without a reload', async () => {
    h = await startHub({ options: { adminPort: 0, statusSampleMs: 250 } });
    const writer = await SyncClient.open(h.url, 'p1', h.token, 'dev-laptop');
    await writer.push(1, makeEvents(1, 10));
    await writer.waitForSeq(10);
    // A second device that is behind: connected after reading nothing yet.
    const phone = await SyncClient.open(h.url, 'p1', h.token, 'dev-phone', 4);
    await phone.waitForSeq(10);

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(15_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${h.adminUrl}/`);

    const project = page.locator('tr[data-project="p1"]');
    await expect.poll(() => project.getAttribute('data-head-seq'), { timeout: 15_000 }).toBe('10');
    await page.locator('tr[data-device-id="dev-laptop"]').waitFor();
    await page.locator('tr[data-device-id="dev-phone"]').waitFor();
    expect(await page.locator('[data-testid="ready"]').textContent()).toBe('ready');

    // The same document from here on: a marker survives only if nothing reloads the page.
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    for (let batch = 2; batch <= 6; batch++) await writer.push(batch, makeEvents(batch * 10 - 9, 10));
    await writer.waitForSeq(60);
    await expect.poll(() => project.getAttribute('data-head-seq'), { timeout: 15_000 }).toBe('60');
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    expect(await page.locator('[data-testid="committed"]').textContent()).toBe('60');
    const laptopRow = await page.locator('tr[data-device-id="dev-laptop"]').innerText();
    expect(laptopRow).toContain('127.0.0.1:');

    // Keep events flowing until the page shows a non-zero events/s (the rate covers the last few
    // samples only, so a page that polls late must still see traffic), then keep a picture.
    let flowing = true;
    const flow = (async () => {
      for (let n = 61; flowing; n++) {
        await writer.push(n, makeEvents(n, 1));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      await expect.poll(async () => Number(await project.locator('td').nth(2).textContent()), { timeout: 15_000 }).toBeGreaterThan(0);
    } finally {
      flowing = false;
      await flow;
    }
    mkdirSync(join(REPO_ROOT, 'test-output'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);

    expect(errors).toEqual([]);
    // Nothing but the hub's own admin listener: no CDN.
    expect(requests.every((u) => u.startsWith(h.adminUrl))).toBe(true);
    await page.close();
  });
});
