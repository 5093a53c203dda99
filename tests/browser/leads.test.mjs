// The leads view: KPI cards, table, filters kept in the URL and localStorage, sort, pages,
// CSV export, and the narrow (phone) layout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import {
  startHunter, launchBrowser, openApp, screenshot, eventually, expectLeadRows,
} from './helpers.mjs';

const CSV_HEADER = 'domain,companyName,provider,tenantSize,score,segment,priority,priorityCategory,priorityCategoryLabel,sellerAction,commercialSegment,commercialHeat,scanState,scannedAt,referralCount,syncStatus,dynamicsId,lastSyncedAt,lastError,updatedAt';

const domains = (result) => result.items.map((i) => i.domain);

describe('leads view', { timeout: 120_000 }, () => {
  let hunter;
  let browser;
  let app;

  before(async () => {
    [hunter, browser] = await Promise.all([startHunter(), launchBrowser()]);
    app = await openApp(browser, hunter);
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
  });

  test('loads with the seeded data: KPI cards equal /stats, rows equal the first page of /leads', async () => {
    const { page } = app;
    const [stats, first] = await Promise.all([hunter.api('/stats'), hunter.api('/leads')]);
    assert.ok(first.items.length > 0, 'the API has leads');
    await expectLeadRows(page, domains(first), 'first page');

    const kpi = async (id) => {
      const text = await page.$eval(`[data-kpi="${id}"] .kpi-value`, (el) => el.textContent);
      return Number(text.replace(/[^\d]/g, ''));
    };
    await eventually(async () => assert.equal(await kpi('leads'), stats.leads, 'Leads card'));
    assert.equal(await kpi('migration'), stats.segments.Migration ?? 0, 'Migration candidates card');
    assert.equal(await kpi('p1p2'), (stats.priorityCategories.P1 ?? 0) + (stats.priorityCategories.P2 ?? 0), 'P1/P2 card');
    assert.equal(await kpi('synced'), stats.syncStatuses.synced ?? 0, 'Pushed to Dynamics card');
    assert.equal(await kpi('failed'), stats.syncStatuses.failed ?? 0, 'Failed pushes card');

    // Each row shows the lead's own values.
    const rows = await page.$$eval('#leads-table tbody tr', (trs) => trs.map((tr) => ({
      domain: tr.querySelector('.c-domain').textContent,
      company: tr.querySelector('.c-company').textContent,
      score: tr.querySelector('.score-num')?.textContent ?? null,
      badge: tr.querySelector('.pbadge')?.textContent,
      badgeName: tr.querySelector('.pbadge')?.getAttribute('aria-label'),
      badgeTitle: tr.querySelector('.pbadge')?.getAttribute('title'),
      segment: tr.querySelector('.c-segment').textContent,
    })));
    first.items.forEach((lead, i) => {
      assert.equal(rows[i].domain, lead.domain);
      assert.equal(rows[i].company, lead.companyName || '—');
      assert.equal(rows[i].score, lead.score == null ? null : String(lead.score));
      assert.equal(rows[i].badge, lead.priorityCategory);
      assert.equal(rows[i].segment, lead.segment);
      const category = stats.categories.find((c) => c.category === lead.priorityCategory);
      assert.ok(rows[i].badgeName.includes(category.label) && rows[i].badgeName.includes(category.sellerAction),
        `badge of ${lead.domain} names "${category.label}" and "${category.sellerAction}": ${rows[i].badgeName}`);
      assert.equal(rows[i].badgeTitle, rows[i].badgeName);
    });

    // Provider options come from stats.providers.
    const providers = await page.$$eval('#lead-provider option', (opts) => opts.map((o) => o.value).filter(Boolean));
    assert.deepEqual(providers.sort(), Object.keys(stats.providers).sort());
    await screenshot(page, 'leads');
    app.clean();
  });

  test('clicking a KPI card applies its filter', async () => {
    const { page } = app;
    await page.click('[data-kpi="migration"]');
    const migration = await hunter.api('/leads?segment=Migration');
    await expectLeadRows(page, domains(migration), 'Migration card');
    assert.equal(await page.$eval('#lead-segment', (el) => el.value), 'Migration');
    assert.equal(await page.$eval('[data-kpi="migration"]', (el) => el.getAttribute('aria-pressed')), 'true');

    // P1/P2: every row shown is a P1 or P2 lead, and they are all there.
    await page.click('[data-kpi="p1p2"]');
    const hot = (await hunter.api('/leads?limit=200')).items.filter((l) => ['P1', 'P2'].includes(l.priorityCategory));
    await eventually(async () => {
      const shown = await page.$$eval('#leads-table tbody tr[data-domain]', (trs) => trs.map((tr) => tr.querySelector('.pbadge').textContent));
      assert.ok(shown.length > 0 && shown.every((p) => p === 'P1' || p === 'P2'), `only P1/P2 rows: ${shown}`);
      assert.equal(shown.length, hot.length, 'every P1/P2 lead');
    });
    assert.equal(await page.$eval('#lead-priority', (el) => el.value), 'P1,P2');

    // Failed pushes: the seed has none, so the empty state says so.
    await page.click('[data-kpi="failed"]');
    const failed = await hunter.api('/leads?syncStatus=failed');
    await expectLeadRows(page, domains(failed), 'failed pushes');
    assert.equal(await page.$eval('#lead-sync', (el) => el.value), 'failed');

    await page.click('[data-kpi="leads"]');
    await expectLeadRows(page, domains(await hunter.api('/leads')), 'Leads card clears the filters');
  });

  test('filters by segment, min score and search; the URL and localStorage keep them across a reload', async () => {
    const { page } = app;
    await page.selectOption('#lead-segment', 'Migration');
    await expectLeadRows(page, domains(await hunter.api('/leads?segment=Migration')), 'segment=Migration');

    await page.fill('#lead-min-score', '50');
    const scored = await hunter.api('/leads?segment=Migration&minScore=50');
    assert.ok(scored.items.length > 0, 'the seed has Migration leads scoring 50 or more');
    await expectLeadRows(page, domains(scored), 'segment=Migration&minScore=50');

    // Search for a word of the last matching domain (debounced input, typed like a person).
    const word = scored.items[scored.items.length - 1].domain.split(/[.-]/)[0];
    await page.click('#lead-search');
    await page.keyboard.type(word, { delay: 20 });
    const searched = await hunter.api(`/leads?segment=Migration&minScore=50&q=${encodeURIComponent(word)}`);
    assert.ok(searched.items.length > 0 && searched.items.length < (await hunter.api('/leads')).items.length);
    await expectLeadRows(page, domains(searched), `search "${word}"`);

    const hash = await page.evaluate(() => location.hash);
    const params = new URLSearchParams(hash.split('?')[1]);
    assert.equal(params.get('segment'), 'Migration');
    assert.equal(params.get('minScore'), '50');
    assert.equal(params.get('q'), word);
    const stored = new URLSearchParams(await page.evaluate(() => localStorage.getItem('hunter.leads.query')));
    assert.equal(stored.get('segment'), 'Migration');
    assert.equal(stored.get('minScore'), '50');
    assert.equal(stored.get('q'), word);

    // A reload keeps them (from the URL).
    await page.reload();
    await page.waitForSelector('#app:not([hidden])');
    await expectLeadRows(page, domains(searched), 'after a reload');
    assert.equal(await page.$eval('#lead-segment', (el) => el.value), 'Migration');
    assert.equal(await page.$eval('#lead-min-score', (el) => el.value), '50');
    assert.equal(await page.$eval('#lead-search', (el) => el.value), word);

    // Without a query in the URL they come back from localStorage.
    await page.evaluate(() => {
      history.replaceState(null, '', '/#/leads');
      location.reload();
    });
    await page.waitForSelector('#app:not([hidden])');
    await expectLeadRows(page, domains(searched), 'restored from localStorage');
    const restored = new URLSearchParams((await page.evaluate(() => location.hash)).split('?')[1]);
    assert.equal(restored.get('segment'), 'Migration', 'the URL shows the restored filters');
  });

  test('Clear resets every filter, the URL and localStorage', async () => {
    const { page } = app;
    await page.click('#clear-filters');
    await expectLeadRows(page, domains(await hunter.api('/leads')), 'after Clear');
    assert.equal(await page.evaluate(() => location.hash), '#/leads');
    assert.equal(await page.evaluate(() => localStorage.getItem('hunter.leads.query')), null);
    assert.equal(await page.$eval('#lead-segment', (el) => el.value), '');
    assert.equal(await page.$eval('#lead-min-score', (el) => el.value), '');
    assert.equal(await page.$eval('#lead-search', (el) => el.value), '');
  });

  test('shows the empty state with a Clear button when nothing matches', async () => {
    const { page } = app;
    await page.click('#lead-search');
    await page.keyboard.type('no-such-company-anywhere', { delay: 5 });
    await page.waitForSelector('.view-leads[data-state="empty"]');
    assert.match(await page.textContent('.state-empty'), /No leads match these filters/);
    assert.equal(await page.isVisible('#leads-table'), false, 'no empty table');
    await page.click('[data-action="clear-empty"]');
    await expectLeadRows(page, domains(await hunter.api('/leads')), 'after the empty state Clear');
  });

  test('an API error shows an error state with Try again, never a broken table', async () => {
    const { page } = app;
    const failing = (url) => url.pathname === '/api/v1/leads';
    await page.route(failing, (route) => route.fulfill({
      status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'unavailable', message: 'the lead store is not answering' } }),
    }));
    await page.selectOption('#lead-segment', 'Cold');
    await page.waitForSelector('.view-leads[data-state="error"]');
    assert.match(await page.textContent('.state-error'), /the lead store is not answering/);
    assert.equal(await page.isVisible('#leads-table'), false);
    await page.unroute(failing);
    await page.click('.state-error button');
    await expectLeadRows(page, domains(await hunter.api('/leads?segment=Cold')), 'after Try again');
    await page.click('#clear-filters');
    await expectLeadRows(page, domains(await hunter.api('/leads')), 'cleared');
  });

  test('sorts by a column both ways, in the order of the API', async () => {
    const { page } = app;
    const ariaSort = (key) => page.$eval(`th:has(button[data-sort="${key}"])`, (th) => th.getAttribute('aria-sort'));
    assert.equal(await ariaSort('score'), 'descending');

    await page.click('button[data-sort="score"]');
    await expectLeadRows(page, domains(await hunter.api('/leads?sort=-score')), 'score, low first');
    assert.equal(await ariaSort('score'), 'ascending');
    assert.match(await page.evaluate(() => location.hash), /sort=-score/);

    await page.click('button[data-sort="score"]');
    await expectLeadRows(page, domains(await hunter.api('/leads?sort=score')), 'score, high first');
    assert.equal(await ariaSort('score'), 'descending');

    await page.click('button[data-sort="domain"]');
    await expectLeadRows(page, domains(await hunter.api('/leads?sort=domain')), 'domain A-Z');
    assert.equal(await ariaSort('domain'), 'ascending');
    assert.equal(await ariaSort('score'), 'none');

    await page.click('button[data-sort="referrals"]');
    await expectLeadRows(page, domains(await hunter.api('/leads?sort=referrals')), 'most referrals first');
    assert.equal(await ariaSort('referrals'), 'descending');

    await page.click('button[data-sort="score"]');
    await expectLeadRows(page, domains(await hunter.api('/leads')), 'back to the default');
  });

  test('paginates forward and back', async () => {
    const { page } = app;
    await page.selectOption('.pager select', '25');
    const p1 = await hunter.api('/leads?limit=25');
    assert.ok(p1.nextCursor, 'the seed has more than 25 leads');
    await expectLeadRows(page, domains(p1), 'page 1');
    assert.equal(await page.isDisabled('[data-action="prev-page"]'), true);

    await page.click('[data-action="next-page"]');
    const p2 = await hunter.api(`/leads?limit=25&cursor=${p1.nextCursor}`);
    await expectLeadRows(page, domains(p2), 'page 2');
    assert.match(await page.textContent('#leads-summary'), /Showing 26–/);
    assert.match(await page.textContent('.pager-page'), /Page 2/);

    const pages = [p1, p2];
    while (pages[pages.length - 1].nextCursor) {
      await page.click('[data-action="next-page"]');
      const next = await hunter.api(`/leads?limit=25&cursor=${pages[pages.length - 1].nextCursor}`);
      pages.push(next);
      await expectLeadRows(page, domains(next), `page ${pages.length}`);
    }
    assert.equal(await page.isDisabled('[data-action="next-page"]'), true, 'no Next on the last page');

    for (let n = pages.length - 2; n >= 0; n -= 1) {
      await page.click('[data-action="prev-page"]');
      await expectLeadRows(page, domains(pages[n]), `back on page ${n + 1}`);
    }
    assert.equal(await page.isDisabled('[data-action="prev-page"]'), true);
    await page.selectOption('.pager select', '50');
    await expectLeadRows(page, domains(await hunter.api('/leads')), 'page size 50');
  });

  test('keyboard only: KPI cards, sort headers and pages keep the focus where the user is', async () => {
    const { page } = app;
    const focused = () => page.evaluate(() => {
      const el = document.activeElement;
      return el?.dataset.kpi || el?.dataset.sort || el?.dataset.action || el?.id || el?.tagName;
    });
    await page.focus('[data-kpi="migration"]');
    await page.keyboard.press('Enter');
    await expectLeadRows(page, domains(await hunter.api('/leads?segment=Migration')), 'Migration card by keyboard');
    assert.equal(await focused(), 'migration');
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Enter');
    await expectLeadRows(page, domains(await hunter.api('/leads')), 'Leads card by keyboard');
    assert.equal(await focused(), 'leads');

    await page.focus('button[data-sort="score"]');
    await page.keyboard.press('Enter');
    await expectLeadRows(page, domains(await hunter.api('/leads?sort=-score')), 'sort by keyboard');
    assert.equal(await focused(), 'score');
    await page.keyboard.press('Enter');
    await expectLeadRows(page, domains(await hunter.api('/leads')), 'sort back by keyboard');

    await page.focus('[data-action="next-page"]');
    await page.keyboard.press('Enter');
    const p1 = await hunter.api('/leads');
    await expectLeadRows(page, domains(await hunter.api(`/leads?cursor=${p1.nextCursor}`)), 'next page by keyboard');
    assert.equal(await focused(), 'prev-page', 'Next is disabled on the last page: focus moves to Previous');
    await page.keyboard.press('Enter');
    await expectLeadRows(page, domains(p1), 'previous page by keyboard');
    assert.equal(await focused(), 'next-page');
  });

  test('exports the filtered rows as CSV, like the API', async () => {
    const { page } = app;
    await page.evaluate(() => { location.hash = '#/leads?segment=Existing&sort=domain'; });
    const all = await hunter.api('/leads?segment=Existing&sort=domain&limit=200');
    await expectLeadRows(page, domains(all).slice(0, 50), 'segment=Existing sorted by domain');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
    assert.match(download.suggestedFilename(), /\.csv$/);
    const csv = await readFile(await download.path(), 'utf8');
    const lines = csv.trim().split(/\r?\n/);
    assert.equal(lines[0], CSV_HEADER);
    const csvDomains = lines.slice(1).map((line) => line.split(',')[0]);
    assert.deepEqual(csvDomains, domains(all), 'CSV rows: the filtered leads, in order');
    assert.ok(lines.slice(1).every((line) => line.includes(',Existing,')), 'every row is an Existing lead');
    const apiCsv = await hunter.api('/leads/export.csv?segment=Existing&sort=domain');
    assert.equal(csv, apiCsv, 'the file is what the API exports for the same filters');
    await page.click('#clear-filters');
    app.clean();
  });

  test('narrow layout (390×844): no horizontal overflow, leads readable as cards', async () => {
    const narrow = await openApp(browser, hunter, { viewport: { width: 390, height: 844 } });
    try {
      const { page } = narrow;
      await page.evaluate(() => localStorage.removeItem('hunter.leads.query'));
      const first = await hunter.api('/leads');
      await expectLeadRows(page, domains(first), 'narrow first page');
      const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scrollWidth <= 390, `page scrollWidth ${scrollWidth} <= 390`);
      assert.equal(await page.isVisible('#leads-table thead'), false, 'no table header on a phone');

      const card = await page.$eval('#leads-table tbody tr', (tr) => {
        const box = tr.getBoundingClientRect();
        const domain = tr.querySelector('.c-domain');
        const dbox = domain.getBoundingClientRect();
        const score = tr.querySelector('.c-score').getBoundingClientRect();
        return {
          left: box.left, right: box.right, domainText: domain.textContent,
          fontSize: parseFloat(getComputedStyle(domain).fontSize),
          domainVisible: dbox.width > 0 && dbox.right <= 390, scoreVisible: score.width > 0 && score.right <= 390,
          company: tr.querySelector('.c-company').getBoundingClientRect().width > 0,
        };
      });
      assert.ok(card.left >= 0 && card.right <= 390, `the card fits: ${card.left}..${card.right}`);
      assert.equal(card.domainText, first.items[0].domain);
      assert.ok(card.fontSize >= 14, `domain font size ${card.fontSize}px`);
      assert.ok(card.domainVisible && card.scoreVisible && card.company, 'domain, score and company are on screen');
      // Every element stays inside the viewport horizontally.
      const overflowing = await page.evaluate(() => [...document.querySelectorAll('#app *')]
        .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > 391 && !el.closest('.nav'))
        .map((el) => el.className || el.tagName).slice(0, 5));
      assert.deepEqual(overflowing, [], 'nothing sticks out to the right');
      await screenshot(page, 'leads-narrow');

      // The detail fills the phone screen and is readable too.
      await page.click('#leads-table tbody tr');
      await page.waitForSelector('dialog .detail-summary');
      const dialogBox = await page.$eval('dialog', (d) => d.getBoundingClientRect().width);
      assert.ok(dialogBox <= 390, `the detail is ${dialogBox}px wide`);
      await screenshot(page, 'lead-detail-narrow');
      narrow.clean();
    } finally {
      await narrow.close();
    }
  });
});
