// Leads: KPI cards, filters (kept in the URL and localStorage), a sortable paged table, CSV export.
import { h, replace, debounce, keepFocus } from '../dom.js';
import {
  priorityBadge, segmentChip, syncPill, scanStatePill, scoreCell, icon, pager, field, select,
  skeletonRows, errorState, categoryList, crmStatusCell, crmOwner,
} from '../components.js';
import {
  num, timeEl, tenantSize, plural, SEGMENTS, SYNC_STATUSES, SYNC_STATUS_LABEL, SCAN_STATES, SCAN_STATE_LABEL,
} from '../format.js';
import { openLeadDetail } from './lead-detail.js';

const STORAGE_KEY = 'hunter.leads.query';
const FILTERS = ['q', 'segment', 'provider', 'priority', 'minScore', 'syncStatus', 'scanState'];
const DEFAULT_SORT = 'score';
const DEFAULT_LIMIT = 50;
const SORTS = ['score', '-score', 'domain', 'referrals', 'updated'];
const LIMITS = [25, 50, 100, 200];

const COLUMNS = [
  { key: 'priority', label: 'P', title: 'Priority category (P1 hottest … P6 archive)' },
  { key: 'domain', label: 'Domain', sort: { asc: 'domain' } },
  { key: 'company', label: 'Company' },
  { key: 'provider', label: 'Provider' },
  { key: 'tenant', label: 'Tenant size' },
  { key: 'referrals', label: 'Referrals', sort: { desc: 'referrals' }, numeric: true },
  { key: 'segment', label: 'Segment' },
  { key: 'score', label: 'Score', sort: { desc: 'score', asc: '-score' } },
  { key: 'scan', label: 'Scan' },
  { key: 'dynamics', label: 'Dynamics', title: "Hunter's push of the lead to Dynamics 365" },
  { key: 'crm', label: 'CRM status', title: 'What sellers did with the lead in Dynamics 365: its status, the reason and the opportunity' },
  { key: 'owner', label: 'Owner', title: "The lead's owner in Dynamics 365" },
  { key: 'updated', label: 'Updated', sort: { desc: 'updated' } },
];

/** Filters, sort and page size from URL parameters (unknown or bad values dropped). */
function stateFrom(params) {
  const filters = {};
  for (const key of FILTERS) {
    const v = params.get(key);
    if (v != null && v !== '') filters[key] = v;
  }
  const sort = SORTS.includes(params.get('sort')) ? params.get('sort') : DEFAULT_SORT;
  const limit = LIMITS.includes(Number(params.get('limit'))) ? Number(params.get('limit')) : DEFAULT_LIMIT;
  return { filters, sort, limit };
}

function paramsOf(state) {
  const p = new URLSearchParams();
  for (const key of FILTERS) if (state.filters[key]) p.set(key, state.filters[key]);
  if (state.sort !== DEFAULT_SORT) p.set('sort', state.sort);
  if (state.limit !== DEFAULT_LIMIT) p.set('limit', String(state.limit));
  return p;
}

/** The query the API gets: the filters (P-category as priorityCategory), sort, limit, cursor. */
function apiQuery(state, cursor) {
  const f = state.filters;
  return {
    segment: f.segment, provider: f.provider, minScore: f.minScore, syncStatus: f.syncStatus,
    scanState: f.scanState, q: f.q, priorityCategory: f.priority, sort: state.sort,
    limit: state.limit, cursor,
  };
}

export function mount(container, ctx, initialParams) {
  let state;
  let cursors = [null]; // the cursor of each page seen so far: "previous" pops
  let page = 0;
  let nextCursor = null;
  let loadSeq = 0;
  let stats = null;
  let loadedOnce = false;
  let lastItems = [];

  /* ---------- layout ---------- */
  const kpis = h('div', { class: 'kpis', role: 'group', 'aria-label': 'Key figures (click to filter)' });
  const searchInput = h('input', { type: 'search', class: 'input', placeholder: 'Domain or company', autocomplete: 'off', id: 'lead-search' });
  const segmentSelect = select([['', 'All segments'], ...SEGMENTS.map((s) => [s, s])], '', { id: 'lead-segment' });
  const providerSelect = select([['', 'All providers']], '', { id: 'lead-provider' });
  const prioritySelect = select([['', 'All priorities']], '', { id: 'lead-priority' });
  const minScoreInput = h('input', { type: 'number', class: 'input input-num', min: '0', max: '100', step: '1', inputmode: 'numeric', placeholder: '0', id: 'lead-min-score' });
  const syncSelect = select([['', 'Any status'], ...SYNC_STATUSES.map((s) => [s, SYNC_STATUS_LABEL[s]])], '', { id: 'lead-sync' });
  const scanSelect = select([['', 'Any scan state'], ...SCAN_STATES.map((s) => [s, SCAN_STATE_LABEL[s]])], '', { id: 'lead-scan' });
  const clearButton = h('button', { type: 'button', class: 'btn btn-ghost', id: 'clear-filters' }, 'Clear');
  // On a phone only the search shows; "Filters" opens the rest.
  const moreToggle = h('button', { type: 'button', class: 'btn more-toggle', 'aria-expanded': 'false', 'aria-controls': 'lead-more-filters' }, 'Filters');
  const filterForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter leads' },
    field('Search', searchInput, 'field-grow'),
    h('div', { class: 'field field-toggle' }, moreToggle),
    h('div', { class: 'filters-more', id: 'lead-more-filters' },
      field('Segment', segmentSelect),
      field('Provider', providerSelect),
      field('Priority', prioritySelect),
      field('Min score', minScoreInput, 'field-narrow'),
      field('Dynamics', syncSelect),
      field('Scan', scanSelect)),
    h('div', { class: 'field field-actions' }, clearButton));
  filterForm.addEventListener('submit', (e) => e.preventDefault());
  moreToggle.addEventListener('click', () => {
    const open = !filterForm.classList.contains('show-more');
    filterForm.classList.toggle('show-more', open);
    moreToggle.setAttribute('aria-expanded', String(open));
  });

  const summary = h('div', { class: 'results-summary', 'aria-live': 'polite', id: 'leads-summary' });
  const exportButton = h('button', { type: 'button', class: 'btn', id: 'export-csv' }, icon('download'), 'Export CSV');
  const thead = h('thead');
  const tbody = h('tbody');
  const table = h('table', { class: 'table leads-table', id: 'leads-table', 'aria-describedby': 'leads-summary' },
    h('caption', { class: 'sr-only' }, 'Leads. Press Enter on a row to open its details.'), thead, tbody);
  const tableWrap = h('div', { class: 'table-wrap' }, table);
  const stateBox = h('div', { class: 'state-box' });
  const pagerBox = h('div', { class: 'pager-box' });

  replace(container,
    h('div', { class: 'view-header' },
      h('div', {}, h('h1', {}, 'Leads'),
        h('p', { class: 'view-sub' }, 'Companies that sent referrals, scored by how their mail domain is run. Open a row for the why and the next step.'))),
    kpis, filterForm,
    h('div', { class: 'results-bar' }, summary, exportButton),
    tableWrap, stateBox, pagerBox);

  /* ---------- state ---------- */
  function applyParams(params) {
    let p = params;
    if (![...p.keys()].length) {
      const saved = localStorage.getItem(STORAGE_KEY);
      if (saved) p = new URLSearchParams(saved);
    }
    state = stateFrom(p);
    persist();
    syncControls();
  }

  function persist() {
    const p = paramsOf(state);
    ctx.setHash('leads', p);
    if (p.toString()) localStorage.setItem(STORAGE_KEY, p.toString());
    else localStorage.removeItem(STORAGE_KEY);
  }

  function syncControls() {
    const f = state.filters;
    if (document.activeElement !== searchInput) searchInput.value = f.q || '';
    segmentSelect.value = f.segment || '';
    ensureOption(providerSelect, f.provider);
    providerSelect.value = f.provider || '';
    ensureOption(prioritySelect, f.priority);
    prioritySelect.value = f.priority || '';
    if (document.activeElement !== minScoreInput) minScoreInput.value = f.minScore || '';
    syncSelect.value = f.syncStatus || '';
    scanSelect.value = f.scanState || '';
    const active = FILTERS.some((k) => f[k]);
    clearButton.disabled = !active;
    const more = FILTERS.filter((k) => k !== 'q' && f[k]).length;
    replace(moreToggle, more ? `Filters · ${more}` : 'Filters');
    renderKpis();
  }

  function ensureOption(sel, value) {
    if (value && ![...sel.options].some((o) => o.value === value)) sel.append(h('option', { value }, value));
  }

  function setFilters(changes, { replaceAll = false } = {}) {
    const filters = replaceAll ? {} : { ...state.filters };
    for (const [k, v] of Object.entries(changes)) {
      if (v == null || v === '') delete filters[k];
      else filters[k] = String(v);
    }
    state = { ...state, filters };
    resetPaging();
    persist();
    syncControls();
    load();
  }

  function resetPaging() {
    cursors = [null];
    page = 0;
  }

  /* ---------- filter events ---------- */
  const searchChanged = debounce(() => setFilters({ q: searchInput.value.trim() }), 300);
  searchInput.addEventListener('input', searchChanged);
  searchInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      searchChanged.cancel();
      setFilters({ q: searchInput.value.trim() });
    }
  });
  segmentSelect.addEventListener('change', () => setFilters({ segment: segmentSelect.value }));
  providerSelect.addEventListener('change', () => setFilters({ provider: providerSelect.value }));
  prioritySelect.addEventListener('change', () => setFilters({ priority: prioritySelect.value }));
  syncSelect.addEventListener('change', () => setFilters({ syncStatus: syncSelect.value }));
  scanSelect.addEventListener('change', () => setFilters({ scanState: scanSelect.value }));
  const minScoreChanged = debounce(() => {
    const raw = minScoreInput.value.trim();
    const n = Number(raw);
    if (raw !== '' && (!Number.isInteger(n) || n < 0 || n > 100)) {
      minScoreInput.setCustomValidity('A whole number from 0 to 100');
      minScoreInput.reportValidity();
      return;
    }
    minScoreInput.setCustomValidity('');
    setFilters({ minScore: raw === '' || n === 0 ? '' : String(n) });
  }, 300);
  minScoreInput.addEventListener('input', minScoreChanged);
  clearButton.addEventListener('click', clearAll);

  function clearAll() {
    searchChanged.cancel();
    minScoreChanged.cancel();
    searchInput.value = '';
    minScoreInput.value = '';
    setFilters({}, { replaceAll: true });
  }

  exportButton.addEventListener('click', async () => {
    if (exportButton.getAttribute('aria-disabled') === 'true') return;
    exportButton.setAttribute('aria-disabled', 'true');
    exportButton.classList.add('is-busy');
    try {
      const query = apiQuery(state);
      delete query.limit;
      delete query.cursor;
      const { blob, filename } = await ctx.api.download('/leads/export.csv', query);
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: filename || 'hunter-leads.csv', class: 'sr-only' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      ctx.toast('CSV exported', 'success');
    } catch (err) {
      if (err.status !== 401) ctx.toast(`Export failed: ${err.message}`, 'error');
    } finally {
      exportButton.removeAttribute('aria-disabled');
      exportButton.classList.remove('is-busy');
    }
  });

  /* ---------- KPI cards ---------- */
  function kpiCard({ id, label, value, hint, filters, tone }) {
    const active = filters && JSON.stringify(normalize(filters)) === JSON.stringify(normalize(state.filters));
    return h('button', {
      type: 'button',
      class: ['kpi', tone ? `kpi-${tone}` : ''],
      'aria-pressed': active ? 'true' : 'false',
      'data-kpi': id,
      onclick: () => setFilters(filters, { replaceAll: true }),
    },
    h('span', { class: 'kpi-label' }, label),
    h('span', { class: 'kpi-value' }, value == null ? '…' : num(value)),
    h('span', { class: 'kpi-hint' }, hint || '\u00a0'));
  }

  function normalize(filters) {
    return Object.fromEntries(Object.entries(filters).filter(([, v]) => v).sort(([a], [b]) => a.localeCompare(b)));
  }

  function renderKpis() {
    const st = stats;
    const p1 = st?.priorityCategories?.P1 ?? 0;
    const p2 = st?.priorityCategories?.P2 ?? 0;
    const failed = st?.syncStatuses?.failed ?? 0;
    keepFocus(kpis, () => replace(kpis,
      kpiCard({ id: 'leads', label: 'Leads', value: st ? st.leads : null, hint: st ? `${num(st.scored)} scored` : '', filters: {} }),
      kpiCard({ id: 'migration', label: 'Migration candidates', value: st ? st.segments?.Migration ?? 0 : null, hint: 'not on Microsoft 365 yet', filters: { segment: 'Migration' }, tone: 'migration' }),
      kpiCard({ id: 'p1p2', label: 'P1 / P2 leads', value: st ? p1 + p2 : null, hint: st ? `P1 ${num(p1)} · P2 ${num(p2)}` : '', filters: { priority: 'P1,P2' }, tone: 'hot' }),
      kpiCard({ id: 'synced', label: 'Pushed to Dynamics', value: st ? st.syncStatuses?.synced ?? 0 : null, hint: st ? `${num(st.syncStatuses?.pending ?? 0)} pending` : '', filters: { syncStatus: 'synced' }, tone: 'ok' }),
      kpiCard({ id: 'failed', label: 'Failed pushes', value: st ? failed : null, hint: failed ? 'need a look' : 'none', filters: { syncStatus: 'failed' }, tone: failed ? 'bad' : '' })));
  }

  async function loadStats(refresh = false) {
    try {
      stats = await ctx.stats(refresh);
    } catch (err) {
      if (err.status === 401) return;
      stats = null;
    }
    // Provider options from stats.providers; P-categories from stats.categories.
    const providers = Object.keys(stats?.providers || {}).sort((a, b) => a.localeCompare(b));
    replace(providerSelect, h('option', { value: '' }, 'All providers'),
      providers.map((p) => h('option', { value: p }, `${p} (${num(stats.providers[p])})`)));
    const cats = categoryList();
    replace(prioritySelect, h('option', { value: '' }, 'All priorities'),
      h('option', { value: 'P1,P2' }, 'P1 + P2 (act now)'),
      cats.map((c) => h('option', { value: c.category }, `${c.category} · ${c.label}`)));
    syncControls();
    if (loadedOnce) renderHead();
  }

  /* ---------- table ---------- */
  function sortOf(column) {
    if (!column.sort) return null;
    if (state.sort === column.sort.desc) return 'descending';
    if (state.sort === column.sort.asc) return 'ascending';
    return null;
  }

  function nextSort(column) {
    const { asc, desc } = column.sort;
    const current = sortOf(column);
    if (asc && desc) return current === 'descending' ? asc : desc;
    if (current) return DEFAULT_SORT === (asc || desc) ? (asc || desc) : DEFAULT_SORT;
    return asc || desc;
  }

  function renderHead() {
    const row = h('tr');
    for (const column of COLUMNS) {
      const dir = sortOf(column);
      const th = h('th', { scope: 'col', class: [`c-${column.key}`, column.numeric ? 'num' : ''], title: column.title || null });
      if (column.sort) {
        th.setAttribute('aria-sort', dir || 'none');
        const oneWay = !(column.sort.asc && column.sort.desc);
        const order = column.key === 'domain' ? 'A to Z' : column.key === 'updated' ? 'newest first' : 'most first';
        const hint = !oneWay
          ? `Sort by ${column.label.toLowerCase()}, ${dir === 'descending' ? 'lowest first' : 'highest first'}`
          : dir ? `Sorted by ${column.label.toLowerCase()}, ${order}: click for the default order (score)`
            : `Sort by ${column.label.toLowerCase()}, ${order}`;
        th.append(h('button', {
          type: 'button', class: ['sort-btn', dir ? 'is-sorted' : ''],
          'data-sort': column.key,
          title: hint,
          onclick: () => {
            state = { ...state, sort: nextSort(column) };
            resetPaging();
            persist();
            load();
          },
        }, column.label, icon(dir === 'ascending' ? 'arrowUp' : dir === 'descending' ? 'arrowDown' : 'sort', 'sort-icon')));
      } else {
        th.append(column.key === 'priority' ? h('abbr', { title: column.title }, column.label) : column.label);
      }
      row.append(th);
    }
    keepFocus(thead, () => replace(thead, row));
  }

  function cell(key, label, ...content) {
    return h('td', { class: `c-${key}`, 'data-label': label }, content);
  }

  function leadRow(lead) {
    const tr = h('tr', {
      class: ['lead-row', `row-${(lead.priorityCategory || 'p6').toLowerCase()}`],
      tabindex: '0',
      'data-domain': lead.domain,
      'aria-label': `${lead.domain}${lead.companyName ? `, ${lead.companyName}` : ''}: open details`,
    },
    cell('priority', 'Priority', priorityBadge(lead.priorityCategory, lead.priorityCategoryLabel, lead.sellerAction)),
    cell('domain', 'Domain', h('span', { class: 'domain' }, lead.domain)),
    cell('company', 'Company', lead.companyName || h('span', { class: 'muted' }, '—')),
    cell('provider', 'Provider', lead.provider || '—'),
    cell('tenant', 'Tenant', tenantSize(lead.tenantSize)),
    h('td', { class: 'c-referrals num', 'data-label': 'Referrals', title: Object.entries(lead.referralTypes || {}).map(([t, n]) => `${t}: ${n}`).join(', ') || null }, num(lead.referralCount)),
    cell('segment', 'Segment', segmentChip(lead.segment)),
    cell('score', 'Score', scoreCell(lead.score)),
    cell('scan', 'Scan', scanStatePill(lead.scanState, lead.scanDetail)),
    cell('dynamics', 'Dynamics', syncPill(lead.syncStatus, lead.lastError)),
    h('td', { class: 'c-crm', 'data-label': 'CRM status', 'data-testid': 'crm-status' }, crmStatusCell(lead)),
    h('td', { class: 'c-owner', 'data-label': 'Owner', 'data-testid': 'crm-owner' }, crmOwner(lead)),
    cell('updated', 'Updated', timeEl(lead.updatedAt)));
    const open = () => openDetail(lead.domain, tr);
    tr.addEventListener('click', (e) => {
      if (e.target.closest('a, button')) return;
      open();
    });
    tr.addEventListener('keydown', (e) => {
      if (e.target !== tr) return;
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        open();
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const sibling = e.key === 'ArrowDown' ? tr.nextElementSibling : tr.previousElementSibling;
        sibling?.focus();
      }
    });
    return tr;
  }

  function openDetail(domain, row) {
    openLeadDetail(ctx, domain, {
      returnFocus: () => tbody.querySelector(`tr[data-domain="${CSS.escape(domain)}"]`) || row,
      onChanged: () => {
        load({ quiet: true });
        loadStats(true);
      },
    });
  }

  function describe(count) {
    const bits = [];
    const f = state.filters;
    if (f.q) bits.push(`matching “${f.q}”`);
    if (f.segment) bits.push(`segment ${f.segment}`);
    if (f.provider) bits.push(`on ${f.provider}`);
    if (f.priority) bits.push(f.priority.replace(',', ' + '));
    if (f.minScore) bits.push(`score ≥ ${f.minScore}`);
    if (f.syncStatus) bits.push(`Dynamics ${SYNC_STATUS_LABEL[f.syncStatus] || f.syncStatus}`);
    if (f.scanState) bits.push(`scan ${SCAN_STATE_LABEL[f.scanState] || f.scanState}`);
    const start = page * state.limit + 1;
    const range = count ? `${num(start)}–${num(start + count - 1)}` : '0';
    const total = !FILTERS.some((k) => f[k]) && stats ? ` of ${plural(stats.leads, 'lead', 'leads')}` : '';
    return `Showing ${range}${total}${bits.length ? ` · ${bits.join(', ')}` : ''}`;
  }

  async function load({ quiet = false } = {}) {
    const seq = ++loadSeq;
    container.dataset.state = 'loading';
    table.setAttribute('aria-busy', 'true');
    if (!loadedOnce) {
      renderHead();
      replace(tbody, skeletonRows(COLUMNS.length));
    } else if (!quiet) {
      table.classList.add('is-loading');
    }
    let result;
    try {
      result = await ctx.api.get('/leads', apiQuery(state, cursors[page]));
    } catch (err) {
      if (seq !== loadSeq) return;
      table.removeAttribute('aria-busy');
      table.classList.remove('is-loading');
      if (err.status === 401) return;
      container.dataset.state = 'error';
      tableWrap.hidden = true;
      replace(pagerBox);
      replace(summary, '');
      if (err.status === 400 && /cursor/i.test(err.message)) {
        resetPaging();
      }
      replace(stateBox, errorState(err, () => load()));
      return;
    }
    if (seq !== loadSeq) return;
    loadedOnce = true;
    table.removeAttribute('aria-busy');
    table.classList.remove('is-loading');
    renderHead();

    const items = result.items || [];
    lastItems = items;
    nextCursor = result.nextCursor || null;
    replace(summary, describe(items.length));

    if (!items.length && page === 0) {
      container.dataset.state = 'empty';
      tableWrap.hidden = true;
      replace(pagerBox);
      const filtered = FILTERS.some((k) => state.filters[k]);
      replace(stateBox, h('div', { class: 'state state-empty', role: 'status' },
        h('strong', {}, filtered ? 'No leads match these filters' : 'No leads yet'),
        h('p', {}, filtered ? 'Try a lower minimum score or another segment.' : 'Leads appear here after a sync has fetched referrals from Partner Center.'),
        filtered ? h('button', { type: 'button', class: 'btn', onclick: clearAll, 'data-action': 'clear-empty' }, 'Clear filters') : null));
      return;
    }
    replace(stateBox);
    tableWrap.hidden = false;
    replace(tbody, items.map(leadRow));
    container.dataset.state = 'ready';
    keepFocus(pagerBox, () => replace(pagerBox, pager({
      page,
      hasPrev: page > 0,
      hasNext: Boolean(nextCursor),
      limit: state.limit,
      sizes: LIMITS,
      label: 'Lead pages',
      onPrev: () => {
        if (page === 0) return;
        page -= 1;
        cursors = cursors.slice(0, page + 1);
        load();
        focusTableTop();
      },
      onNext: () => {
        if (!nextCursor) return;
        cursors = [...cursors.slice(0, page + 1), nextCursor];
        page += 1;
        load();
        focusTableTop();
      },
      onLimit: (limit) => {
        state = { ...state, limit };
        resetPaging();
        persist();
        load();
      },
    })));
  }

  function focusTableTop() {
    tableWrap.scrollIntoView({ block: 'nearest' });
  }

  const onSynced = () => {
    loadStats(true);
    load({ quiet: true });
  };
  ctx.events.addEventListener('synced', onSynced);

  applyParams(initialParams);
  renderKpis();
  loadStats();
  load();

  return {
    update(params) {
      const before = paramsOf(state).toString();
      applyParams(params);
      if (paramsOf(state).toString() !== before) {
        resetPaging();
        load();
      }
    },
    unmount() {
      ctx.events.removeEventListener('synced', onSynced);
      searchChanged.cancel();
      minScoreChanged.cancel();
    },
    get items() {
      return lastItems;
    },
  };
}
