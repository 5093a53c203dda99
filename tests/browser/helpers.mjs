// Shared by the browser tests: start/stop hunter-local, the API as the tests see it, Debian's
// Chromium through playwright-core, screenshots, a tiny DNS stub and "eventually" assertions.
// Everything listens on and talks to 127.0.0.1 only.
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { copyFile, mkdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ARTIFACTS = join(ROOT, 'target', 'browser-artifacts');
export const TOKEN = 'browser-test-token-0123456789';
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
/** Screenshots also copied into docs/screenshots/ with UPDATE_SCREENSHOTS=1. */
const README_SHOTS = new Set(['leads', 'lead-detail']);

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * Retries `fn` (which asserts) until it passes or `timeout` ms are up; then throws its last
 * error, so a failure reads like the assertion that failed.
 */
export async function eventually(fn, { timeout = 10_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(interval);
  }
}

/**
 * Starts hunter-local on a free port. Resolves once it printed its URL and, unless
 * waitForLeads is false, once the first sync has produced scored leads and every queue is empty.
 */
export async function startHunter({ args = [], env = {}, token = TOKEN, waitForLeads = true, seed = 200 } = {}) {
  const bin = process.env.HUNTER_LOCAL_BIN || join(ROOT, 'target', 'debug', 'hunter-local');
  const childEnv = { ...process.env, ...env };
  if (token) childEnv.HUNTER_API_TOKEN = token;
  else delete childEnv.HUNTER_API_TOKEN;
  const fullArgs = ['--port', '0', '--sync-interval', '3600', ...args];
  if (!args.includes('--data-dir')) fullArgs.push('--in-memory');
  if (!args.includes('--referrals')) fullArgs.push('--seed', String(seed));
  const child = spawn(bin, fullArgs, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });

  const stderrTail = [];
  // hunter-local logs one JSON object per line on stderr: those with an `event` are all kept.
  const logEvents = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    stderrTail.push(line);
    if (stderrTail.length > 40) stderrTail.shift();
    if (!line.startsWith('{')) return;
    try {
      const entry = JSON.parse(line);
      if (entry && typeof entry.event === 'string') logEvents.push(entry);
    } catch {
      // not a log object
    }
  });
  const exited = new Promise((resolve) => { child.once('exit', (code, signal) => resolve({ code, signal })); });

  const firstLine = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hunter-local printed no URL within 30 s:\n${stderrTail.join('\n')}`)), 30_000);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (/Hunter is running at/.test(line)) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.once('error', (err) => { clearTimeout(timer); reject(new Error(`could not start ${bin}: ${err.message}`)); });
    exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`hunter-local exited (${code}) before printing its URL:\n${stderrTail.join('\n')}`)); });
  });
  const match = /(http:\/\/127\.0\.0\.1:\d+)\/(#token=(\S+))?/.exec(firstLine);
  if (!match) throw new Error(`unexpected first line from hunter-local: ${firstLine}`);
  const base = match[1];
  const printedToken = match[3] || null;

  const hunter = {
    base,
    token: token || printedToken,
    child,
    stderr: () => stderrTail.join('\n'),
    /** The first JSON log line with `event: name` (its fields), waiting up to `timeout` ms for it. */
    async logEvent(name, { timeout = 10_000 } = {}) {
      return eventually(() => {
        const entry = logEvents.find((e) => e.event === name);
        if (!entry) throw new Error(`hunter-local logged no ${name} event:\n${stderrTail.join('\n')}`);
        return entry;
      }, { timeout });
    },
    /** GET/POST on the API with the bearer token; throws on an error status. */
    async api(path, { method = 'GET', body, bearer } = {}) {
      const headers = { Authorization: `Bearer ${bearer || hunter.token}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const response = await fetch(`${base}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await response.text();
      if (!response.ok) {
        const err = new Error(`${method} ${path} → ${response.status}: ${text}`);
        err.status = response.status;
        throw err;
      }
      return text && /json/.test(response.headers.get('content-type') || '') ? JSON.parse(text) : text;
    },
    /** Waits until a sync produced leads and nothing is left in any queue. */
    async settled({ timeout = 30_000 } = {}) {
      await eventually(async () => {
        const [stats, health] = await Promise.all([hunter.api('/stats'), hunter.api('/health')]);
        if (!(stats.leads > 0)) throw new Error(`no leads yet: ${JSON.stringify(stats.segments)}`);
        const q = health.queues || {};
        const busy = ['referrals', 'dynamicsPush'].some((name) => (q[name]?.visible || 0) + (q[name]?.inFlight || 0) > 0);
        if (busy) throw new Error(`queues busy: ${JSON.stringify(q)}`);
        if (!health.lastSync || health.lastSync.status === 'running') throw new Error('sync still running');
        if ((stats.syncStatuses?.pending || 0) > 0) throw new Error(`pushes pending: ${stats.syncStatuses.pending}`);
      }, { timeout, interval: 150 });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
  if (waitForLeads) {
    try {
      await hunter.settled();
    } catch (err) {
      await hunter.stop();
      throw new Error(`hunter-local produced no settled leads: ${err.message}\n${stderrTail.join('\n')}`);
    }
  }
  return hunter;
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--disable-dev-shm-usage'] });
}

/**
 * A page of the UI signed in with the token of `hunter` (through the #token= link), at `hash`.
 * Collects page errors, CSP violations and native dialogs: `clean()` asserts there were none.
 */
export async function openApp(browser, hunter, { hash = '#/leads', viewport = { width: 1280, height: 800 }, token, signIn = true, permissions } = {}) {
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'UTC', acceptDownloads: true, permissions });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems = [];
  const dialogs = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy|Refused to/i.test(text)) problems.push(`CSP: ${text}`);
    else if (msg.type() === 'error' && !/Failed to load resource/.test(text)) problems.push(`console error: ${text}`);
  });
  page.on('dialog', async (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
  // The UI loads nothing from the internet, and the tests talk to 127.0.0.1 only.
  await context.route((url) => url.protocol.startsWith('http') && url.hostname !== '127.0.0.1', (route) => {
    problems.push(`request outside 127.0.0.1: ${route.request().url()}`);
    return route.abort();
  });
  if (signIn) {
    await page.goto(`${hunter.base}/#token=${encodeURIComponent(token || hunter.token)}`);
    await page.waitForSelector('#app:not([hidden])');
    if (hash && hash !== '#/leads') await page.evaluate((h) => { location.hash = h; }, hash);
  }
  return {
    context,
    page,
    problems,
    dialogs,
    clean() {
      if (problems.length || dialogs.length) {
        throw new Error(`the page reported problems:\n${[...problems, ...dialogs.map((d) => `dialog ${d}`)].join('\n')}`);
      }
    },
    close: () => context.close(),
  };
}

export async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.png`);
  // Let the toasts and transitions settle visually: wait for fonts, not for time.
  await page.evaluate(() => document.fonts.ready);
  await page.screenshot({ path: file });
  if (process.env.UPDATE_SCREENSHOTS === '1' && README_SHOTS.has(name)) {
    const size = page.viewportSize();
    if (size && size.width === 1280 && size.height === 800) {
      await mkdir(join(ROOT, 'docs', 'screenshots'), { recursive: true });
      await copyFile(file, join(ROOT, 'docs', 'screenshots', `${name}.png`));
    }
  }
  return file;
}

/** The domains of the leads table, in order. */
export function tableDomains(page) {
  return page.$$eval('#leads-table tbody tr[data-domain]', (rows) => rows.map((r) => r.dataset.domain));
}

/** Waits until the leads table shows exactly `expected` domains, in order. */
export async function expectLeadRows(page, expected, message) {
  await eventually(async () => {
    const state = await page.$eval('.view-leads', (el) => el.dataset.state);
    const actual = state === 'empty' ? [] : await tableDomains(page);
    if (state === 'loading') throw new Error('still loading');
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      const err = new Error(`${message || 'lead rows'}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
      throw err;
    }
  });
}

/**
 * A DNS server on 127.0.0.1 that answers NXDOMAIN to every question (UDP), so a run with
 * --referrals never asks the system's resolvers.
 */
export async function startNxdomainDns() {
  const socket = createSocket('udp4');
  let queries = 0;
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    queries += 1;
    // Header: same id, QR=1, opcode from the query, RD copied, RA=1, RCODE=3; 1 question, no answers.
    const qd = msg.readUInt16BE(4);
    let end = 12;
    for (let i = 0; i < qd; i += 1) {
      while (end < msg.length && msg[end] !== 0) end += msg[end] + 1;
      end += 5; // the zero label, QTYPE, QCLASS
    }
    const answer = Buffer.alloc(end);
    msg.copy(answer, 0, 0, end);
    answer[2] = 0x80 | (msg[2] & 0x79);
    answer[3] = 0x80 | 0x03;
    answer.writeUInt16BE(qd, 4);
    answer.writeUInt16BE(0, 6);
    answer.writeUInt16BE(0, 8);
    answer.writeUInt16BE(0, 10);
    socket.send(answer, rinfo.port, rinfo.address);
  });
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    queries: () => queries,
    close: () => new Promise((resolve) => socket.close(resolve)),
  };
}

/** Text of the newest toast matching `pattern`. */
export async function waitForToast(page, pattern, timeout = 10_000) {
  await eventually(async () => {
    const texts = await page.$$eval('#toasts .toast', (els) => els.map((e) => e.textContent));
    if (!texts.some((t) => pattern.test(t))) throw new Error(`no toast matching ${pattern}; toasts: ${JSON.stringify(texts)}`);
  }, { timeout });
  const texts = await page.$$eval('#toasts .toast', (els) => els.map((e) => e.textContent));
  return texts.filter((t) => pattern.test(t)).pop();
}
