// Sign-in with the token link: the token leaves the address bar, every call carries it, and a
// 401 anywhere shows a clear sign-in-again page instead of a broken view.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHunter, launchBrowser, openApp, screenshot, eventually,
} from './helpers.mjs';

describe('sign-in (token mode)', { timeout: 120_000 }, () => {
  let hunter;
  let browser;

  before(async () => {
    [hunter, browser] = await Promise.all([startHunter(), launchBrowser()]);
  });

  after(async () => {
    await browser?.close();
    await hunter?.stop();
  });

  test('the #token= link signs in, leaves the address bar and is sent as a bearer token', async () => {
    const app = await openApp(browser, hunter, { signIn: false });
    try {
      const { page } = app;
      const auth = [];
      page.on('request', (req) => {
        if (req.url().includes('/api/v1/')) auth.push(req.headers().authorization);
      });
      await page.goto(`${hunter.base}/#token=${hunter.token}`);
      await page.waitForSelector('#leads-table tbody tr[data-domain]');
      assert.equal(await page.evaluate(() => location.hash), '#/leads', 'the token left the address bar');
      assert.ok(!page.url().includes(hunter.token));
      assert.equal(await page.evaluate(() => sessionStorage.getItem('hunter.auth.token')), hunter.token);
      assert.ok(auth.length > 0 && auth.every((a) => a === `Bearer ${hunter.token}`), `every API call had the bearer: ${JSON.stringify(auth)}`);
      app.clean();
    } finally {
      await app.close();
    }
  });

  test('a wrong #token= shows the sign-in-again page, not a broken table', async () => {
    const app = await openApp(browser, hunter, { signIn: false });
    try {
      const { page } = app;
      await page.goto(`${hunter.base}/#token=not-the-token`);
      await page.waitForSelector('#signin:not([hidden])');
      const text = await page.textContent('#signin');
      assert.match(text, /Your session has expired or the link is not valid/);
      assert.match(text, /Open the link hunter-local printed again/);
      assert.equal(await page.isVisible('#app'), false, 'the app (and its tables) are hidden');
      assert.equal(await page.$$eval('table', (t) => t.length), 0, 'no table at all');
      assert.ok(!page.url().includes('not-the-token'), 'the bad token left the address bar too');
      await screenshot(page, 'signin');

      // Pasting the right token signs in.
      await page.fill('#token-input', hunter.token);
      await page.press('#token-input', 'Enter');
      await page.waitForSelector('#leads-table tbody tr[data-domain]');
      assert.equal(await page.isVisible('#signin'), false);
      app.clean();
    } finally {
      await app.close();
    }
  });

  test('a 401 in the middle of a session (token revoked) shows the sign-in page', async () => {
    const app = await openApp(browser, hunter);
    try {
      const { page } = app;
      await page.waitForSelector('#leads-table tbody tr[data-domain]');
      // The server stops accepting the token: simulate with a stale token in the session.
      await page.evaluate(() => sessionStorage.setItem('hunter.auth.token', 'revoked'));
      await page.selectOption('#lead-segment', 'Migration');
      await page.waitForSelector('#signin:not([hidden])');
      assert.match(await page.textContent('#signin'), /Your session has expired or the link is not valid/);
      assert.equal(await page.isVisible('#app'), false);
      await eventually(async () => assert.equal(await page.$$eval('dialog', (d) => d.length), 0));
      app.clean();
    } finally {
      await app.close();
    }
  });

  test('without any token the page says which link to open', async () => {
    const app = await openApp(browser, hunter, { signIn: false });
    try {
      const { page } = app;
      await page.goto(`${hunter.base}/`);
      await page.waitForSelector('#signin:not([hidden])');
      assert.match(await page.textContent('#signin'), /Open the link hunter-local printed/);
      app.clean();
    } finally {
      await app.close();
    }
  });
});
