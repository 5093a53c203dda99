// The header: the last sync run, the Partner Center webhook, queue and dead-letter depths,
// "Sync now", and a banner when Partner Center refused Hunter's refresh token (someone must run
// `hunter-local sign-in`).
import { h, replace } from './dom.js';
import { ApiError } from './api.js';
import { relative, absolute, num, plural } from './format.js';
import { icon } from './components.js';

const IDLE_POLL_MS = 15_000;
const BUSY_POLL_MS = 1_000;
const BUSY_MAX_MS = 120_000;

function lastSyncView(run, onToggleError) {
  if (!run) return h('span', { class: 'muted' }, 'No sync yet');
  const when = run.finishedAt || run.startedAt;
  const status = { succeeded: 'OK', running: 'running…', abandoned: 'abandoned' }[run.status] || 'failed';
  const text = `${relative(when)} · ${num(run.fetched)} fetched · ${status}`;
  const why = run.error || (run.status === 'abandoned'
    ? 'stopped by its time limit; the next run went on from where it stopped' : '');
  const title = `Last sync started ${absolute(run.startedAt)}${why ? ` — ${why}` : ''}`;
  if (run.status === 'failed') {
    return h('button', {
      type: 'button', class: 'last-sync-btn is-failed', title, 'aria-expanded': 'false', onclick: onToggleError,
    }, icon('alert'), h('span', {}, 'Last sync '), h('span', {}, text));
  }
  return h('span', { class: ['last-sync-text', run.status === 'running' ? 'is-running' : ''], title },
    h('span', { class: 'muted' }, 'Last sync '), h('time', { datetime: when }, text));
}

function queueView(queues) {
  if (!queues) return null;
  const r = queues.referrals || {};
  const d = queues.dynamicsPush || {};
  const waiting = (r.visible || 0) + (r.inFlight || 0) + (d.visible || 0) + (d.inFlight || 0);
  const dead = (r.deadLetters || 0) + (d.deadLetters || 0);
  const title = `Referrals queue: ${num(r.visible)} waiting, ${num(r.inFlight)} in flight, ${num(r.deadLetters)} dead-lettered\n`
    + `Dynamics push queue: ${num(d.visible)} waiting, ${num(d.inFlight)} in flight, ${num(d.deadLetters)} dead-lettered`;
  return h('span', { class: 'queue-info', title },
    h('span', { class: 'queue-item' }, h('span', { class: 'muted' }, 'Queue '), h('strong', { 'data-testid': 'queue-depth' }, num(waiting))),
    h('span', { class: ['queue-item', dead > 0 ? 'dlq-alert' : ''], 'data-testid': 'dlq' },
      h('span', { class: dead > 0 ? '' : 'muted' }, 'DLQ '), h('strong', {}, num(dead)),
      dead > 0 ? h('span', { class: 'sr-only' }, ' messages failed for good: see the logs') : null));
}

/** True when time `a` is set and later than `b` (or `b` is not set). */
function newer(a, b) {
  const ta = Date.parse(a || '');
  const tb = Date.parse(b || '');
  return !Number.isNaN(ta) && (Number.isNaN(tb) || ta > tb);
}

// The webhook: registered or not, events received, and a warning while the newest event was
// refused. Null (nothing shown) when /webhooks did not answer.
function webhooksView(w) {
  if (!w) return null;
  const reg = w.registration;
  const counts = `Events: ${num(w.received)} received, ${num(w.queued)} queued, ${num(w.refused)} refused`;
  if (!reg) {
    const title = `No Partner Center webhook is registered: referrals arrive by sync only\n${counts}`;
    return h('span', { class: ['webhook-info', 'is-off'], 'data-testid': 'webhooks', 'data-state': 'off', title },
      h('span', { class: 'webhook-dot', 'aria-hidden': 'true' }),
      h('span', {}, 'Webhooks off'));
  }
  const warn = w.refused > 0 && newer(w.lastRefusedAt, w.lastEventAt);
  const title = [
    `Webhook: ${reg.url}`,
    `Events: ${(reg.events || []).join(', ') || 'none'}`,
    reg.registeredAt ? `Registered ${absolute(reg.registeredAt)}` : null,
    counts,
    w.lastEventAt ? `Last event ${absolute(w.lastEventAt)}` : 'No event yet',
    w.lastRefusedAt ? `Last refused ${absolute(w.lastRefusedAt)}: ${w.lastRefusal || 'no reason given'}` : null,
  ].filter(Boolean).join('\n');
  const sep = (text = ' · ') => h('span', { class: 'muted' }, text);
  return h('span', { class: ['webhook-info', warn ? 'is-warn' : 'is-on'], 'data-testid': 'webhooks', 'data-state': warn ? 'warn' : 'on', title },
    warn ? icon('alert') : h('span', { class: 'webhook-dot', 'aria-hidden': 'true' }),
    h('span', {}, 'Webhooks on',
      h('span', { class: 'webhook-detail' },
        sep(), h('span', { 'data-testid': 'webhook-events' }, plural(w.received, 'event', 'events')),
        w.lastEventAt ? [sep(' · last event '), h('time', { datetime: w.lastEventAt }, relative(w.lastEventAt))] : null),
      warn ? h('span', { class: 'sr-only' }, ` — the newest event was refused: ${w.lastRefusal || 'no reason given'}`) : null));
}

// The banner under the header while /health says `partnerCenter.signIn: "required"`.
function signInBanner() {
  return h('div', { id: 'pc-sign-in', class: 'signin-banner', role: 'alert', 'data-testid': 'sign-in-banner' },
    h('div', { class: 'signin-banner-inner' },
      icon('alert'),
      h('div', {},
        h('strong', {}, 'Partner Center: sign in again'),
        ' (run ', h('code', {}, 'hunter-local sign-in'), '). ',
        h('span', { class: 'signin-banner-why' },
          'Partner Center refused Hunter\'s refresh token (revoked or expired), so syncs fail until someone signs in.'))));
}

function renderSignIn(health) {
  const header = document.querySelector('.app-header');
  if (!header) return;
  const banner = document.getElementById('pc-sign-in');
  const required = health.partnerCenter?.signIn === 'required';
  if (!required) {
    banner?.remove();
    return;
  }
  if (!banner) header.append(signInBanner());
}

export function startHeader(ctx) {
  const lastSyncEl = document.getElementById('last-sync');
  const queuesEl = document.getElementById('queues');
  const webhooksEl = document.getElementById('webhooks');
  const button = document.getElementById('sync-now');
  let timer = null;
  let stopped = false;
  let waitingFor = null; // {runId, since}
  let lastRun = null;
  let errorOpen = false;
  let seenRun = null; // "id:status" of the newest run seen at the last poll
  let justAnnounced = false;

  function render(health, webhooks) {
    lastRun = health.lastSync || null;
    replace(lastSyncEl, lastSyncView(lastRun, toggleError));
    if (lastRun?.status === 'failed') {
      lastSyncEl.append(h('div', { class: 'sync-error-pop', role: 'note', id: 'sync-error', hidden: !errorOpen },
        h('strong', {}, 'Sync failed: '), lastRun.error || 'no error message',
        h('div', { class: 'pop-link' }, h('a', { href: '#/history', class: 'link' }, 'Open the sync history'))));
      lastSyncEl.querySelector('button')?.setAttribute('aria-expanded', String(errorOpen));
      lastSyncEl.querySelector('button')?.setAttribute('aria-controls', 'sync-error');
    } else {
      errorOpen = false;
    }
    replace(queuesEl, queueView(health.queues));
    replace(webhooksEl, webhooksView(webhooks));
    renderSignIn(health);
  }

  // The error of a failed run: shown on click, closed with Escape or a click elsewhere.
  function setErrorOpen(open) {
    errorOpen = open;
    const pop = lastSyncEl.querySelector('.sync-error-pop');
    if (pop) pop.hidden = !open;
    lastSyncEl.querySelector('button')?.setAttribute('aria-expanded', String(open));
  }
  function toggleError() {
    setErrorOpen(!errorOpen);
  }
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && errorOpen) {
      setErrorOpen(false);
      lastSyncEl.querySelector('button')?.focus();
    }
  });
  document.addEventListener('click', (e) => {
    if (errorOpen && e.target.isConnected && !lastSyncEl.contains(e.target)) setErrorOpen(false);
  });

  async function poll() {
    if (stopped) return;
    clearTimeout(timer);
    let busy = false;
    try {
      // The webhook is extra: when /webhooks fails the header goes on without it.
      const [health, webhooks] = await Promise.all([
        ctx.api.get('/health'),
        ctx.api.get('/webhooks').catch(() => null),
      ]);
      render(health, webhooks);
      const run = health.lastSync;
      if (waitingFor) {
        // Done once fetched and ingested: summarized, or nothing left in the referrals queue.
        const q = health.queues?.referrals || {};
        const drained = (q.visible || 0) + (q.inFlight || 0) === 0;
        const done = run && run.id === waitingFor.runId && run.status !== 'running' && (run.summarizedAt || drained || run.status === 'failed');
        if (done) {
          waitingFor = null;
          justAnnounced = true;
          setBusy(false);
          ctx.events.dispatchEvent(new CustomEvent('synced', { detail: run }));
          ctx.stats(true).catch(() => {});
          if (run.status === 'failed') ctx.toast(`Sync failed: ${run.error || 'see the sync history'}`, 'error');
          else ctx.toast(`Sync finished: ${num(run.fetched)} fetched, ${num(run.eligible)} eligible`, 'success');
        } else if (Date.now() - waitingFor.since > BUSY_MAX_MS) {
          waitingFor = null;
          setBusy(false);
        } else {
          busy = true;
        }
      }
      if (run?.status === 'running') busy = true;
      // A run that finished on its own (the schedule, another user): views refresh too.
      const key = run ? `${run.id}:${run.status}:${Boolean(run.summarizedAt)}` : '';
      if (seenRun !== null && key !== seenRun && run && run.status !== 'running' && !justAnnounced && !waitingFor) {
        ctx.events.dispatchEvent(new CustomEvent('synced', { detail: run }));
        ctx.stats(true).catch(() => {});
      }
      seenRun = key;
      justAnnounced = false;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      replace(lastSyncEl, h('span', { class: 'text-danger', title: err.message }, 'Hunter is not answering'));
    }
    if (!stopped) timer = setTimeout(poll, busy ? BUSY_POLL_MS : IDLE_POLL_MS);
  }

  // Busy, Sync now stays focusable (aria-disabled) so a keyboard user keeps their place.
  function setBusy(on) {
    if (on) button.setAttribute('aria-disabled', 'true');
    else button.removeAttribute('aria-disabled');
    button.classList.toggle('is-busy', on);
  }

  button.addEventListener('click', async () => {
    if (button.getAttribute('aria-disabled') === 'true') {
      ctx.toast('A sync is already running', 'info');
      return;
    }
    setBusy(true);
    try {
      const answer = await ctx.api.post('/sync');
      ctx.toast('Sync started', 'info');
      waitingFor = { runId: answer.runId, since: Date.now() };
      poll();
    } catch (err) {
      setBusy(false);
      if (err.status === 401) return;
      if (err.status === 409 || err.code === 'sync_pending') ctx.toast('A sync is already queued', 'info');
      else ctx.toast(`Sync could not start: ${err.message}`, 'error');
    }
  });

  poll();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    refresh: poll,
  };
}
