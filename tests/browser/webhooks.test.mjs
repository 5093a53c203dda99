// Partner Center webhooks: the header's indicator (on, off, a refused newest event, /webhooks
// not answering) and how each referral arrived (the Arrived column and the detail).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  startHunter, launchBrowser, openApp, screenshot, eventually, ARTIFACTS,
} from './helpers.mjs';

const INDICATOR = '[data-testid="webhooks"]';
const REFERRALS_API = (url) => url.pathname === '/api/v1/referrals';
const WEBHOOKS_API = (url) => url.pathname === '/api/v1/webhooks';

/** Reloads the page: the header polls at once (the token stays in sessionStorage). */
async function reload(page) {
  await page.reload();
  await page.waitForSelector('#app:not([hidden])');
}

/**
 * At 1280 px the header stays one row (brand, views, status), the last sync and the webhook
 * line each fit on one line, and no status item overlaps another.
 */
async function expectHeaderTidy(page) {
  const layout = await page.evaluate(() => {
    const box = (el) => {
      const r = el.getBoundingClientRect();
      return { id: el.id, left: r.left, right: r.right, top: r.top, bottom: r.bottom, height: r.height };
    };
    const items = [...document.querySelectorAll('.header-status > :not(.sync-error-pop)')]
      .filter((el) => el.getClientRects().length > 0 && el.childElementCount + el.textContent.length > 0)
      .map((el) => box(el.id === 'sync-now' ? el : el.firstElementChild || el));
    return { items, nav: box(document.querySelector('.nav')), status: box(document.querySelector('.header-status')) };
  });
  assert.ok(layout.status.top < layout.nav.bottom && layout.nav.top < layout.status.bottom, `the status is on the row of the views: ${JSON.stringify(layout)}`);
  for (const item of layout.items.filter((i) => i.id !== 'sync-now')) assert.ok(item.height <= 24, `${item.id || 'status item'} is one line (${item.height} px high)`);
  for (const [i, a] of layout.items.entries()) {
    for (const b of layout.items.slice(i + 1)) {
      const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
      assert.ok(apart, `${a.id} and ${b.id} overlap: ${JSON.stringify([a, b])}`);
    }
  }
}

describe('webhooks registered with the simulator', { timeout: 120_000 }, () => {
  let hunter;
  let browser;
  let app;

  before(async () => {
    [hunter, browser] = await Promise.all([startHunter(), launchBrowser()]);
    app = await openApp(browser, hunter, { hash: '#/referrals' });
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
  });

  test('the header says webhooks are on, with 0 events, and the registration as its title', async () => {
    const { page } = app;
    const activity = await hunter.api('/webhooks');
    assert.ok(activity.registration, `hunter-local registered itself: ${JSON.stringify(activity)}`);
    assert.equal(activity.received, 0, 'no event yet');

    await page.waitForSelector(INDICATOR);
    const indicator = page.locator(INDICATOR);
    assert.equal(await indicator.getAttribute('data-state'), 'on');
    const text = await indicator.textContent();
    assert.match(text, /Webhooks on/);
    assert.equal(await page.textContent('[data-testid="webhook-events"]'), '0 events');
    assert.doesNotMatch(text, /last event/, 'no event yet: no time');
    const title = await indicator.getAttribute('title');
    assert.ok(title.includes(activity.registration.url), title);
    assert.match(activity.registration.url, /^http:\/\/127\.0\.0\.1:\d+\/api\/v1\/webhooks\/partner-center$/);
    for (const event of activity.registration.events) assert.ok(title.includes(event), `${event} in ${title}`);
    assert.match(title, /0 received, 0 queued, 0 refused/);

    await page.locator('.app-header').screenshot({ path: join(ARTIFACTS, 'webhooks-header.png') });
    await expectHeaderTidy(page);
    app.clean();
  });

  test('the referrals table has an Arrived column: the seeded referrals came by sweep', async () => {
    const { page } = app;
    const first = await hunter.api('/referrals');
    assert.ok(first.items.length > 0);
    await page.waitForSelector('.view-referrals[data-state="ready"]');
    await screenshot(page, 'webhooks-referrals');
    assert.deepEqual([...new Set(first.items.map((r) => r.arrivedBy))], ['sweep'], 'the API says sweep');

    const headers = await page.$$eval('#referrals-table thead th', (ths) => ths.map((th) => th.textContent));
    assert.ok(headers.includes('Arrived'), JSON.stringify(headers));
    await eventually(async () => {
      const rows = await page.$$eval('#referrals-table tbody tr[data-id]', (trs) => trs.map((tr) => {
        const chip = tr.querySelector('[data-testid="arrived"] .chip');
        return { id: tr.dataset.id, text: chip?.textContent, sweep: chip?.classList.contains('arrival-sweep') };
      }));
      assert.deepEqual(rows, first.items.map((r) => ({ id: r.id, text: 'sweep', sweep: true })));
    });
    // Readable at 1280 px: every column fits without scrolling sideways.
    const wrap = await page.$eval('#referrals-table', (t) => ({ scroll: t.parentElement.scrollWidth, client: t.parentElement.clientWidth }));
    assert.ok(wrap.scroll <= wrap.client, `the table fits at 1280 px: ${JSON.stringify(wrap)}`);
    await expectHeaderTidy(page);

    // The detail says it too.
    const id = first.items[0].id;
    await page.focus(`#referrals-table tr[data-id="${id}"]`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('dialog[open] [data-testid="arrived-by"] .chip');
    const fact = await page.$eval('dialog[open] [data-testid="arrived-by"]', (el) => {
      const box = el.closest('.fact');
      return { label: box.querySelector('dt').textContent, value: box.querySelector('dd').textContent };
    });
    assert.deepEqual(fact, { label: 'Arrived by', value: 'sweep' });
    await screenshot(page, 'webhooks-referral-detail');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    app.clean();
  });

  test('a referral that came by webhook is highlighted', async () => {
    const { page } = app;
    const first = await hunter.api('/referrals');
    const hooked = { ...first, items: first.items.map((r, i) => ({ ...r, arrivedBy: i % 3 === 1 ? 'webhook' : 'sweep' })) };
    await page.route(REFERRALS_API, (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(hooked) }));
    try {
      await page.evaluate(() => { location.hash = '#/referrals?status=Active'; });
      await eventually(async () => {
        const chips = await page.$$eval('#referrals-table tbody [data-testid="arrived"] .chip', (els) => els.map((el) => `${el.textContent}:${el.className}`));
        assert.deepEqual(chips, hooked.items.map((r) => `${r.arrivedBy}:chip chip-arrival arrival-${r.arrivedBy}`));
      });
      const title = await page.getAttribute('#referrals-table tbody tr:nth-child(2) .arrival-webhook', 'title');
      assert.match(title, /^Arrived by webhook: a Partner Center webhook event/);
      await screenshot(page, 'webhooks-referrals-webhook');
    } finally {
      await page.unroute(REFERRALS_API);
      await page.evaluate(() => { location.hash = '#/referrals'; });
    }
    app.clean();
  });

  test('a refused newest event turns the indicator into a warning, with the reason', async () => {
    const { page } = app;
    const real = await hunter.api('/webhooks');
    const refused = {
      ...real, received: 1234, queued: 1233, refused: 1,
      lastEventAt: new Date(Date.now() - 45 * 60_000).toISOString(),
      lastRefusedAt: new Date(Date.now() - 60_000).toISOString(),
      lastRefusal: 'the signature did not verify',
    };
    await page.route(WEBHOOKS_API, (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(refused) }));
    try {
      await reload(page);
      await eventually(async () => assert.equal(await page.getAttribute(INDICATOR, 'data-state'), 'warn'));
      const text = await page.textContent(INDICATOR);
      assert.match(text, /Webhooks on · 1,234 events · last event 45 min\. ago/);
      assert.match(text, /the newest event was refused: the signature did not verify/, 'said to screen readers');
      assert.match(await page.getAttribute(INDICATOR, 'title'), /1,234 received, 1,233 queued, 1 refused[\s\S]*the signature did not verify/);
      await page.locator('.app-header').screenshot({ path: join(ARTIFACTS, 'webhooks-header-warn.png') });
      await expectHeaderTidy(page);

      // An event accepted after the refusal: no warning any more.
      refused.lastEventAt = new Date().toISOString();
      await reload(page);
      await eventually(async () => assert.equal(await page.getAttribute(INDICATOR, 'data-state'), 'on'));
      assert.match(await page.textContent(INDICATOR), /Webhooks on · 1,234 events · last event just now/);
    } finally {
      await page.unroute(WEBHOOKS_API);
    }
    app.clean();
  });

  test('narrow (390×844): the indicator sits on the brand row, and nothing overflows', async () => {
    const narrow = await openApp(browser, hunter, { hash: '#/referrals', viewport: { width: 390, height: 844 } });
    try {
      const { page } = narrow;
      await page.waitForSelector(`${INDICATOR}[data-state="on"]`);
      const layout = await page.evaluate(() => {
        const box = (sel) => document.querySelector(sel).getBoundingClientRect().toJSON();
        return {
          indicator: box('[data-testid="webhooks"]'), brand: box('.brand'), button: box('#sync-now'),
          scrollWidth: document.documentElement.scrollWidth,
        };
      });
      await screenshot(page, 'webhooks-narrow');
      assert.ok(layout.scrollWidth <= 390, `no horizontal overflow (${layout.scrollWidth} px)`);
      const { indicator, brand, button } = layout;
      assert.ok(indicator.top < brand.bottom && brand.top < indicator.bottom, `on the brand row: ${JSON.stringify(layout)}`);
      assert.ok(brand.right <= indicator.left && indicator.right <= button.left, `between the brand and Sync now: ${JSON.stringify(layout)}`);
      narrow.clean();
    } finally {
      await narrow.close();
    }
  });

  test('when /webhooks fails the header goes on without the indicator', async () => {
    const { page } = app;
    await page.route(WEBHOOKS_API, (route) => route.fulfill({
      status: 500, contentType: 'application/json', body: JSON.stringify({ error: { code: 'internal', message: 'boom' } }),
    }));
    try {
      await reload(page);
      await page.waitForSelector('#last-sync .last-sync-text');
      assert.equal(await page.$$eval(INDICATOR, (els) => els.length), 0, 'no indicator');
      assert.match(await page.textContent('#last-sync'), /Last sync/);
      assert.match(await page.textContent('#queues'), /Queue/);
    } finally {
      await page.unroute(WEBHOOKS_API);
    }
    await reload(page);
    await page.waitForSelector(`${INDICATOR}[data-state="on"]`);
    // The 500 shows up in the console as a failed resource only, which clean() allows.
    app.clean();
  });
});

describe('webhooks off (--no-webhooks)', { timeout: 120_000 }, () => {
  let hunter;
  let browser;
  let app;

  before(async () => {
    [hunter, browser] = await Promise.all([startHunter({ args: ['--no-webhooks'] }), launchBrowser()]);
    app = await openApp(browser, hunter, { hash: '#/referrals' });
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
  });

  test('the header says webhooks are off', async () => {
    const { page } = app;
    const activity = await hunter.api('/webhooks');
    assert.equal(activity.registration, null, JSON.stringify(activity));
    await page.waitForSelector(INDICATOR);
    assert.equal(await page.getAttribute(INDICATOR, 'data-state'), 'off');
    assert.equal((await page.textContent(INDICATOR)).trim(), 'Webhooks off');
    assert.equal(await page.$eval(INDICATOR, (el) => el.classList.contains('is-off')), true, 'muted');
    assert.match(await page.getAttribute(INDICATOR, 'title'), /No Partner Center webhook is registered/);
    await page.locator('.app-header').screenshot({ path: join(ARTIFACTS, 'webhooks-header-off.png') });
    await expectHeaderTidy(page);
    app.clean();
  });
});
