// Sync history: a bar chart of fetched / eligible / skipped per run (inline SVG) and the runs table.
import { h, s, replace, debounce, keepFocus } from '../dom.js';
import { pager, skeletonRows, errorState, runStatusPill, spinner, skipLabel } from '../components.js';
import { num, timeEl, duration, clock, shortDate, absolute } from '../format.js';

const CHART_RUNS = 24;
const LIMITS = [10, 20, 50];
const SERIES = [
  { key: 'fetched', label: 'Fetched' },
  { key: 'eligible', label: 'Eligible' },
  { key: 'skipped', label: 'Skipped' },
];

function skippedTotal(run) {
  return Object.values(run.skipped || {}).reduce((a, b) => a + (Number(b) || 0), 0);
}

function valueOf(run, key) {
  return key === 'skipped' ? skippedTotal(run) : Number(run[key]) || 0;
}

/** A round axis maximum and its ticks: 0, step, 2·step, … */
function niceScale(max, ticks = 4) {
  if (max <= 0) return { top: 4, step: 1 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  return { top: Math.ceil(max / step) * step, step };
}

export function drawChart(runsNewestFirst, width) {
  const runs = [...runsNewestFirst].slice(0, CHART_RUNS).reverse();
  const W = Math.max(300, Math.floor(width));
  const H = 250;
  // Runs started in the same minute get seconds in their labels.
  const minutes = runs.map((r) => clock(r.startedAt));
  const withSeconds = new Set(minutes).size < minutes.length;
  const labelWidth = Math.max(0, ...runs.map((r) => clock(r.startedAt, withSeconds).length)) * 6.4 + 10;
  // Room on the right for the newest run's label.
  const m = { top: 14, right: Math.max(12, Math.round(labelWidth / 2 - 6)), bottom: 44, left: 46 };
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const maxValue = Math.max(0, ...runs.flatMap((r) => SERIES.map((se) => valueOf(r, se.key))));
  const { top, step } = niceScale(maxValue);
  const y = (v) => m.top + plotH - (v / top) * plotH;

  const last = runsNewestFirst[0];
  const summary = last
    ? `Referrals per sync run, oldest to newest, ${runs.length} runs. Latest: ${num(last.fetched)} fetched, ${num(last.eligible)} eligible, ${num(skippedTotal(last))} skipped.`
    : 'No sync runs yet.';
  const svg = s('svg', {
    class: 'chart', viewBox: `0 0 ${W} ${H}`, width: String(W), height: String(H),
    role: 'img', 'aria-label': summary, 'data-runs': String(runs.length),
  });

  // Grid lines and y labels.
  for (let v = 0; v <= top + 1e-9; v += step) {
    const yy = Math.round(y(v)) + 0.5;
    svg.append(
      s('line', { class: v === 0 ? 'axis' : 'grid', x1: String(m.left), x2: String(W - m.right), y1: String(yy), y2: String(yy) }),
      s('text', { class: 'tick', x: String(m.left - 8), y: String(yy + 4), 'text-anchor': 'end' }, num(Math.round(v * 100) / 100)));
  }
  svg.append(s('text', {
    class: 'axis-title', x: '12', y: String(m.top + plotH / 2), transform: `rotate(-90 12 ${m.top + plotH / 2})`, 'text-anchor': 'middle',
  }, 'referrals'));

  if (!runs.length) return svg;

  const groupW = plotW / runs.length;
  const barW = Math.max(3, Math.min(16, (groupW * 0.78) / SERIES.length));
  // Labels never overlap: as many as fit, counted back from the newest run.
  const labelEvery = Math.max(1, Math.ceil(labelWidth / groupW));
  const firstLabelled = (runs.length - 1) % labelEvery;
  let lastDay = '';
  runs.forEach((run, i) => {
    const gx = m.left + i * groupW + (groupW - barW * SERIES.length) / 2;
    const g = s('g', { class: ['run', run.status === 'failed' ? 'run-failed' : ''].join(' '), 'data-run-id': run.id });
    SERIES.forEach((se, k) => {
      const v = valueOf(run, se.key);
      // A value above zero stays visible next to a large one.
      const yy = v > 0 ? Math.min(y(v), m.top + plotH - 2) : y(0);
      g.append(s('rect', {
        class: `bar bar-${se.key}`,
        x: (gx + k * barW).toFixed(1), y: yy.toFixed(1), width: (barW - 1).toFixed(1), height: Math.max(0, m.top + plotH - yy).toFixed(1),
      }, s('title', {}, `${shortDate(run.startedAt)}: ${num(v)} ${se.label.toLowerCase()}`)));
    });
    if (run.status === 'failed') {
      const cx = m.left + i * groupW + groupW / 2;
      g.append(s('path', { class: 'fail-mark', d: `M${cx - 5} ${m.top + plotH - 12}l5 -9l5 9z` },
        s('title', {}, `Failed: ${run.error || 'no error message'}`)));
    }
    svg.append(g);
    const day = shortDate(run.startedAt).split(',')[0];
    if ((runs.length - 1 - i) % labelEvery === 0) {
      const center = m.left + i * groupW + groupW / 2;
      // Labels at the edges lean inwards instead of being cut off.
      let anchor = 'middle';
      let cx = center;
      if (center + labelWidth / 2 > W - 2) {
        anchor = 'end';
        cx = W - 2;
      } else if (center - labelWidth / 2 < 2) {
        anchor = 'start';
        cx = 2;
      }
      svg.append(s('text', { class: 'tick', x: cx.toFixed(1), y: String(m.top + plotH + 16), 'text-anchor': anchor }, clock(run.startedAt, withSeconds)));
      if (day !== lastDay || i === firstLabelled) {
        svg.append(s('text', { class: 'tick tick-sub', x: cx.toFixed(1), y: String(m.top + plotH + 30), 'text-anchor': anchor }, day));
        lastDay = day;
      }
    }
  });
  return svg;
}

function legend() {
  return h('ul', { class: 'legend', 'aria-hidden': 'true' },
    SERIES.map((se) => h('li', {}, h('span', { class: `swatch sw-${se.key}` }), se.label)),
    h('li', {}, h('span', { class: 'swatch sw-failed' }), 'Failed run'));
}

function skippedChips(run) {
  const entries = Object.entries(run.skipped || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return h('span', { class: 'muted' }, '0');
  return h('div', { class: 'chips' }, entries.map(([reason, n]) => h('span', { class: 'chip chip-count', title: reason }, `${skipLabel(reason)} ${num(n)}`)));
}

export function mount(container, ctx) {
  let limit = 20;
  let cursors = [null];
  let page = 0;
  let seq = 0;
  let chartRuns = [];

  const chartBox = h('div', { class: 'chart-box', id: 'history-chart' });
  const tbody = h('tbody');
  const table = h('table', { class: 'table runs-table', id: 'runs-table' },
    h('caption', { class: 'sr-only' }, 'Sync runs, newest first'),
    h('thead', {}, h('tr', {}, ['Started', 'Duration', 'Status', 'Pages', 'Fetched', 'Stored', 'Eligible', 'Skipped by reason', 'Error']
      .map((t, i) => h('th', { scope: 'col', class: [i === 0 ? 'sticky-col' : '', i >= 3 && i <= 6 ? 'num' : ''] }, t)))),
    tbody);
  const wrap = h('div', { class: 'table-wrap table-scroll' }, table);
  const stateBox = h('div', { class: 'state-box' });
  const pagerBox = h('div', { class: 'pager-box' });

  replace(container,
    h('div', { class: 'view-header' }, h('div', {}, h('h1', {}, 'Sync history'),
      h('p', { class: 'view-sub' }, 'Each run fetches changed referrals from Partner Center; eligible ones become or update leads.'))),
    h('section', { class: 'card chart-card', 'aria-labelledby': 'chart-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'chart-title' }, 'Referrals per run'), legend()),
      chartBox),
    h('section', { class: 'runs-section', 'aria-labelledby': 'runs-title' },
      h('h2', { id: 'runs-title', class: 'section-title' }, 'Runs'),
      wrap, stateBox, pagerBox));

  function renderChart() {
    const width = chartBox.clientWidth || 800;
    if (!chartRuns.length) {
      replace(chartBox, h('p', { class: 'muted chart-empty' }, 'No sync runs yet. Click “Sync now” to fetch referrals.'));
      return;
    }
    replace(chartBox, drawChart(chartRuns, width));
  }

  async function loadChart() {
    if (!chartBox.firstChild) replace(chartBox, spinner('Loading runs…'));
    try {
      const result = await ctx.api.get('/sync-runs', { limit: CHART_RUNS });
      chartRuns = result.items || [];
      renderChart();
    } catch (err) {
      if (err.status === 401) return;
      replace(chartBox, errorState(err, loadChart));
    }
  }

  function runRow(run) {
    return h('tr', { 'data-run-id': run.id },
      h('td', { class: 'sticky-col', 'data-label': 'Started' }, timeEl(run.startedAt), h('div', { class: 'cell-sub' }, absolute(run.startedAt))),
      h('td', { 'data-label': 'Duration' }, run.status === 'running' ? 'running…' : duration(run.startedAt, run.finishedAt)),
      h('td', { 'data-label': 'Status' }, runStatusPill(run.status, run.error)),
      h('td', { class: 'num' }, num(run.pages)),
      h('td', { class: 'num' }, num(run.fetched)),
      h('td', { class: 'num' }, num(run.stored)),
      h('td', { class: 'num' }, num(run.eligible)),
      h('td', {}, skippedChips(run)),
      h('td', { class: 'c-error' }, run.error ? h('span', { class: 'text-danger' }, run.error) : h('span', { class: 'muted' }, '—')));
  }

  async function loadTable() {
    const mySeq = ++seq;
    container.dataset.state = 'loading';
    if (!tbody.firstChild) replace(tbody, skeletonRows(9, 4));
    try {
      const result = await ctx.api.get('/sync-runs', { limit, cursor: cursors[page] });
      if (mySeq !== seq) return;
      const items = result.items || [];
      if (!items.length && page === 0) {
        wrap.hidden = true;
        replace(pagerBox);
        replace(stateBox, h('div', { class: 'state state-empty', role: 'status' }, h('strong', {}, 'No sync runs yet'), h('p', {}, 'Click “Sync now” at the top to fetch referrals from Partner Center.')));
        container.dataset.state = 'empty';
        return;
      }
      wrap.hidden = false;
      replace(stateBox);
      replace(tbody, items.map(runRow));
      container.dataset.state = 'ready';
      const next = result.nextCursor;
      keepFocus(pagerBox, () => replace(pagerBox, pager({
        page, hasPrev: page > 0, hasNext: Boolean(next), limit, sizes: LIMITS, label: 'Run pages',
        onPrev: () => { page -= 1; cursors = cursors.slice(0, page + 1); loadTable(); },
        onNext: () => { cursors = [...cursors.slice(0, page + 1), next]; page += 1; loadTable(); },
        onLimit: (n) => { limit = n; cursors = [null]; page = 0; loadTable(); },
      })));
    } catch (err) {
      if (mySeq !== seq || err.status === 401) return;
      wrap.hidden = true;
      container.dataset.state = 'error';
      replace(stateBox, errorState(err, loadTable));
    }
  }

  const onResize = debounce(renderChart, 150);
  window.addEventListener('resize', onResize);
  const onSynced = () => {
    loadChart();
    if (page === 0) loadTable();
  };
  ctx.events.addEventListener('synced', onSynced);
  ctx.setHash('history');
  loadChart();
  loadTable();

  return {
    unmount() {
      window.removeEventListener('resize', onResize);
      ctx.events.removeEventListener('synced', onSynced);
    },
  };
}
