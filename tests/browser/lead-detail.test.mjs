// The lead detail dialog: opened by mouse and keyboard, closed by ESC and backdrop, focus moved
// in, trapped and returned; what it shows; Push now and Rescan.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHunter, launchBrowser, openApp, screenshot, eventually, expectLeadRows, waitForToast,
} from './helpers.mjs';

const SEGMENT_MEANING = {
  Existing: 'already on Microsoft 365: sell more (seats, security, Copilot) or defend the renewal',
  Migration: 'a well-run mail domain on Google, Zoho, Yandex, hosting or its own server: a migration to Microsoft 365',
  Cold: 'a weaker signal: nurture',
  Skip: "no mail, no such domain, or a low score: not worth a seller's time now",
};

/** Where the keyboard focus is: inside the open dialog, on a lead row, or elsewhere. */
function focusInfo(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    return {
      inDialog: Boolean(el && el.closest('dialog[open]')),
      rowDomain: el?.matches?.('tr[data-domain]') ? el.dataset.domain : null,
      tag: el?.tagName,
    };
  });
}

describe('lead detail', { timeout: 120_000 }, () => {
  let hunter;
  let browser;
  let app;
  let firstPage;

  before(async () => {
    [hunter, browser] = await Promise.all([startHunter(), launchBrowser()]);
    app = await openApp(browser, hunter);
    firstPage = await hunter.api('/leads');
    await expectLeadRows(app.page, firstPage.items.map((i) => i.domain));
  });

  // Each test starts with no dialog open, whatever the one before left.
  beforeEach(async () => {
    if (!app) return;
    if (await app.page.$('dialog[open]')) {
      await app.page.keyboard.press('Escape');
      await app.page.waitForSelector('dialog', { state: 'detached' });
    }
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
  });

  test('opens by mouse with score, breakdown, signals and seller guidance; ESC closes it and focus returns to the row', async () => {
    const { page } = app;
    // A lead whose breakdown has risks (negative points), so both kinds of lines are shown.
    let lead = null;
    for (const item of firstPage.items) {
      const detail = await hunter.api(`/leads/${item.domain}`);
      if (detail.scoreBreakdown.some((l) => l.points < 0) && detail.scoreBreakdown.some((l) => l.points > 0)) {
        lead = detail;
        break;
      }
    }
    assert.ok(lead, 'the first page has a lead with positive and negative rules');
    const stats = await hunter.api('/stats');

    await page.click(`#leads-table tr[data-domain="${lead.domain}"] .c-company`);
    await page.waitForSelector('dialog[open] .detail-summary');
    assert.equal(await page.textContent('dialog[open] .dialog-title'), lead.domain);
    assert.ok((await focusInfo(page)).inDialog, 'focus moved into the dialog');

    // Score and breakdown in rule order, signs told apart.
    assert.equal(await page.textContent('dialog[open] .detail-score-num'), String(lead.score));
    const lines = await page.$$eval('dialog[open] .breakdown-line', (lis) => lis.map((li) => ({
      label: li.querySelector('.bd-label').textContent,
      kind: li.className.match(/bd-(plus|minus|zero)/)[1],
      color: getComputedStyle(li.querySelector('.bd-points')).color,
    })));
    assert.deepEqual(lines.map((l) => l.label), lead.scoreBreakdown.map((l) => l.label), 'breakdown in rule order');
    lead.scoreBreakdown.forEach((line, i) => {
      assert.equal(lines[i].kind, line.points > 0 ? 'plus' : line.points < 0 ? 'minus' : 'zero', line.label);
    });
    const plus = lines.find((l) => l.kind === 'plus');
    const minus = lines.find((l) => l.kind === 'minus');
    assert.notEqual(plus.color, minus.color, 'risks look different from gains');

    // Signals: MX hosts with preference, SPF includes, DKIM selectors, DMARC.
    const signals = await page.textContent('dialog[open] .signals');
    for (const mx of lead.signals.mx) assert.ok(signals.includes(mx.host), `MX ${mx.host}`);
    for (const inc of lead.signals.spfIncludes) assert.ok(signals.includes(inc), `SPF include ${inc}`);
    for (const sel of lead.signals.dkimSelectors) assert.ok(signals.includes(sel), `DKIM selector ${sel}`);
    if (lead.signals.dmarcPolicy) assert.ok(signals.includes(lead.signals.dmarcPolicy), 'DMARC policy');
    for (const risk of lead.scoreBreakdown.filter((l) => l.points < 0)) assert.ok(signals.includes(risk.label), `risk ${risk.label}`);

    // What it means for a seller: P label and action from the API, the segment's meaning.
    const guidance = await page.textContent('dialog[open] .guidance');
    const category = stats.categories.find((c) => c.category === lead.priorityCategory);
    assert.ok(guidance.includes(category.label), `P label ${category.label}`);
    assert.ok(guidance.includes(lead.sellerAction), `seller action ${lead.sellerAction}`);
    assert.ok(guidance.includes(SEGMENT_MEANING[lead.segment]), `meaning of ${lead.segment}`);

    // Referrals, Dynamics and audit.
    const body = await page.textContent('dialog[open] .dialog-body');
    for (const r of lead.referrals) assert.ok(body.includes(r.customerName), `referral ${r.customerName}`);
    assert.equal(await page.textContent('[data-testid="dynamics-status"]'), 'Synced');
    if (lead.dynamicsId) assert.ok(body.includes(lead.dynamicsId), 'the Dynamics record id');
    assert.equal(await page.$$eval('[data-testid="audit"] li', (lis) => lis.length), lead.audit.length);

    await screenshot(page, 'lead-detail');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    assert.deepEqual(await focusInfo(page), { inDialog: false, rowDomain: lead.domain, tag: 'TR' }, 'focus is back on the row');
    app.clean();
  });

  test('opens by keyboard (Tab to a row, Enter), keeps Tab inside, closes on the backdrop and returns focus', async () => {
    const { page } = app;
    await page.focus('#export-csv');
    // Tab like a keyboard user until a lead row has focus, then one row further.
    for (let i = 0; i < 12 && !(await focusInfo(page)).rowDomain; i += 1) await page.keyboard.press('Tab');
    assert.equal((await focusInfo(page)).rowDomain, firstPage.items[0].domain, 'Tab reaches the first row');
    await page.keyboard.press('Tab');
    const domain = firstPage.items[1].domain;
    assert.equal((await focusInfo(page)).rowDomain, domain);

    await page.keyboard.press('Enter');
    await page.waitForSelector('dialog[open] .detail-summary');
    assert.equal(await page.textContent('dialog[open] .dialog-title'), domain);
    assert.ok((await focusInfo(page)).inDialog, 'focus moved into the dialog');

    const focusables = await page.$$eval('dialog[open] button, dialog[open] a[href], dialog[open] [tabindex="0"]', (els) => els.length);
    for (let i = 0; i < focusables + 4; i += 1) {
      await page.keyboard.press('Tab');
      assert.ok((await focusInfo(page)).inDialog, `Tab ${i + 1} stays inside the dialog`);
    }
    for (let i = 0; i < 4; i += 1) {
      await page.keyboard.press('Shift+Tab');
      assert.ok((await focusInfo(page)).inDialog, `Shift+Tab ${i + 1} stays inside the dialog`);
    }

    // The drawer is on the right; the left of the window is backdrop.
    const box = await page.$eval('dialog[open]', (d) => d.getBoundingClientRect().left);
    assert.ok(box > 100, 'there is backdrop left of the drawer');
    await page.mouse.click(40, 500);
    await page.waitForSelector('dialog', { state: 'detached' });
    assert.equal((await focusInfo(page)).rowDomain, domain, 'focus is back on the row that opened it');
    app.clean();
  });

  test('Push now sends the lead to Dynamics: status ends synced and the audit trail grows', async () => {
    const { page } = app;
    const domain = firstPage.items[2].domain;
    const before = await hunter.api(`/dynamics/status/${domain}`);
    await page.click(`#leads-table tr[data-domain="${domain}"]`);
    await page.waitForSelector('dialog[open] #push-now');
    const auditBefore = await page.$$eval('[data-testid="audit"] li', (lis) => lis.length);
    assert.equal(auditBefore, before.audit.length);

    // By keyboard: the focus stays on Push now while the panel refreshes.
    await page.focus('#push-now');
    await page.keyboard.press('Enter');
    await waitForToast(page, /Push to Dynamics queued/);
    await waitForToast(page, /Pushed to Dynamics 365/, 20_000);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'push-now', 'focus kept on Push now');
    const after = await hunter.api(`/dynamics/status/${domain}`);
    assert.equal(after.syncStatus, 'synced');
    assert.ok(after.audit.length > before.audit.length, 'the API audit grew');
    assert.ok(Date.parse(after.lastSyncedAt) > Date.parse(before.lastSyncedAt), 'pushed again');
    assert.equal(await page.textContent('[data-testid="dynamics-status"]'), 'Synced');
    const shown = await page.$$eval('[data-testid="audit"] li', (lis) => lis.length);
    assert.ok(shown > auditBefore, `the audit trail grew: ${auditBefore} → ${shown}`);
    assert.equal(shown, after.audit.length, 'every audit entry is shown');
    const newest = await page.$eval('[data-testid="audit"] li time', (t) => t.getAttribute('datetime'));
    assert.ok(Date.parse(newest) > Date.parse(before.lastSyncedAt), 'the newest entry is the new push');
    assert.ok((await page.textContent('dialog[open] .dynamics')).includes(after.dynamicsId), 'record id shown');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    app.clean();
  });

  test('Rescan scans the domain again: a toast and the score', async () => {
    const { page } = app;
    const domain = firstPage.items[3].domain;
    await page.click(`#leads-table tr[data-domain="${domain}"]`);
    await page.waitForSelector('dialog[open] #rescan');
    await page.click('#rescan');
    const text = await waitForToast(page, /Rescan done/);
    const lead = await hunter.api(`/leads/${domain}`);
    await eventually(async () => assert.equal(await page.evaluate(() => document.activeElement.id), 'rescan', 'focus kept on Rescan'));
    assert.match(text, new RegExp(`score .*${lead.score}`), `the toast tells the score: ${text}`);
    await eventually(async () => assert.equal(await page.textContent('dialog[open] .detail-score-num'), String(lead.score)));
    const scanned = await page.$eval('dialog[open] .fact:has(dt:text("Scan")) time', (t) => t.getAttribute('datetime'));
    assert.equal(scanned, lead.scannedAt, 'the new scan time is shown');
    await page.keyboard.press('Escape');
    app.clean();
  });
});
