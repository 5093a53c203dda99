// "Sign in again": when Partner Center refuses the refresh token (revoked consent), the header
// says so in a banner that names the command, until a sync is accepted again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startHunter, launchBrowser, openApp, screenshot, eventually,
} from './helpers.mjs';

describe('Partner Center sign-in', { timeout: 120_000 }, () => {
  let hunter;
  let browser;
  let app;
  let dataDir;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'hunter-browser-sign-in-'));
    [hunter, browser] = await Promise.all([
      startHunter({ args: ['--sim-refresh-token-revoked', '--in-memory', '--data-dir', dataDir], waitForLeads: false, seed: 5 }),
      launchBrowser(),
    ]);
    await eventually(async () => {
      const health = await hunter.api('/health');
      assert.equal(health.partnerCenter?.signIn, 'required', JSON.stringify(health));
    }, { timeout: 30_000, interval: 200 });
    app = await openApp(browser, hunter);
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('a refused refresh token shows a "sign in again" banner naming the command', async () => {
    const { page } = app;
    const banner = page.locator('[data-testid="sign-in-banner"]');
    await banner.waitFor({ state: 'visible' });
    const text = await banner.textContent();
    assert.match(text, /Partner Center: sign in again/);
    assert.match(text, /hunter-local sign-in/);
    assert.equal(await banner.getAttribute('role'), 'alert');
    assert.equal(await page.locator('[data-testid="sign-in-banner"]').count(), 1, 'one banner, however often the header polls');

    // The failed run in the header says why, too.
    await page.click('#last-sync button');
    await eventually(async () => assert.match(await page.textContent('#sync-error'), /sign-in required/));
    await screenshot(page, 'sign-in-required');
    app.clean();
  });
});
