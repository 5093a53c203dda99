// Bootstrap: /config.json → sign-in → the header and the hash router.
import { h, replace } from './dom.js';
import { createApi } from './api.js';
import { initAuth } from './auth.js';
import { icon, setCategories, toast } from './components.js';
import { refreshRelativeTimes } from './format.js';
import { startHeader } from './header.js';
import * as leadsView from './views/leads.js';
import * as referralsView from './views/referrals.js';
import * as historyView from './views/history.js';
import * as scanView from './views/scan.js';

const VIEWS = {
  leads: { module: leadsView, title: 'Leads' },
  referrals: { module: referralsView, title: 'Referrals' },
  history: { module: historyView, title: 'Sync history' },
  scan: { module: scanView, title: 'Scan a domain' },
};

const $ = (id) => document.getElementById(id);

/** "#/leads?segment=Migration" → {name: 'leads', params: URLSearchParams} */
export function parseHash(hash = location.hash) {
  const text = hash.replace(/^#\/?/, '');
  const [path, query = ''] = text.split('?');
  const name = path.split('/')[0] || 'leads';
  return { name, params: new URLSearchParams(query) };
}

/** Replaces the address bar's hash without a hashchange (no re-render). */
export function setHash(name, params) {
  const q = params && params.toString();
  const hash = `#/${name}${q ? `?${q}` : ''}`;
  if (location.hash !== hash) history.replaceState(null, '', hash);
}

let signedOut = false;
let headerHandle = null;

function showSignIn(auth, reason) {
  if (signedOut) return;
  signedOut = true;
  headerHandle?.stop();
  if (reason === 'expired') auth.forget?.();
  document.querySelectorAll('dialog').forEach((d) => d.remove());
  document.documentElement.classList.remove('modal-open');
  // Nothing of the session stays on the page: no stale tables behind the sign-in screen.
  $('app').hidden = true;
  replace($('main'));
  replace($('last-sync'));
  replace($('queues'));
  replace($('webhooks'));
  $('boot').hidden = true;
  const box = $('signin');
  const children = [
    h('div', { class: 'signin-logo' }, h('img', { src: '/favicon.svg', alt: '', width: '40', height: '40' })),
  ];
  if (auth.mode === 'entra') {
    children.push(
      h('div', { role: 'alert' },
        h('h1', {}, reason === 'expired' ? 'Your session has expired' : 'Sign in to Hunter'),
        h('p', {}, reason === 'error' && auth.pendingError
          ? auth.pendingError.message
          : reason === 'expired'
            ? 'Sign in again with your Microsoft work account to continue where you left off.'
            : 'Hunter uses your Microsoft work account.')),
      h('button', { type: 'button', class: 'btn btn-primary btn-lg', id: 'signin-button', onclick: () => auth.signIn() },
        icon('lock'), 'Sign in with Microsoft'));
  } else {
    const input = h('input', { type: 'password', id: 'token-input', class: 'input', autocomplete: 'off', spellcheck: 'false', required: true });
    const form = h('form', { class: 'token-form' },
      h('label', { for: 'token-input' }, 'Or paste the API token'),
      h('div', { class: 'token-row' }, input, h('button', { type: 'submit', class: 'btn' }, 'Sign in')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!input.value.trim()) return;
      auth.useToken(input.value);
      history.replaceState(null, '', `${location.pathname}#/leads`);
      location.reload();
    });
    children.push(
      h('div', { role: 'alert' },
        h('h1', {}, reason === 'missing' ? 'Sign in to Hunter' : 'Your session has expired or the link is not valid'),
        h('p', {}, reason === 'missing'
          ? 'Open the link hunter-local printed when it started (it ends in #token=…).'
          : 'Open the link hunter-local printed again, or sign in again with the API token.')),
      h('p', { class: 'muted' }, 'The link looks like http://127.0.0.1:8080/#token=… and is printed on hunter-local\'s first line.'),
      form);
  }
  replace(box, h('div', { class: 'signin-card', 'data-reason': reason }, children));
  box.hidden = false;
  document.title = 'Sign in · Hunter';
  const focusTarget = box.querySelector('#signin-button, #token-input');
  focusTarget?.focus();
}

function fatal(message) {
  $('boot').hidden = true;
  $('app').hidden = true;
  replace($('signin'), h('div', { class: 'signin-card', role: 'alert' },
    h('h1', {}, 'Hunter could not start'), h('p', {}, message),
    h('button', { type: 'button', class: 'btn', onclick: () => location.reload() }, 'Reload')));
  $('signin').hidden = false;
}

async function main() {
  let config;
  try {
    const response = await fetch('/config.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`/config.json answered ${response.status}`);
    config = await response.json();
  } catch (err) {
    fatal(`The configuration could not be loaded (${err.message}). Is hunter-local running?`);
    return;
  }

  const auth = await initAuth(config);
  if (auth.pendingError) {
    showSignIn(auth, 'error');
    return;
  }
  if (!auth.getToken()) {
    showSignIn(auth, auth.mode === 'entra' ? 'signin' : 'missing');
    return;
  }

  const events = new EventTarget();
  const api = createApi({
    base: config.apiBase || '/api/v1',
    getToken: () => {
      const token = auth.getToken();
      if (!token) queueMicrotask(() => showSignIn(auth, 'expired'));
      return token;
    },
    onUnauthorized: () => showSignIn(auth, 'expired'),
  });

  // Stats are shared: KPI cards, provider options, category labels.
  let statsPromise = null;
  const ctx = {
    api,
    events,
    toast,
    parseHash,
    setHash,
    stats(refresh = false) {
      if (refresh || !statsPromise) {
        statsPromise = api.get('/stats').then((stats) => {
          setCategories(stats.categories);
          return stats;
        });
        statsPromise.catch(() => { statsPromise = null; });
      }
      return statsPromise;
    },
    navigate(name, params) {
      const q = params && params.toString();
      location.hash = `#/${name}${q ? `?${q}` : ''}`;
    },
  };

  $('boot').hidden = true;
  $('app').hidden = false;
  $('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    $('main').focus();
  });

  headerHandle = startHeader(ctx);
  ctx.stats().catch(() => {});

  let current = null;
  function route() {
    if (signedOut) return;
    const { name, params } = parseHash();
    const view = VIEWS[name] ? name : 'leads';
    if (!VIEWS[name]) {
      history.replaceState(null, '', '#/leads');
    }
    document.querySelectorAll('.nav a').forEach((a) => {
      if (a.dataset.route === view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
    document.title = `${VIEWS[view].title} · Hunter`;
    if (current && current.name === view && current.handle.update) {
      current.handle.update(params);
      return;
    }
    current?.handle.unmount?.();
    document.querySelectorAll('dialog').forEach((d) => d.remove());
    document.documentElement.classList.remove('modal-open');
    const container = h('div', { class: `view view-${view}` });
    replace($('main'), container);
    current = { name: view, handle: VIEWS[view].module.mount(container, ctx, params) };
  }
  window.addEventListener('hashchange', route);
  route();
  setInterval(() => refreshRelativeTimes(), 30_000);
}

main();
