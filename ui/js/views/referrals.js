// Referrals as fetched from Partner Center: why each was taken or skipped, and the raw payload.
import { h, replace, debounce, keepFocus } from '../dom.js';
import { seg } from '../api.js';
import {
  field, select, pager, skeletonRows, errorState, openDialog, spinner, icon, skipReasonChip, arrivalChip,
} from '../components.js';
import { money, timeEl, SKIP_REASONS, SKIP_REASON_LABEL } from '../format.js';

const STATUSES = ['New', 'Active', 'Closed'];
const SUBSTATUSES = ['Pending', 'Received', 'Accepted', 'Won', 'Lost', 'Declined', 'Expired', 'Error'];
const LIMITS = [25, 50, 100, 200];
const DEFAULT_LIMIT = 50;
const COLUMN_COUNT = 8;

function stateFrom(params) {
  const pick = (k) => params.get(k) || '';
  const limit = LIMITS.includes(Number(params.get('limit'))) ? Number(params.get('limit')) : DEFAULT_LIMIT;
  return { status: pick('status'), substatus: pick('substatus'), eligible: pick('eligible'), skipReason: pick('skipReason'), q: pick('q'), limit };
}

function paramsOf(state) {
  const p = new URLSearchParams();
  for (const k of ['status', 'substatus', 'eligible', 'skipReason', 'q']) if (state[k]) p.set(k, state[k]);
  if (state.limit !== DEFAULT_LIMIT) p.set('limit', String(state.limit));
  return p;
}

function eligibilityValue(state) {
  if (state.skipReason) return `skip:${state.skipReason}`;
  return state.eligible;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Fallback: a hidden textarea and execCommand.
    const area = h('textarea', { class: 'sr-only', readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}

function prettyJson(raw) {
  if (raw == null) return '';
  if (typeof raw !== 'string') return JSON.stringify(raw, null, 2);
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return raw;
  }
}

function eligibilityCell(r) {
  if (r.eligible) return h('span', { class: 'pill pill-ok', title: 'Taken into Hunter as a lead' }, 'Eligible');
  return skipReasonChip(r.skipReason, r.skipDetail);
}

export function openReferralDetail(ctx, id, returnFocus) {
  let closed = false;
  const dlg = openDialog({
    title: 'Referral', subtitle: id, className: 'drawer referral-detail', returnFocus, onClose: () => { closed = true; },
  });
  replace(dlg.body, spinner('Loading the referral…'));
  async function load() {
    try {
      const r = await ctx.api.get(`/referrals/${seg(id)}`);
      if (closed) return;
      dlg.setTitle(r.customerName || r.name || 'Referral', r.name || r.id);
      const fact = (label, value) => h('div', { class: 'fact' }, h('dt', {}, label), h('dd', {}, value ?? '—'));
      const raw = prettyJson(r.raw);
      const pre = h('pre', { class: 'raw-json', tabindex: '0', 'aria-label': 'Raw payload' });
      pre.textContent = raw;
      const copyButton = h('button', {
        type: 'button', class: 'btn', id: 'copy-raw',
        onclick: async () => {
          const ok = await copyText(raw);
          ctx.toast(ok ? 'Copied the raw payload' : 'Copy failed: select the text and copy it', ok ? 'success' : 'error');
        },
      }, icon('copy'), 'Copy');
      replace(dlg.body,
        h('dl', { class: 'facts facts-grid' },
          fact('Eligibility', eligibilityCell(r)),
          r.skipDetail ? fact('Why skipped', r.skipDetail) : null,
          fact('Domain', r.domain ? h('span', {}, h('a', { class: 'link', href: `#/leads?q=${encodeURIComponent(r.domain)}` }, r.domain), r.domainSource ? h('span', { class: 'muted' }, ` (from ${r.domainSource.replace(/_/g, ' ')})`) : '') : null),
          fact('Status', [r.status, r.substatus].filter(Boolean).join(' · ') || null),
          fact('Type', r.type),
          fact('Qualification', r.qualification),
          fact('Direction', r.direction),
          fact('Country', r.customerCountry),
          fact('Deal value', money(r.dealValue, r.currency)),
          fact('Created', timeEl(r.createdDateTime)),
          fact('Updated', timeEl(r.updatedDateTime)),
          fact('Synced', timeEl(r.syncedAt)),
          fact('Arrived by', h('span', { 'data-testid': 'arrived-by' }, arrivalChip(r.arrivedBy))),
          fact('Referral id', h('code', {}, r.id))),
        h('section', { class: 'detail-section' },
          h('div', { class: 'section-title-row' }, h('h3', {}, 'Raw payload from Partner Center'), copyButton),
          pre));
    } catch (err) {
      if (closed || err.status === 401) return;
      replace(dlg.body, errorState(err, load));
    }
  }
  load();
}

export function mount(container, ctx, initialParams) {
  let state = stateFrom(initialParams);
  let cursors = [null];
  let page = 0;
  let seq = 0;
  let loadedOnce = false;

  const search = h('input', { type: 'search', class: 'input', placeholder: 'Company, name or domain', id: 'ref-search', autocomplete: 'off' });
  const statusSel = select([['', 'Any status'], ...STATUSES.map((s) => [s, s])], '', { id: 'ref-status' });
  const substatusSel = select([['', 'Any substatus'], ...SUBSTATUSES.map((s) => [s, s])], '', { id: 'ref-substatus' });
  const eligibleSel = select([
    ['', 'All referrals'], ['true', 'Eligible'], ['false', 'Skipped (any reason)'],
    ...SKIP_REASONS.map((r) => [`skip:${r}`, `Skipped: ${SKIP_REASON_LABEL[r]}`]),
  ], '', { id: 'ref-eligible' });
  const clear = h('button', { type: 'button', class: 'btn btn-ghost', id: 'ref-clear' }, 'Clear');
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter referrals' },
    field('Search', search, 'field-grow'), field('Status', statusSel), field('Substatus', substatusSel),
    field('Eligibility', eligibleSel), h('div', { class: 'field field-actions' }, clear));
  form.addEventListener('submit', (e) => e.preventDefault());

  const tbody = h('tbody');
  const table = h('table', { class: 'table referrals-table', id: 'referrals-table' },
    h('caption', { class: 'sr-only' }, 'Referrals. Press Enter on a row to open its details.'),
    h('thead', {}, h('tr', {},
      ['Company', 'Domain', 'Type', 'Status', 'Eligibility', 'Deal value', 'Synced', 'Arrived'].map((t, i) => h('th', {
        scope: 'col', class: i === 5 ? 'num' : null, title: t === 'Arrived' ? 'How Hunter got this version: a webhook event or a sync (sweep)' : null,
      }, t)))),
    tbody);
  const wrap = h('div', { class: 'table-wrap table-scroll' }, table);
  const stateBox = h('div', { class: 'state-box' });
  const pagerBox = h('div', { class: 'pager-box' });
  const summary = h('div', { class: 'results-summary', 'aria-live': 'polite' });

  replace(container,
    h('div', { class: 'view-header' }, h('div', {}, h('h1', {}, 'Referrals'),
      h('p', { class: 'view-sub' }, 'Everything Partner Center sent, newest first, and why Hunter took it or skipped it.'))),
    form, h('div', { class: 'results-bar' }, summary), wrap, stateBox, pagerBox);

  function syncControls() {
    if (document.activeElement !== search) search.value = state.q;
    statusSel.value = state.status;
    substatusSel.value = state.substatus;
    eligibleSel.value = eligibilityValue(state);
    clear.disabled = !(state.q || state.status || state.substatus || state.eligible || state.skipReason);
  }

  function set(changes) {
    state = { ...state, ...changes };
    cursors = [null];
    page = 0;
    ctx.setHash('referrals', paramsOf(state));
    syncControls();
    load();
  }

  const onSearch = debounce(() => set({ q: search.value.trim() }), 300);
  search.addEventListener('input', onSearch);
  statusSel.addEventListener('change', () => set({ status: statusSel.value }));
  substatusSel.addEventListener('change', () => set({ substatus: substatusSel.value }));
  eligibleSel.addEventListener('change', () => {
    const v = eligibleSel.value;
    if (v.startsWith('skip:')) set({ eligible: 'false', skipReason: v.slice(5) });
    else set({ eligible: v, skipReason: '' });
  });
  clear.addEventListener('click', () => {
    onSearch.cancel();
    search.value = '';
    set({ status: '', substatus: '', eligible: '', skipReason: '', q: '' });
  });

  function row(r) {
    const tr = h('tr', { tabindex: '0', 'data-id': r.id, class: 'ref-row' },
      h('td', { class: 'c-company sticky-col', 'data-label': 'Company' },
        h('div', { class: 'cell-title' }, r.customerName || h('span', { class: 'muted' }, '—')),
        h('div', { class: 'cell-sub' }, r.name || '')),
      h('td', { class: 'c-domain', 'data-label': 'Domain' }, r.domain ? h('span', { class: 'domain' }, r.domain) : h('span', { class: 'muted' }, 'none')),
      h('td', { 'data-label': 'Type' }, r.type || '—'),
      h('td', { 'data-label': 'Status' }, r.status || '—', r.substatus ? h('span', { class: 'muted' }, ` · ${r.substatus}`) : null),
      h('td', { 'data-label': 'Eligibility' }, eligibilityCell(r)),
      h('td', { class: 'num', 'data-label': 'Deal value' }, money(r.dealValue, r.currency)),
      h('td', { 'data-label': 'Synced' }, timeEl(r.syncedAt)),
      h('td', { class: 'c-arrived', 'data-label': 'Arrived', 'data-testid': 'arrived' }, arrivalChip(r.arrivedBy)));
    const open = () => openReferralDetail(ctx, r.id, () => tbody.querySelector(`tr[data-id="${CSS.escape(r.id)}"]`) || tr);
    tr.addEventListener('click', (e) => { if (!e.target.closest('a, button')) open(); });
    tr.addEventListener('keydown', (e) => {
      if (e.target !== tr) return;
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        open();
      }
    });
    return tr;
  }

  async function load() {
    const mySeq = ++seq;
    container.dataset.state = 'loading';
    table.setAttribute('aria-busy', 'true');
    if (!loadedOnce) replace(tbody, skeletonRows(COLUMN_COUNT));
    else table.classList.add('is-loading');
    try {
      const result = await ctx.api.get('/referrals', {
        status: state.status, substatus: state.substatus, eligible: state.eligible, skipReason: state.skipReason,
        q: state.q, limit: state.limit, cursor: cursors[page],
      });
      if (mySeq !== seq) return;
      loadedOnce = true;
      table.removeAttribute('aria-busy');
      table.classList.remove('is-loading');
      const items = result.items || [];
      const start = page * state.limit + 1;
      replace(summary, items.length ? `Showing ${start}–${start + items.length - 1}` : '');
      if (!items.length && page === 0) {
        wrap.hidden = true;
        replace(pagerBox);
        container.dataset.state = 'empty';
        replace(stateBox, h('div', { class: 'state state-empty', role: 'status' },
          h('strong', {}, 'No referrals match these filters'),
          h('button', { type: 'button', class: 'btn', onclick: () => clear.click() }, 'Clear filters')));
        return;
      }
      replace(stateBox);
      wrap.hidden = false;
      replace(tbody, items.map(row));
      container.dataset.state = 'ready';
      const next = result.nextCursor;
      keepFocus(pagerBox, () => replace(pagerBox, pager({
        page, hasPrev: page > 0, hasNext: Boolean(next), limit: state.limit, sizes: LIMITS, label: 'Referral pages',
        onPrev: () => { page -= 1; cursors = cursors.slice(0, page + 1); load(); },
        onNext: () => { cursors = [...cursors.slice(0, page + 1), next]; page += 1; load(); },
        onLimit: (limit) => set({ limit }),
      })));
    } catch (err) {
      if (mySeq !== seq) return;
      table.removeAttribute('aria-busy');
      table.classList.remove('is-loading');
      if (err.status === 401) return;
      container.dataset.state = 'error';
      wrap.hidden = true;
      replace(pagerBox);
      replace(stateBox, errorState(err, load));
    }
  }

  const onSynced = () => load();
  ctx.events.addEventListener('synced', onSynced);
  ctx.setHash('referrals', paramsOf(state));
  syncControls();
  load();

  return {
    update(params) {
      const next = stateFrom(params);
      if (paramsOf(next).toString() === paramsOf(state).toString()) return;
      state = next;
      cursors = [null];
      page = 0;
      syncControls();
      load();
    },
    unmount() {
      ctx.events.removeEventListener('synced', onSynced);
      onSearch.cancel();
    },
  };
}
