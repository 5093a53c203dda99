// Referral names and company names are untrusted text: served through --referrals with markup in
// them, they must show as literal text, run nothing and create no elements.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  ROOT, startHunter, startNxdomainDns, launchBrowser, openApp, eventually,
} from './helpers.mjs';

const IMG_NAME = '<img src=x onerror=alert(1)>';
const SCRIPT_COMPANY = 'Contoso <script>alert(2)</script> Ltd';
const IMG_COMPANY = '<img src=x onerror=alert(3)>';

async function fixture() {
  const base = JSON.parse(await readFile(join(ROOT, 'shared/domain/tests/fixtures/referrals/realistic.json'), 'utf8'));
  const referral = (name, company, domain, person) => ({
    ...base,
    id: randomUUID(),
    engagementId: randomUUID(),
    name,
    customerProfile: {
      ...base.customerProfile,
      name: company,
      team: [{ ...base.customerProfile.team[0], email: `${person}@${domain}` }],
      ids: [{ profileType: 'External', id: domain }],
    },
  });
  return [
    referral(IMG_NAME, SCRIPT_COMPANY, 'contoso.com', 'ada'),
    referral('Quotes "and" <b>tags</b> & more', IMG_COMPANY, 'xss-example.com', 'amy'),
  ];
}

describe('untrusted text from Partner Center', { timeout: 120_000 }, () => {
  let dir;
  let dns;
  let hunter;
  let browser;
  let app;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hunter-ui-'));
    const file = join(dir, 'referrals.json');
    await writeFile(file, JSON.stringify(await fixture(), null, 2));
    // With --referrals hunter-local would ask the system's resolvers: give it a local stub.
    dns = await startNxdomainDns();
    [hunter, browser] = await Promise.all([
      startHunter({ args: ['--referrals', file, '--dns', dns.address] }),
      launchBrowser(),
    ]);
    app = await openApp(browser, hunter);
  });

  after(async () => {
    await app?.close();
    await browser?.close();
    await hunter?.stop();
    await dns?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('markup in company names shows as text in the leads table and the lead detail', async () => {
    const { page } = app;
    await page.waitForSelector('#leads-table tr[data-domain="contoso.com"]');
    await page.waitForSelector('#leads-table tr[data-domain="xss-example.com"]');
    assert.equal(await page.textContent('tr[data-domain="contoso.com"] .c-company'), SCRIPT_COMPANY);
    assert.equal(await page.textContent('tr[data-domain="xss-example.com"] .c-company'), IMG_COMPANY);
    assert.equal(await page.$$eval('#leads-table img, #leads-table script, #leads-table b', (els) => els.length), 0, 'no element made from data');
    assert.equal(await page.$$eval('script', (els) => els.length), 1, 'only the app module script');

    await page.click('tr[data-domain="contoso.com"]');
    await page.waitForSelector('dialog[open] .detail-summary');
    assert.equal(await page.textContent('dialog[open] .dialog-subtitle'), SCRIPT_COMPANY);
    assert.ok((await page.textContent('dialog[open] .ref-list')).includes(SCRIPT_COMPANY));
    assert.equal(await page.$$eval('dialog img, dialog script', (els) => els.length), 0);
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    app.clean();
  });

  test('markup in referral names shows as text in the referrals table and the raw payload', async () => {
    const { page } = app;
    await page.evaluate(() => { location.hash = '#/referrals'; });
    await page.waitForSelector('.view-referrals[data-state="ready"]');
    const cells = await page.$$eval('#referrals-table tbody tr', (trs) => trs.map((tr) => ({
      company: tr.querySelector('.cell-title').textContent,
      name: tr.querySelector('.cell-sub').textContent,
    })));
    assert.ok(cells.some((c) => c.name === IMG_NAME && c.company === SCRIPT_COMPANY), JSON.stringify(cells));
    assert.ok(cells.some((c) => c.company === IMG_COMPANY && c.name === 'Quotes "and" <b>tags</b> & more'), JSON.stringify(cells));
    assert.equal(await page.$$eval('#referrals-table img, #referrals-table script, #referrals-table b', (els) => els.length), 0);

    await page.click(`#referrals-table tr:has(.cell-sub:text-is("${IMG_NAME}"))`);
    await page.waitForSelector('dialog[open] pre.raw-json');
    assert.equal(await page.textContent('dialog[open] .dialog-title'), SCRIPT_COMPANY);
    assert.equal(await page.textContent('dialog[open] .dialog-subtitle'), IMG_NAME);
    assert.ok((await page.textContent('dialog[open] pre.raw-json')).includes(IMG_NAME));
    assert.equal(await page.$$eval('dialog img, dialog script', (els) => els.length), 0);
    await page.keyboard.press('Escape');

    // Nothing ran: no alert() dialog at any point (collected since the page opened).
    await eventually(async () => assert.deepEqual(app.dialogs, []));
    assert.ok(dns.queries() > 0, 'the scans asked the local DNS stub');
    app.clean();
  });
});
