// What sellers did in Dynamics 365, pulled back by Hunter: the leads table's CRM status and Owner
// columns and the detail's "In Dynamics" group. First with crafted leads (the lead API answered
// through page.route: every status, an opportunity won or lost, never pulled, markup in
// an owner's name), then end to end: a seller qualifies a lead in the Dataverse simulator and
// takes it, Sync now pulls that back, and the row and the detail say so.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  startHunter, launchBrowser, openApp, screenshot, eventually, expectLeadRows, ARTIFACTS,
} from './helpers.mjs';

const HOSTILE_OWNER = '<img src=x onerror=alert(1)>';
const AVERY_ID = '00000000-0000-0000-0000-00000000a001';
const NAMELESS_OWNER_ID = '6f1b7c52-8f0e-4f3a-9b1d-2a5c3e7d9b01';
const LONG_OWNER = 'Maximiliana Featherstonehaugh-Wolfeschlegelsteinhausen';
const LEADS_API = (url) => url.pathname === '/api/v1/leads';
const LEAD_API = (url) => /^\/api\/v1\/leads\/[^/]+$/.test(url.pathname) && url.pathname !== '/api/v1/leads/export.csv';

const ago = (minutes) => new Date(Date.now() - minutes * 60_000).toISOString();
const NOT_PULLED = {
  crmStatus: null, crmStatusReason: null, crmOwner: null, crmOwnerId: null,
  crmOpportunityId: null, crmOpportunityStatus: null, crmUpdatedAt: null,
};
const pulled = (fields) => ({ ...NOT_PULLED, crmUpdatedAt: ago(12), ...fields });

/**
 * The crafted leads, given to the first rows of the real first page in this order, and what
 * their cells must show: the status pill (text and tone), the reason, the opportunity, the owner.
 */
const CASES = [
  {
    name: 'open',
    crm: pulled({ crmStatus: 'Open', crmStatusReason: 'Contacted', crmOwner: 'Avery Seller', crmOwnerId: AVERY_ID }),
    row: { status: 'Open', tone: 'crm-open', reason: 'Contacted', opportunity: null, owner: 'Avery Seller' },
  },
  {
    name: 'qualified, opportunity won',
    crm: pulled({
      crmStatus: 'Qualified', crmStatusReason: 'Qualified', crmOwner: 'Blake Closer', crmOwnerId: 'b1a2c3d4-0000-4000-8000-000000000002',
      crmOpportunityId: '0c0ffee0-0000-4000-8000-0000000000a1', crmOpportunityStatus: 'Won', crmUpdatedAt: ago(90),
    }),
    row: { status: 'Qualified', tone: 'crm-qualified', reason: null, opportunity: 'Won', opportunityTone: 'opp-won', owner: 'Blake Closer' },
  },
  {
    name: 'disqualified',
    crm: pulled({ crmStatus: 'Disqualified', crmStatusReason: 'Cannot Contact', crmOwner: 'Casey Rep', crmOwnerId: 'b1a2c3d4-0000-4000-8000-000000000003', crmUpdatedAt: ago(3 * 24 * 60) }),
    row: { status: 'Disqualified', tone: 'crm-disqualified', reason: 'Cannot Contact', opportunity: null, owner: 'Casey Rep' },
  },
  {
    name: 'qualified, opportunity lost',
    crm: pulled({
      crmStatus: 'Qualified', crmStatusReason: 'Qualified', crmOwner: 'Blake Closer', crmOwnerId: 'b1a2c3d4-0000-4000-8000-000000000002',
      crmOpportunityId: '0c0ffee0-0000-4000-8000-0000000000a2', crmOpportunityStatus: 'Lost',
    }),
    row: { status: 'Qualified', tone: 'crm-qualified', reason: null, opportunity: 'Lost', opportunityTone: 'opp-lost', owner: 'Blake Closer' },
  },
  {
    name: 'never pulled',
    crm: NOT_PULLED,
    row: { status: '—', tone: null, reason: null, opportunity: null, owner: '—' },
  },
  {
    name: 'markup in the owner name',
    crm: pulled({ crmStatus: 'Open', crmStatusReason: 'New', crmOwner: HOSTILE_OWNER, crmOwnerId: 'b1a2c3d4-0000-4000-8000-000000000666' }),
    row: { status: 'Open', tone: 'crm-open', reason: 'New', opportunity: null, owner: HOSTILE_OWNER },
  },
  {
    name: 'unknown status code, owner without a name',
    crm: pulled({ crmStatus: 'Unknown (7)', crmStatusReason: null, crmOwner: NAMELESS_OWNER_ID, crmOwnerId: NAMELESS_OWNER_ID }),
    row: { status: 'Unknown (7)', tone: 'crm-other', reason: null, opportunity: null, owner: NAMELESS_OWNER_ID },
  },
  {
    name: 'qualified, opportunity open, a long owner name',
    crm: pulled({
      crmStatus: 'Qualified', crmStatusReason: 'Qualified', crmOwner: LONG_OWNER, crmOwnerId: 'b1a2c3d4-0000-4000-8000-000000000009',
      crmOpportunityId: '0c0ffee0-0000-4000-8000-0000000000a3', crmOpportunityStatus: 'Open',
    }),
    row: { status: 'Qualified', tone: 'crm-qualified', reason: null, opportunity: 'Open', opportunityTone: 'opp-open', owner: LONG_OWNER },
  },
];

/** What a lead row's CRM cells show. */
function crmCells(page, domain) {
  return page.$eval(`#leads-table tr[data-domain="${domain}"]`, (tr) => {
    const status = tr.querySelector('[data-testid="crm-status"]');
    const owner = tr.querySelector('[data-testid="crm-owner"]');
    const pill = status.querySelector('.pill:not(.opp-pill)');
    const opportunity = status.querySelector('.opp-pill');
    return {
      status: pill ? pill.textContent : status.textContent,
      tone: pill ? [...pill.classList].find((c) => /^crm-/.test(c) && c !== 'crm-pill') ?? null : null,
      statusTitle: (pill || status.firstElementChild)?.getAttribute('title') ?? null,
      reason: status.querySelector('.crm-reason')?.textContent ?? null,
      opportunity: opportunity ? opportunity.textContent : null,
      opportunityLabel: opportunity?.closest('.crm-opp')?.querySelector('.crm-opp-label')?.textContent ?? null,
      opportunityTone: opportunity ? [...opportunity.classList].find((c) => /^opp-/.test(c) && c !== 'opp-pill') : null,
      owner: owner.textContent,
      ownerTitle: owner.firstElementChild?.getAttribute('title') ?? null,
      labels: [status.dataset.label, owner.dataset.label],
    };
  });
}

/** The "In Dynamics" group of the open lead detail. */
function crmDetail(page) {
  return page.evaluate(() => {
    const text = (id) => document.querySelector(`dialog[open] [data-testid="${id}"]`)?.textContent ?? null;
    const group = document.querySelector('dialog[open] .crm-group');
    const changed = [...group.querySelectorAll('.fact')].find((f) => f.querySelector('dt').textContent === 'Changed in Dynamics');
    return {
      heading: group.querySelector('h4')?.textContent,
      none: text('crm-detail-none'),
      status: text('crm-detail-status'),
      owner: text('crm-detail-owner'),
      opportunity: text('crm-detail-opportunity'),
      changedAt: changed?.querySelector('time')?.getAttribute('datetime') ?? null,
      labels: [...group.querySelectorAll('dt')].map((dt) => dt.textContent),
    };
  });
}

/** Answers the lead list and lead detail with the crafted CRM fields (others: never pulled). */
async function routeCrafted(page, assigned) {
  const crmOf = (domain) => assigned.get(domain)?.crm ?? NOT_PULLED;
  await page.route(LEADS_API, async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    await route.fulfill({ response, json: { ...json, items: json.items.map((lead) => ({ ...lead, ...crmOf(lead.domain) })) } });
  });
  await page.route(LEAD_API, async (route) => {
    const response = await route.fetch();
    if (!response.ok()) return route.fulfill({ response });
    const json = await response.json();
    return route.fulfill({ response, json: { ...json, ...crmOf(json.domain) } });
  });
}

/** Where screenshot() writes `name`, for a screenshot of one element. */
async function screenshotPath(name) {
  await mkdir(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, `${name}.png`);
}

/** No horizontal overflow: neither the page nor the leads table is wider than the window. */
async function fitsWidth(page) {
  return page.evaluate(() => {
    const table = document.querySelector('#leads-table');
    const wrap = table.parentElement;
    return {
      page: document.documentElement.scrollWidth,
      window: window.innerWidth,
      table: Math.ceil(table.getBoundingClientRect().width),
      wrap: Math.ceil(wrap.getBoundingClientRect().width),
      columns: [...table.querySelectorAll('thead th')].filter((th) => th.getClientRects().length).map((th) => th.textContent),
    };
  });
}

describe('CRM status and owner, crafted leads', { timeout: 120_000 }, () => {
  let hunter;
  let browser;
  let app;
  let first;
  let assigned;

  before(async () => {
    [hunter, browser] = await Promise.all([startHunter(), launchBrowser()]);
    first = await hunter.api('/leads');
    assert.ok(first.items.length >= CASES.length, 'the seed has a lead for every case on the first page');
    assigned = new Map(first.items.slice(0, CASES.length).map((lead, i) => [lead.domain, CASES[i]]));
    app = await openApp(browser, hunter, { signIn: false });
    await routeCrafted(app.page, assigned);
    await app.page.goto(`${hunter.base}/#token=${encodeURIComponent(hunter.token)}`);
    await app.page.waitForSelector('#app:not([hidden])');
    await expectLeadRows(app.page, first.items.map((l) => l.domain));
  });

  beforeEach(async () => {
    if (app && await app.page.$('dialog[open]')) {
      await app.page.keyboard.press('Escape');
      await app.page.waitForSelector('dialog', { state: 'detached' });
    }
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
  });

  test('the table has CRM status and Owner columns showing each case, markup as text', async () => {
    const { page } = app;
    const headers = await page.$$eval('#leads-table thead th', (ths) => ths.map((th) => th.textContent));
    assert.deepEqual(headers.slice(-4), ['Dynamics', 'CRM status', 'Owner', 'Updated'], JSON.stringify(headers));

    for (const [domain, c] of assigned) {
      const shown = await crmCells(page, domain);
      const expected = c.row;
      assert.equal(shown.status, expected.status, `${c.name}: status`);
      assert.equal(shown.tone, expected.tone, `${c.name}: tone`);
      assert.equal(shown.reason, expected.reason, `${c.name}: reason`);
      assert.equal(shown.opportunity, expected.opportunity, `${c.name}: opportunity`);
      if (expected.opportunity) {
        assert.equal(shown.opportunityTone, expected.opportunityTone, `${c.name}: opportunity tone`);
        assert.equal(shown.opportunityLabel, 'Opportunity', `${c.name}: the opportunity's status is labelled as such`);
      }
      assert.equal(shown.owner, expected.owner, `${c.name}: owner`);
      assert.deepEqual(shown.labels, ['CRM status', 'Owner'], `${c.name}: data-label for the phone layout`);
    }
    // Titles explain: the reason, "not pulled yet", the owner's id.
    const byName = (name) => [...assigned].find(([, c]) => c.name === name)[0];
    assert.equal((await crmCells(page, byName('disqualified'))).statusTitle, 'In Dynamics: Disqualified (Cannot Contact)');
    assert.match((await crmCells(page, byName('never pulled'))).statusTitle, /Not pulled from Dynamics yet/);
    assert.match((await crmCells(page, byName('open'))).ownerTitle, new RegExp(`Avery Seller \\(${AVERY_ID}\\)`));
    assert.match((await crmCells(page, byName('unknown status code, owner without a name'))).ownerTitle, /no name given/);

    // Leads beyond the crafted ones were never pulled: a dash, not an empty cell.
    const rest = first.items.slice(CASES.length);
    if (rest.length) assert.deepEqual(await crmCells(page, rest[0].domain).then((s) => [s.status, s.owner]), ['—', '—']);

    // The owner's name is text: no element made from it, and nothing ran.
    assert.equal(await page.$$eval('#leads-table img, #leads-table script', (els) => els.length), 0, 'no element made from data');
    await screenshot(page, 'crm-leads');
    app.clean();
  });

  test('readable at 1280 px and narrower: every column fits and the crafted rows stay compact', async () => {
    const { page } = app;
    const at1280 = await fitsWidth(page);
    assert.ok(at1280.page <= 1280 && at1280.table <= at1280.wrap, `fits at 1280 px: ${JSON.stringify(at1280)}`);
    assert.ok(at1280.columns.includes('CRM status') && at1280.columns.includes('Owner'), `the new columns show at 1280 px: ${at1280.columns}`);
    // Header labels stay on one line; a row holds two lines of text at most (a long owner wraps).
    const heights = await page.evaluate(() => ({
      headers: [...document.querySelectorAll('#leads-table thead th')].map((th) => th.getBoundingClientRect().height),
      rows: [...document.querySelectorAll('#leads-table tbody tr')].slice(0, 9).map((tr) => Math.round(tr.getBoundingClientRect().height)),
    }));
    assert.ok(Math.max(...heights.headers) <= 40, `headers on one line: ${heights.headers}`);
    assert.ok(Math.max(...heights.rows) <= 64, `rows stay compact: ${heights.rows}`);

    for (const width of [1440, 1180, 1060, 900, 800]) {
      await page.setViewportSize({ width, height: 800 });
      const fit = await fitsWidth(page);
      assert.ok(fit.page <= width && fit.table <= fit.wrap, `fits at ${width} px: ${JSON.stringify(fit)}`);
      assert.ok(fit.columns.includes('CRM status') && fit.columns.includes('Owner'), `the new columns show at ${width} px: ${fit.columns}`);
      if (width === 1060) await screenshot(page, 'crm-leads-1060');
    }
    await page.setViewportSize({ width: 1280, height: 800 });
    app.clean();
  });

  test('the detail has an "In Dynamics" group: status and reason, owner, opportunity, when it changed', async () => {
    const { page } = app;
    const open = async (name) => {
      const [domain, c] = [...assigned].find(([, x]) => x.name === name);
      if (await page.$('dialog[open]')) {
        await page.keyboard.press('Escape');
        await page.waitForSelector('dialog', { state: 'detached' });
      }
      await page.click(`#leads-table tr[data-domain="${domain}"] .c-domain`);
      await page.waitForSelector('dialog[open] .crm-group');
      return c;
    };

    let c = await open('qualified, opportunity won');
    let shown = await crmDetail(page);
    assert.equal(shown.heading, 'In Dynamics');
    assert.equal(shown.none, null);
    assert.equal(shown.status, 'Qualified', 'a reason that repeats the status is left out');
    assert.equal(shown.owner, 'Blake Closer');
    assert.equal(shown.opportunity, 'Won');
    assert.equal(shown.changedAt, c.crm.crmUpdatedAt, 'the change time of Dynamics, as a <time>');
    assert.deepEqual(shown.labels.slice(-4), ['CRM status', 'Owner', 'Opportunity', 'Changed in Dynamics']);
    assert.match(await page.$eval('dialog[open] .crm-group .fact:last-child time', (t) => t.textContent), /hr|hour/, 'relative time');
    await page.$eval('dialog[open] .crm-group', (el) => el.scrollIntoView({ block: 'center' }));
    await screenshot(page, 'crm-lead-detail');

    c = await open('disqualified');
    shown = await crmDetail(page);
    assert.equal(shown.status, 'DisqualifiedCannot Contact', 'status pill, then the reason');
    assert.equal(await page.textContent('dialog[open] [data-testid="crm-detail-status"] .crm-reason'), 'Cannot Contact');
    assert.equal(shown.opportunity, 'none');
    assert.equal(shown.changedAt, c.crm.crmUpdatedAt);

    await open('never pulled');
    shown = await crmDetail(page);
    assert.equal(shown.none, 'Not pulled from Dynamics yet');
    assert.equal(shown.status, null);
    assert.equal(shown.owner, null);
    await page.locator('dialog[open] [data-testid="dynamics-panel"]').screenshot({ path: await screenshotPath('crm-lead-detail-none') });

    await open('markup in the owner name');
    shown = await crmDetail(page);
    assert.equal(shown.owner, HOSTILE_OWNER);
    assert.equal(await page.$$eval('dialog img, dialog script', (els) => els.length), 0, 'no element made from data');

    await open('unknown status code, owner without a name');
    shown = await crmDetail(page);
    assert.equal(shown.status, 'Unknown (7)');
    assert.equal(shown.owner, NAMELESS_OWNER_ID);

    // Push now re-renders the Dynamics panel from the push status: the pulled fields stay.
    c = await open('qualified, opportunity lost');
    await page.click('#push-now');
    await eventually(async () => assert.equal(await page.$eval('#push-now', (b) => b.classList.contains('is-busy')), false), { timeout: 20_000 });
    shown = await crmDetail(page);
    assert.equal(shown.status, 'Qualified');
    assert.equal(shown.opportunity, 'Lost');
    assert.equal(shown.owner, 'Blake Closer');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    assert.deepEqual(app.dialogs, [], 'nothing ran');
    app.clean();
  });

  test('narrow (390×844): the CRM status and owner are on each card, nothing overflows', async () => {
    const narrow = await openApp(browser, hunter, { viewport: { width: 390, height: 844 }, signIn: false });
    try {
      const { page } = narrow;
      await routeCrafted(page, assigned);
      await page.goto(`${hunter.base}/#token=${encodeURIComponent(hunter.token)}`);
      await page.waitForSelector('#app:not([hidden])');
      await expectLeadRows(page, first.items.map((l) => l.domain));
      const layout = await page.evaluate((domains) => ({
        scrollWidth: document.documentElement.scrollWidth,
        cards: domains.map((domain) => {
          const tr = document.querySelector(`#leads-table tr[data-domain="${domain}"]`);
          const box = (sel) => tr.querySelector(sel).getBoundingClientRect();
          const status = box('[data-testid="crm-status"]');
          const owner = box('[data-testid="crm-owner"]');
          return {
            domain,
            status: status.width > 0 && status.left >= 0 && status.right <= 390,
            owner: owner.width > 0 && owner.left >= 0 && owner.right <= 390,
            ownerText: tr.querySelector('[data-testid="crm-owner"]').textContent,
            ownerLabel: getComputedStyle(tr.querySelector('[data-testid="crm-owner"]'), '::before').content,
          };
        }),
      }), [...assigned.keys()]);
      assert.ok(layout.scrollWidth <= 390, `no horizontal overflow (${layout.scrollWidth} px)`);
      for (const card of layout.cards) {
        const c = assigned.get(card.domain);
        assert.ok(card.status && card.owner, `${c.name}: status and owner on screen: ${JSON.stringify(card)}`);
        assert.equal(card.ownerText, c.row.owner, `${c.name}: owner`);
        assert.match(card.ownerLabel, /Owner/, `${c.name}: the owner is labelled`);
      }
      const overflowing = await page.evaluate(() => [...document.querySelectorAll('#app *')]
        .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > 391 && !el.closest('.nav'))
        .map((el) => el.className || el.tagName).slice(0, 5));
      assert.deepEqual(overflowing, [], 'nothing sticks out to the right');
      await page.$eval('#leads-table', (el) => el.scrollIntoView({ block: 'start' }));
      await screenshot(page, 'crm-leads-narrow');
      await page.$eval(`#leads-table tr[data-domain="${[...assigned.keys()][5]}"]`, (el) => el.scrollIntoView({ block: 'start' }));
      await screenshot(page, 'crm-leads-narrow-2');

      const won = [...assigned].find(([, c]) => c.name === 'qualified, opportunity won')[0];
      await page.click(`#leads-table tr[data-domain="${won}"] .c-domain`);
      await page.waitForSelector('dialog[open] .crm-group');
      await page.$eval('dialog[open] .crm-group', (el) => el.scrollIntoView({ block: 'center' }));
      const group = await page.$eval('dialog[open] .crm-group', (el) => el.getBoundingClientRect().toJSON());
      assert.ok(group.left >= 0 && group.right <= 390, `the group fits: ${JSON.stringify(group)}`);
      assert.equal((await crmDetail(page)).owner, 'Blake Closer');
      await screenshot(page, 'crm-lead-detail-narrow');
      narrow.clean();
    } finally {
      await narrow.close();
    }
  });
});

describe('CRM pulled back from the Dataverse simulator (end to end)', { timeout: 180_000 }, () => {
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

  test('a seller qualifies a lead and takes it in Dynamics: after Sync now the row and the detail say so', async () => {
    const { page } = app;
    const { url } = await hunter.logEvent('dataverse_simulator_started');
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/?$/, 'the simulator listens on 127.0.0.1');
    const dataverse = url.replace(/\/$/, '');

    const first = await hunter.api('/leads');
    const lead = first.items.find((l) => l.syncStatus === 'synced' && l.dynamicsId);
    assert.ok(lead, `a lead of the first page was pushed to Dynamics: ${JSON.stringify(first.items.map((l) => l.syncStatus))}`);
    await expectLeadRows(page, first.items.map((l) => l.domain));
    const row = `#leads-table tr[data-domain="${lead.domain}"]`;
    const earlier = await crmCells(page, lead.domain);
    assert.notEqual(earlier.status, 'Qualified', `not qualified before the seller did it: ${JSON.stringify(earlier)}`);

    // The seller qualifies the lead and takes it (Avery Seller is a user of the simulator).
    const response = await fetch(`${dataverse}/_sim/records/leads/${encodeURIComponent(lead.domain)}`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ statecode: 1, statuscode: 3, 'ownerid@odata.bind': `/systemusers(${AVERY_ID})` }),
    });
    assert.ok(response.ok, `the simulator took the seller's edit: ${response.status} ${await response.text()}`);

    await page.click('#sync-now');
    await eventually(async () => {
      const shown = await crmCells(page, lead.domain);
      assert.equal(shown.status, 'Qualified', `row status: ${JSON.stringify(shown)}`);
      assert.equal(shown.tone, 'crm-qualified');
      assert.equal(shown.owner, 'Avery Seller', `row owner: ${JSON.stringify(shown)}`);
    }, { timeout: 20_000, interval: 250 });

    // The API says the same.
    const detail = await hunter.api(`/leads/${encodeURIComponent(lead.domain)}`);
    assert.equal(detail.crmStatus, 'Qualified');
    assert.equal(detail.crmStatusReason, 'Qualified');
    assert.equal(detail.crmOwner, 'Avery Seller');
    assert.equal(String(detail.crmOwnerId).toLowerCase(), AVERY_ID);
    assert.ok(!Number.isNaN(Date.parse(detail.crmUpdatedAt)), `crmUpdatedAt is a time: ${detail.crmUpdatedAt}`);
    await page.$eval(row, (tr) => tr.scrollIntoView({ block: 'center' }));
    await screenshot(page, 'crm-e2e-leads');

    // And the detail.
    await page.click(`${row} .c-domain`);
    await page.waitForSelector('dialog[open] [data-testid="crm-detail-status"]');
    const shown = await crmDetail(page);
    assert.equal(shown.none, null);
    assert.match(shown.status, /^Qualified/);
    assert.equal(shown.owner, 'Avery Seller');
    assert.equal(shown.opportunity, detail.crmOpportunityStatus || (detail.crmOpportunityId ? 'status not known' : 'none'));
    assert.equal(shown.changedAt, detail.crmUpdatedAt);
    await page.$eval('dialog[open] .crm-group', (el) => el.scrollIntoView({ block: 'center' }));
    await screenshot(page, 'crm-e2e-detail');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    app.clean();
  });
});
