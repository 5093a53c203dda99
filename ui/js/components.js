// Small pieces shared by the views: badges, chips, pills, score bars, toasts, dialogs, the
// breakdown and signal panels.
import { h, s, replace, srOnly } from './dom.js';
import {
  num, SEGMENT_MEANING, SYNC_STATUS_LABEL, SCAN_STATE_LABEL, SCAN_STATE_MEANING, SKIP_REASON_LABEL,
  ARRIVAL_LABEL, ARRIVAL_MEANING, CRM_STATUS_TONE, CRM_OPPORTUNITY_TONE, CRM_NOT_PULLED, crmPulled,
} from './format.js';

/* ---------- categories (labels come from the API, never hard-coded) ---------- */

let categoryInfo = new Map();
/** Keeps stats.categories so badges without their own label can still explain themselves. */
export function setCategories(categories) {
  categoryInfo = new Map((categories || []).map((c) => [c.category, c]));
}
export function categoryOf(category) {
  return categoryInfo.get(category) || null;
}
export function categoryList() {
  return [...categoryInfo.values()];
}

/** P1..P6 badge; label and seller action as tooltip and accessible name. */
export function priorityBadge(category, label, sellerAction) {
  if (!category) return h('span', { class: 'muted' }, '—');
  const info = categoryOf(category);
  const l = label || info?.label;
  const a = sellerAction || info?.sellerAction;
  const text = [category, l].filter(Boolean).join(' · ') + (a ? ` — ${a}` : '');
  const cls = /^P[1-6]$/.test(category) ? category.toLowerCase() : 'p6';
  return h('span', { class: ['pbadge', cls], title: text, role: 'img', 'aria-label': text }, category);
}

export function segmentChip(segment) {
  if (!segment) return h('span', { class: 'muted' }, '—');
  const meaning = SEGMENT_MEANING[segment];
  const cls = `seg-${String(segment).toLowerCase().replace(/[^a-z]/g, '')}`;
  return h('span', { class: ['chip', cls], title: meaning ? `${segment}: ${meaning}` : segment }, segment);
}

export function syncPill(status, lastError) {
  const label = SYNC_STATUS_LABEL[status] || status || '—';
  const cls = ['pill', `sync-${status || 'none'}`];
  return h('span', { class: cls, title: lastError ? `${label}: ${lastError}` : label }, label);
}

// An abandoned run was cut off by its time limit; the next run took over from where it stopped.
const RUN_ABANDONED_MEANING = 'Stopped by its time limit; the next run went on from where it stopped';

export function runStatusPill(status, error) {
  const label = { running: 'Running', succeeded: 'OK', failed: 'Failed', abandoned: 'Abandoned' }[status] || status || '—';
  const title = error || (status === 'abandoned' ? RUN_ABANDONED_MEANING : label);
  return h('span', { class: ['pill', `run-${status}`], title }, label);
}

export function scanStatePill(state, detail) {
  const label = SCAN_STATE_LABEL[state] || state || '—';
  const meaning = SCAN_STATE_MEANING[state];
  const title = [meaning, detail].filter(Boolean).join(' — ');
  return h('span', { class: ['scan', `scan-${state || 'none'}`], title: title || label },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), label);
}

export function skipReasonChip(reason, detail) {
  const label = SKIP_REASON_LABEL[reason] || reason;
  return h('span', { class: ['chip', 'chip-skip'], title: detail ? `${label}: ${detail}` : label }, label);
}

/** How the stored version of a referral reached Hunter: "webhook" (highlighted) or "sweep" (muted). */
export function arrivalChip(arrivedBy) {
  const label = Object.hasOwn(ARRIVAL_LABEL, arrivedBy ?? '') ? ARRIVAL_LABEL[arrivedBy] : null;
  if (!label) return h('span', { class: 'muted', title: 'not known' }, '—');
  return h('span', { class: ['chip', 'chip-arrival', `arrival-${arrivedBy}`], title: `Arrived by ${label}: ${ARRIVAL_MEANING[arrivedBy]}` },
    label);
}

/* ---------- what sellers did in Dynamics 365 (seller-typed text: text nodes only) ---------- */

const GUID = /^\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?$/i;

/** The lead's status in Dynamics as a pill: Open neutral, Qualified green, Disqualified muted red. */
export function crmStatusPill(lead) {
  const status = lead?.crmStatus;
  if (!status) return h('span', { class: 'muted', title: crmPulled(lead) ? 'No status in Dynamics' : CRM_NOT_PULLED }, '—');
  const tone = Object.hasOwn(CRM_STATUS_TONE, status) ? CRM_STATUS_TONE[status] : 'other';
  const reason = lead.crmStatusReason;
  const title = `In Dynamics: ${status}${reason && reason !== status ? ` (${reason})` : ''}`;
  return h('span', { class: ['pill', 'crm-pill', `crm-${tone}`], title }, status);
}

/** The status of the opportunity the lead was qualified into: Won green, Lost red, Open neutral. */
export function crmOpportunityPill(status, opportunityId) {
  if (!status) return null;
  const tone = Object.hasOwn(CRM_OPPORTUNITY_TONE, status) ? CRM_OPPORTUNITY_TONE[status] : 'other';
  const title = `Opportunity in Dynamics: ${status}${opportunityId ? ` (${opportunityId})` : ''}`;
  return h('span', { class: ['pill', 'opp-pill', `opp-${tone}`], title }, status);
}

/**
 * The leads table's CRM status cell: the status pill, then (when there is one) the reason in
 * small text and the opportunity's status, labelled. A reason that only repeats the status is
 * left out.
 */
export function crmStatusCell(lead) {
  const pill = crmStatusPill(lead);
  if (!lead?.crmStatus) return pill;
  const reason = lead.crmStatusReason && lead.crmStatusReason !== lead.crmStatus
    ? h('span', { class: 'crm-reason' }, lead.crmStatusReason) : null;
  const oppPill = crmOpportunityPill(lead.crmOpportunityStatus, lead.crmOpportunityId);
  const opportunity = oppPill ? h('span', { class: 'crm-opp' }, h('span', { class: 'crm-opp-label' }, 'Opportunity'), oppPill) : null;
  return h('span', { class: 'crm' }, pill, reason || opportunity ? h('span', { class: 'crm-sub' }, reason, opportunity) : null);
}

/** The lead's owner in Dynamics: the name as Dynamics shows it, or its id when it had no name. */
export function crmOwner(lead) {
  const owner = lead?.crmOwner;
  if (!owner) return h('span', { class: 'muted', title: crmPulled(lead) ? 'No owner in Dynamics' : CRM_NOT_PULLED }, '—');
  if (owner === lead.crmOwnerId || GUID.test(owner)) {
    return h('code', { class: 'crm-owner-id', title: `Owner in Dynamics (no name given): ${owner}` }, owner);
  }
  return h('span', { class: 'crm-owner', title: lead.crmOwnerId ? `Owner in Dynamics: ${owner} (${lead.crmOwnerId})` : `Owner in Dynamics: ${owner}` }, owner);
}

function scoreBand(score) {
  if (score >= 70) return 'hi';
  if (score >= 40) return 'mid';
  return 'lo';
}

/** Score as number plus a small bar. */
export function scoreCell(score) {
  if (score == null) return h('span', { class: 'muted', title: 'not scored yet' }, '—');
  const fill = h('span', { class: ['scorebar-fill', `band-${scoreBand(score)}`] });
  fill.style.width = `${Math.max(0, Math.min(100, score))}%`;
  return h('span', { class: 'score' },
    h('span', { class: 'score-num' }, String(score)),
    h('span', { class: 'scorebar', 'aria-hidden': 'true' }, fill));
}

/* ---------- icons (drawn, no font) ---------- */

const ICONS = {
  sync: 'M4 12a8 8 0 0 1 13.7-5.6L20 8.7M20 4v4.7h-4.7M20 12a8 8 0 0 1-13.7 5.6L4 15.3M4 20v-4.7h4.7',
  close: 'M6 6l12 12M18 6L6 18',
  download: 'M12 4v11m0 0l-4.5-4.5M12 15l4.5-4.5M5 19h14',
  copy: 'M9 9h10v10H9zM5 15V5h10',
  search: 'M11 18a7 7 0 1 1 0-14 7 7 0 0 1 0 14zm5-2l4 4',
  chevronLeft: 'M15 5l-7 7 7 7',
  chevronRight: 'M9 5l7 7-7 7',
  arrowUp: 'M12 19V5m0 0l-5 5m5-5l5 5',
  arrowDown: 'M12 5v14m0 0l-5-5m5 5l5-5',
  sort: 'M8 9l4-4 4 4M8 15l4 4 4-4',
  push: 'M5 12h12m0 0l-5-5m5 5l-5 5M19 5v14',
  scan: 'M4 8V5a1 1 0 0 1 1-1h3M16 4h3a1 1 0 0 1 1 1v3M20 16v3a1 1 0 0 1-1 1h-3M8 20H5a1 1 0 0 1-1-1v-3M7 12h10',
  alert: 'M12 4l9 16H3zM12 10v4m0 3v.01',
  lock: 'M7 11V8a5 5 0 0 1 10 0v3M6 11h12v9H6z',
};
export function icon(name, cls = '') {
  return s('svg', { class: ['icon', cls].filter(Boolean).join(' '), viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' },
    s('path', { d: ICONS[name] || '' }));
}

/* ---------- toasts ---------- */

export function toast(message, kind = 'info') {
  const region = document.getElementById('toasts');
  if (!region) return;
  const el = h('div', { class: ['toast', `toast-${kind}`], role: kind === 'error' ? 'alert' : 'status' }, message);
  region.append(el);
  setTimeout(() => {
    el.classList.add('toast-leaving');
    setTimeout(() => el.remove(), 300);
  }, kind === 'error' ? 7000 : 4000);
}

/* ---------- dialogs ---------- */

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function focusables(root) {
  return [...root.querySelectorAll(FOCUSABLE)].filter((el) => el.getClientRects().length > 0);
}

/**
 * A modal dialog (native <dialog>): focus moves in and is trapped, ESC and a backdrop click
 * close it, focus goes back to whatever `returnFocus()` gives when it closes.
 * Returns {dialog, body, close, setTitle}.
 */
export function openDialog({ title, subtitle, className = '', returnFocus, onClose, headerExtra }) {
  const titleId = `dlg-title-${Math.random().toString(36).slice(2, 8)}`;
  const heading = h('h2', { id: titleId, class: 'dialog-title', tabindex: '-1' }, title);
  const sub = h('div', { class: 'dialog-subtitle' }, subtitle || '');
  const closeBtn = h('button', { type: 'button', class: 'btn btn-icon dialog-close', 'aria-label': 'Close' }, icon('close'));
  const body = h('div', { class: 'dialog-body' });
  const extraSlot = h('span', { class: 'dialog-extra' }, headerExtra || null);
  const panel = h('div', { class: 'dialog-panel' },
    h('header', { class: 'dialog-header' },
      h('div', { class: 'dialog-heading' }, extraSlot, h('div', { class: 'dialog-titles' }, heading, sub)),
      closeBtn),
    body);
  const dialog = h('dialog', { class: ['dialog', className], 'aria-labelledby': titleId }, panel);
  document.body.append(dialog);

  let closed = false;
  function close() {
    if (closed) return;
    closed = true;
    dialog.close();
    dialog.remove();
    document.documentElement.classList.remove('modal-open');
    onClose?.();
    const target = typeof returnFocus === 'function' ? returnFocus() : returnFocus;
    if (target && target.isConnected) target.focus();
  }

  closeBtn.addEventListener('click', close);
  dialog.addEventListener('cancel', (e) => {
    e.preventDefault();
    close();
  });
  // A click on the backdrop lands on the <dialog> itself (the panel covers its whole box).
  let downOnBackdrop = false;
  dialog.addEventListener('mousedown', (e) => { downOnBackdrop = e.target === dialog; });
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog && downOnBackdrop) close();
    downOnBackdrop = false;
  });
  dialog.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab') return;
    const items = focusables(dialog);
    if (!items.length) {
      e.preventDefault();
      return;
    }
    const first = items[0];
    const last = items[items.length - 1];
    const active = document.activeElement;
    if (e.shiftKey && (active === first || active === heading || !dialog.contains(active))) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (active === last || !dialog.contains(active))) {
      e.preventDefault();
      first.focus();
    }
  });

  document.documentElement.classList.add('modal-open');
  dialog.showModal();
  heading.focus();

  return {
    dialog,
    body,
    close,
    setTitle(text, subtitleText) {
      replace(heading, text);
      if (subtitleText !== undefined) replace(sub, subtitleText);
    },
    setHeaderExtra(node) {
      replace(extraSlot, node || null);
    },
  };
}

/* ---------- states ---------- */

export function spinner(label = 'Loading…') {
  return h('div', { class: 'state state-loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
}

export function errorState(error, onRetry) {
  return h('div', { class: 'state state-error', role: 'alert' },
    icon('alert', 'state-icon'),
    h('div', {},
      h('strong', {}, 'Something went wrong'),
      h('p', {}, error?.message || String(error)),
      onRetry ? h('button', { type: 'button', class: 'btn', onclick: onRetry }, 'Try again') : null));
}

export function emptyState(title, detail, action) {
  return h('div', { class: 'state state-empty', role: 'status' },
    h('strong', {}, title),
    detail ? h('p', {}, detail) : null,
    action || null);
}

/** Grey placeholder rows while a table loads for the first time. */
export function skeletonRows(columns, rows = 8) {
  const out = [];
  for (let r = 0; r < rows; r += 1) {
    const tr = h('tr', { class: 'skeleton-row', 'aria-hidden': 'true' });
    for (let c = 0; c < columns; c += 1) tr.append(h('td', {}, h('span', { class: 'skeleton' })));
    out.push(tr);
  }
  return out;
}

/* ---------- score breakdown and DNS signals ---------- */

export function breakdownList(lines, score) {
  if (!lines || !lines.length) return h('p', { class: 'muted' }, 'No score breakdown.');
  const list = h('ol', { class: 'breakdown' });
  for (const line of lines) {
    const points = Number(line.points) || 0;
    const kind = points > 0 ? 'plus' : points < 0 ? 'minus' : 'zero';
    const sign = points > 0 ? '+' : points < 0 ? '−' : '±';
    list.append(h('li', { class: ['breakdown-line', `bd-${kind}`] },
      h('span', { class: 'bd-points' }, `${sign}${Math.abs(points)}`,
        srOnly(points < 0 ? ' points (risk)' : ' points')),
      h('span', { class: 'bd-label' }, line.label)));
  }
  if (score != null) {
    list.append(h('li', { class: 'breakdown-total' },
      h('span', { class: 'bd-points' }, String(score)), h('span', { class: 'bd-label' }, 'Score (0–100)')));
  }
  return list;
}

function signalRow(label, value, state) {
  return h('div', { class: ['signal', state ? `signal-${state}` : ''] },
    h('dt', {}, label), h('dd', {}, value));
}

/** Risks worth telling a seller about: the rules' negative lines (the rules engine is the judge). */
export function risksOf(signals, breakdown) {
  const risks = (breakdown || []).filter((line) => Number(line.points) < 0)
    .map((line) => `${line.label} (${line.points} points)`);
  if (signals && (!signals.mx || !signals.mx.length) && !risks.length) risks.push('No MX records: the domain receives no mail');
  return risks;
}

export function signalsPanel(signals, breakdown) {
  if (!signals) return h('p', { class: 'muted' }, 'No DNS signals yet.');
  const mx = signals.mx && signals.mx.length
    ? h('ul', { class: 'mx-list' }, [...signals.mx]
      .sort((a, b) => (a.preference ?? 0) - (b.preference ?? 0))
      .map((r) => h('li', {}, h('span', { class: 'mx-pref', title: 'MX preference (lower is tried first)' }, String(r.preference ?? '—')), h('code', {}, r.host))))
    : h('span', { class: 'muted' }, 'none');
  const spf = signals.spf
    ? h('div', {}, h('code', { class: 'record' }, signals.spf),
      signals.spfIncludes && signals.spfIncludes.length
        ? h('div', { class: 'chips' }, signals.spfIncludes.map((i) => h('span', { class: 'chip chip-plain' }, i)))
        : null)
    : h('span', { class: 'muted' }, 'none');
  const dkim = signals.dkim
    ? h('div', { class: 'chips' }, (signals.dkimSelectors || []).length
      ? signals.dkimSelectors.map((sel) => h('span', { class: 'chip chip-plain' }, sel))
      : 'yes')
    : h('span', { class: 'muted' }, 'none found');
  const dmarc = signals.dmarcPolicy
    ? h('span', {}, h('strong', {}, signals.dmarcPolicy),
      signals.dmarcCoverage != null ? ` · applies to ${num(signals.dmarcCoverage)}% of mail` : '')
    : h('span', { class: 'muted' }, 'none');

  const risks = risksOf(signals, breakdown);
  return h('div', { class: 'signals' },
    h('dl', { class: 'signal-list' },
      signalRow('MX', mx, signals.mx?.length ? 'ok' : 'bad'),
      signalRow('SPF', spf, signals.spf ? 'ok' : 'bad'),
      signalRow('DKIM', dkim, signals.dkim ? 'ok' : 'bad'),
      signalRow('DMARC', dmarc, signals.dmarcPolicy && signals.dmarcPolicy !== 'none' ? 'ok' : 'bad')),
    risks.length
      ? h('div', { class: 'risks' }, h('h4', {}, 'Risks'), h('ul', {}, risks.map((r) => h('li', {}, r))))
      : h('p', { class: 'no-risks' }, 'No risks found in the mail setup.'));
}

/** "P2 · Competitive Takeover" with the seller action and the segment meaning. */
export function sellerGuidance({ segment, priorityCategory, priorityCategoryLabel, sellerAction }) {
  const info = categoryOf(priorityCategory);
  const label = priorityCategoryLabel || info?.label;
  const action = sellerAction || info?.sellerAction;
  return h('div', { class: 'guidance' },
    h('div', { class: 'guidance-row' },
      priorityBadge(priorityCategory, label, action),
      h('div', {},
        h('div', { class: 'guidance-title' }, label || 'No category'),
        action ? h('div', { class: 'guidance-action' }, 'Seller action: ', h('strong', {}, action)) : null)),
    h('div', { class: 'guidance-row' },
      segmentChip(segment),
      h('div', { class: 'guidance-meaning' }, SEGMENT_MEANING[segment] ? `${segment}: ${SEGMENT_MEANING[segment]}` : '')));
}

/** A pager: Previous / Page n / Next, and the page size. */
export function pager({ page, hasPrev, hasNext, limit, sizes = [25, 50, 100, 200], onPrev, onNext, onLimit, label = 'Pages' }) {
  const sizeId = `size-${Math.random().toString(36).slice(2, 8)}`;
  return h('nav', { class: 'pager', 'aria-label': label },
    h('div', { class: 'pager-size' },
      h('label', { for: sizeId }, 'Rows per page'),
      h('select', { id: sizeId, class: 'select select-sm', 'data-action': 'page-size', onchange: (e) => onLimit(Number(e.target.value)) },
        sizes.map((n) => h('option', { value: String(n), selected: n === limit }, String(n))))),
    h('div', { class: 'pager-buttons' },
      h('button', { type: 'button', class: 'btn', disabled: !hasPrev, onclick: onPrev, 'data-action': 'prev-page' }, icon('chevronLeft'), 'Previous'),
      h('span', { class: 'pager-page', 'aria-live': 'polite' }, `Page ${page + 1}`),
      h('button', { type: 'button', class: 'btn', disabled: !hasNext, onclick: onNext, 'data-action': 'next-page' }, 'Next', icon('chevronRight'))));
}

/** Label + control, stacked. */
export function field(labelText, control, extraClass = '') {
  if (!control.id) control.id = `f-${Math.random().toString(36).slice(2, 8)}`;
  return h('div', { class: ['field', extraClass] }, h('label', { for: control.id }, labelText), control);
}

export function select(options, value, attrs = {}) {
  const el = h('select', { class: 'select', ...attrs },
    options.map(([v, text]) => h('option', { value: v }, text)));
  el.value = String(value ?? '');
  if (el.selectedIndex < 0) el.selectedIndex = 0;
  return el;
}

export function skipLabel(reason) {
  return SKIP_REASON_LABEL[reason] || reason;
}
