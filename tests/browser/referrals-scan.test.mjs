// The referrals view (filters, pages, detail with the raw payload and Copy) and the
// single-domain scan form.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHunter, launchBrowser, openApp, screenshot, eventually, waitForToast,
} from './helpers.mjs';

const ids = (result) => result.items.map((r) => r.id);

describe('referrals and scan', { timeout: 120_000 }, () => {
  let hunter;
  let browser;
  let app;

  before(async () => {
    [hunter, browser] = await Promise.all([startHunter(), launchBrowser()]);
    app = await openApp(browser, hunter, { hash: '#/referrals', permissions: ['clipboard-read', 'clipboard-write'] });
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
  });

  async function expectReferralRows(page, expected, what) {
    await eventually(async () => {
      const state = await page.$eval('.view-referrals', (el) => el.dataset.state);
      if (state === 'loading') throw new Error('loading');
      const actual = state === 'empty' ? [] : await page.$$eval('#referrals-table tbody tr[data-id]', (trs) => trs.map((tr) => tr.dataset.id));
      assert.deepEqual(actual, expected, what);
    });
  }

  test('lists referrals like /referrals, with filters and pages', async () => {
    const { page } = app;
    const first = await hunter.api('/referrals');
    await expectReferralRows(page, ids(first), 'first page');
    const firstRow = await page.textContent('#referrals-table tbody tr');
    const r0 = first.items[0];
    assert.ok(firstRow.includes(r0.customerName) && firstRow.includes(r0.domain) && firstRow.includes(r0.type) && firstRow.includes(r0.status));
    assert.ok(firstRow.includes(new Intl.NumberFormat('en-US', { style: 'currency', currency: r0.currency, maximumFractionDigits: 0 }).format(r0.dealValue)), 'deal value with currency');
    await screenshot(page, 'referrals');

    await page.selectOption('#ref-eligible', 'skip:no_domain');
    const noDomain = await hunter.api('/referrals?eligible=false&skipReason=no_domain');
    assert.ok(noDomain.items.length > 0);
    await expectReferralRows(page, ids(noDomain), 'skipped for no domain');
    assert.ok((await page.textContent('#referrals-table tbody')).includes('No domain'), 'the skip reason is shown');

    await page.selectOption('#ref-eligible', 'true');
    await page.selectOption('#ref-status', 'Active');
    await expectReferralRows(page, ids(await hunter.api('/referrals?eligible=true&status=Active')), 'eligible + Active');
    assert.match(await page.evaluate(() => location.hash), /eligible=true/);

    await page.click('#ref-clear');
    await page.click('#ref-search');
    const word = r0.customerName.split(' ')[0];
    await page.keyboard.type(word, { delay: 10 });
    await expectReferralRows(page, ids(await hunter.api(`/referrals?q=${encodeURIComponent(word)}`)), `search ${word}`);
    await page.click('#ref-clear');
    await expectReferralRows(page, ids(first), 'cleared');

    assert.ok(first.nextCursor, 'more than one page of referrals');
    await page.click('[data-action="next-page"]');
    await expectReferralRows(page, ids(await hunter.api(`/referrals?cursor=${first.nextCursor}`)), 'page 2');
    await page.click('[data-action="prev-page"]');
    await expectReferralRows(page, ids(first), 'back to page 1');
    app.clean();
  });

  test('a referral opens with its raw payload as pretty JSON, and Copy copies it', async () => {
    const { page } = app;
    const first = await hunter.api('/referrals');
    const id = first.items[0].id;
    const detail = await hunter.api(`/referrals/${id}`);
    await page.focus(`#referrals-table tr[data-id="${id}"]`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('dialog[open] pre.raw-json');
    const pre = await page.textContent('dialog[open] pre.raw-json');
    assert.deepEqual(JSON.parse(pre), JSON.parse(detail.raw), 'the payload as received');
    assert.ok(pre.split('\n').length > 20, 'pretty-printed');
    await page.click('#copy-raw');
    await waitForToast(page, /Copied/);
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), pre);
    await screenshot(page, 'referral-detail');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    assert.equal(await page.evaluate(() => document.activeElement.dataset.id), id, 'focus back on the row');
    app.clean();
  });

  test('the scan form scores a domain, and says clearly when input is invalid or the domain does not resolve', async () => {
    const { page } = app;
    await page.evaluate(() => { location.hash = '#/scan'; });
    await page.waitForSelector('#scan-domain');

    // Invalid input: said next to the field, nothing sent.
    await page.fill('#scan-domain', 'not a domain');
    await page.click('#scan-submit');
    assert.match(await page.textContent('#scan-error'), /no spaces/);
    assert.equal(await page.getAttribute('#scan-domain', 'aria-invalid'), 'true');

    // Invalid for the server (400): its message is shown.
    await page.fill('#scan-domain', 'bad_domain.com');
    await page.click('#scan-submit');
    await eventually(async () => assert.match(await page.textContent('#scan-error'), /not a domain Hunter can scan.*bad_domain/));

    // A seeded domain: the same assessment the API gives.
    const lead = (await hunter.api('/leads')).items.find((l) => l.segment === 'Migration');
    const expected = await hunter.api('/scan', { method: 'POST', body: { domain: lead.domain } });
    await page.fill('#scan-domain', lead.domain);
    await page.click('#scan-submit');
    await page.waitForSelector('.result-card[data-state="ok"]');
    assert.equal(await page.textContent('#scan-error'), '', 'the error is gone');
    assert.equal(await page.textContent('[data-testid="scan-score"]'), String(expected.assessment.score));
    assert.equal(await page.textContent('[data-testid="scan-provider"]'), expected.assessment.provider);
    const card = await page.textContent('.result-card');
    assert.ok(card.includes(expected.assessment.priorityCategoryLabel) && card.includes(expected.assessment.sellerAction));
    assert.ok(card.includes(expected.assessment.segment));
    for (const line of expected.assessment.breakdown) assert.ok(card.includes(line.label), line.label);
    for (const mx of expected.scan.signals.mx) assert.ok(card.includes(mx.host), mx.host);
    assert.match(await page.evaluate(() => location.hash), new RegExp(`#/scan\\?domain=${lead.domain}`));
    await screenshot(page, 'scan');

    // A domain the local DNS does not know: no score, and why.
    await page.fill('#scan-domain', 'no-such-company-here.com');
    await page.click('#scan-submit');
    await page.waitForSelector('.result-card.result-failed');
    const failed = await page.textContent('.result-card');
    assert.match(failed, /No such domain|DNS failure|DNS timeout/);
    assert.match(failed, /No score|does not exist/);
    assert.equal(await page.$$eval('.result-card [data-testid="scan-score"]', (els) => els.length), 0, 'no score shown');
    app.clean();
  });
});
