// Sync now, the header's last sync, and the sync history chart and runs table.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHunter, launchBrowser, openApp, screenshot, eventually, waitForToast,
} from './helpers.mjs';

describe('sync history', { timeout: 120_000 }, () => {
  let hunter;
  let browser;
  let app;

  before(async () => {
    [hunter, browser] = await Promise.all([startHunter(), launchBrowser()]);
    app = await openApp(browser, hunter, { hash: '#/history' });
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
  });

  const chartRuns = (page) => page.$$eval('#history-chart svg g.run', (gs) => gs.map((g) => g.dataset.runId));
  const tableRuns = (page) => page.$$eval('#runs-table tbody tr[data-run-id]', (trs) => trs.map((tr) => tr.dataset.runId));

  test('shows the runs as a chart and a table, like /sync-runs', async () => {
    const { page } = app;
    const runs = await hunter.api('/sync-runs');
    assert.ok(runs.items.length >= 1);
    await eventually(async () => assert.deepEqual(await tableRuns(page), runs.items.map((r) => r.id)));
    await eventually(async () => assert.deepEqual(await chartRuns(page), runs.items.map((r) => r.id).reverse(), 'chart: oldest to newest'));

    // The bars of the first run are as tall as its numbers say, relative to each other.
    const first = runs.items[runs.items.length - 1];
    const heights = await page.$eval(`#history-chart g.run[data-run-id="${first.id}"]`, (g) => ({
      fetched: Number(g.querySelector('.bar-fetched').getAttribute('height')),
      eligible: Number(g.querySelector('.bar-eligible').getAttribute('height')),
      skipped: Number(g.querySelector('.bar-skipped').getAttribute('height')),
    }));
    const skipped = Object.values(first.skipped).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(heights.eligible / heights.fetched - first.eligible / first.fetched) < 0.02, 'eligible bar to scale');
    assert.ok(Math.abs(heights.skipped / heights.fetched - skipped / first.fetched) < 0.02, 'skipped bar to scale');

    // Axis labels and a legend a person can read.
    const ticks = await page.$$eval('#history-chart svg text.tick', (ts) => ts.map((t) => ({ text: t.textContent, size: parseFloat(getComputedStyle(t).fontSize) })));
    assert.ok(ticks.some((t) => t.text === '0') && ticks.every((t) => t.size >= 10), 'y axis from 0, labels at least 10px');
    assert.deepEqual(await page.$$eval('.legend li', (lis) => lis.map((li) => li.textContent)), ['Fetched', 'Eligible', 'Skipped', 'Failed run']);

    // The table row tells the numbers and the skip reasons.
    const row = await page.textContent(`#runs-table tr[data-run-id="${first.id}"]`);
    assert.ok(row.includes(String(first.fetched)) && row.includes(String(first.eligible)) && row.includes('OK'));
    assert.ok(row.includes(`Closed ${first.skipped.status_closed}`), `skip reasons shown: ${row}`);
    app.clean();
  });

  test('Sync now starts a run: the chart gains a bar group, the table a row, the header the new run', async () => {
    const { page } = app;
    const before = await hunter.api('/sync-runs');
    const n = before.items.length;
    await page.click('#sync-now');
    await waitForToast(page, /Sync started/);
    await waitForToast(page, /Sync finished/, 30_000);
    const afterRuns = await hunter.api('/sync-runs');
    assert.equal(afterRuns.items.length, n + 1, 'the API has one more run');
    const newest = afterRuns.items[0];
    await eventually(async () => {
      assert.equal((await tableRuns(page)).length, n + 1, 'one more row');
      assert.equal((await tableRuns(page))[0], newest.id, 'the new run on top');
      const chart = await chartRuns(page);
      assert.equal(chart.length, n + 1, 'one more bar group');
      assert.equal(chart[chart.length - 1], newest.id, 'the new run on the right');
    });
    await eventually(async () => assert.match(await page.textContent('#last-sync'), new RegExp(`${newest.fetched} fetched · OK`)));
    assert.equal(await page.getAttribute('#sync-now', 'aria-disabled'), null, 'Sync now is usable again');
    await screenshot(page, 'history');
    app.clean();
  });

  test('a sync that is already queued (409) is said so', async () => {
    const { page } = app;
    await page.route('**/api/v1/sync', (route) => route.fulfill({
      status: 409, contentType: 'application/json', body: JSON.stringify({ error: { code: 'sync_pending', message: 'a sync is already waiting' } }),
    }));
    await page.click('#sync-now');
    await waitForToast(page, /A sync is already queued/);
    await page.unroute('**/api/v1/sync');
    assert.equal(await page.getAttribute('#sync-now', 'aria-disabled'), null);
  });

  test('a failed last run shows in red with its error on click', async () => {
    const { page } = app;
    const health = await hunter.api('/health');
    const failed = { ...health.lastSync, id: 'failed-run', status: 'failed', error: 'Partner Center answered 503 three times' };
    await page.route('**/api/v1/health', (route) => route.fulfill({
      status: 200, contentType: 'application/json', body: JSON.stringify({ ...health, lastSync: failed, queues: { ...health.queues, referrals: { visible: 0, inFlight: 0, deadLetters: 2 } } }),
    }));
    await page.reload();
    await page.waitForSelector('#last-sync .is-failed');
    const color = await page.$eval('#last-sync .is-failed', (el) => getComputedStyle(el).color);
    assert.equal(color, 'rgb(201, 37, 45)', 'red');
    assert.match(await page.getAttribute('#last-sync .is-failed', 'title'), /Partner Center answered 503/);
    await page.click('#last-sync .is-failed');
    assert.match(await page.textContent('.sync-error-pop'), /Partner Center answered 503 three times/);
    assert.equal(await page.getAttribute('#last-sync .is-failed', 'aria-expanded'), 'true');
    await page.keyboard.press('Escape');
    await page.waitForSelector('.sync-error-pop', { state: 'hidden' });
    assert.equal(await page.getAttribute('#last-sync .is-failed', 'aria-expanded'), 'false');
    // Dead letters stand out.
    assert.match(await page.getAttribute('[data-testid="dlq"]', 'class'), /dlq-alert/);
    assert.match(await page.textContent('[data-testid="dlq"]'), /DLQ 2/);
    await page.unroute('**/api/v1/health');
  });

  test('an abandoned last run is said so, not shown as failed', async () => {
    const { page } = app;
    const health = await hunter.api('/health');
    const abandoned = { ...health.lastSync, id: 'abandoned-run', status: 'abandoned', error: null };
    await page.route('**/api/v1/health', (route) => route.fulfill({
      status: 200, contentType: 'application/json', body: JSON.stringify({ ...health, lastSync: abandoned }),
    }));
    try {
      await page.reload();
      await page.waitForSelector('#last-sync .last-sync-text');
      assert.match(await page.textContent('#last-sync'), /· abandoned/);
      assert.match(await page.getAttribute('#last-sync .last-sync-text', 'title'), /the next run went on from where it stopped/);
      assert.equal(await page.$('#last-sync .is-failed'), null, 'not the failed style');
      await screenshot(page, 'history-abandoned');
    } finally {
      await page.unroute('**/api/v1/health');
    }
  });
});
