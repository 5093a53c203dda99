// Scan one domain (POST /scan) without creating a lead: provider, score and why, segment,
// P-category, DNS signals.
import { h, replace } from '../dom.js';
import {
  breakdownList, signalsPanel, sellerGuidance, scanStatePill, scoreCell, priorityBadge, spinner, icon,
} from '../components.js';
import { timeEl, tenantSize, SCAN_STATE_MEANING, SCAN_STATE_LABEL } from '../format.js';

/** Light client-side check; the server has the final word. */
function checkDomain(text) {
  const value = text.trim();
  if (!value) return 'Enter a domain, for example contoso.com';
  if (/\s/.test(value)) return 'A domain has no spaces, for example contoso.com';
  const host = value.replace(/^[a-z]+:\/\//i, '').replace(/[/?#].*$/, '').replace(/^.*@/, '');
  if (!host.includes('.')) return 'Enter a full domain with its ending, for example contoso.com';
  return null;
}

export function mount(container, ctx, initialParams) {
  const input = h('input', {
    type: 'text', id: 'scan-domain', class: 'input input-lg', placeholder: 'contoso.com', autocomplete: 'off',
    spellcheck: 'false', autocapitalize: 'off', 'aria-describedby': 'scan-help scan-error', required: true,
  });
  const error = h('p', { id: 'scan-error', class: 'field-error', 'aria-live': 'assertive' });
  const button = h('button', { type: 'submit', class: 'btn btn-primary btn-lg', id: 'scan-submit' }, icon('scan'), 'Scan');
  const form = h('form', { class: 'scan-form card', novalidate: true },
    h('label', { for: 'scan-domain', class: 'scan-label' }, 'Domain'),
    h('div', { class: 'scan-row' }, input, button),
    h('p', { id: 'scan-help', class: 'muted small' }, 'A company domain, an e-mail address or a web address. Nothing is saved: this only shows how Hunter would judge the domain.'),
    error);
  const result = h('div', { class: 'scan-result', id: 'scan-result', 'aria-live': 'polite' });

  replace(container,
    h('div', { class: 'view-header' }, h('div', {}, h('h1', {}, 'Scan a domain'),
      h('p', { class: 'view-sub' }, 'Check any company’s mail setup (MX, SPF, DKIM, DMARC) and see its score before it becomes a lead.'))),
    form, result);

  let seq = 0;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const problem = checkDomain(input.value);
    if (problem) {
      error.textContent = problem;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    error.textContent = '';
    input.removeAttribute('aria-invalid');
    const domain = input.value.trim();
    ctx.setHash('scan', new URLSearchParams({ domain }));
    const mySeq = ++seq;
    button.disabled = true;
    replace(result, spinner(`Scanning ${domain}…`));
    try {
      const answer = await ctx.api.post('/scan', { domain });
      if (mySeq !== seq) return;
      replace(result, resultCard(answer));
    } catch (err) {
      if (mySeq !== seq || err.status === 401) return;
      replace(result);
      if (err.status === 400) {
        error.textContent = `That is not a domain Hunter can scan: ${err.message}`;
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      } else {
        replace(result, h('div', { class: 'state state-error', role: 'alert' }, h('strong', {}, 'The scan failed'), h('p', {}, err.message)));
      }
    } finally {
      if (mySeq === seq) button.disabled = false;
    }
  });

  const preset = initialParams.get('domain');
  if (preset) {
    input.value = preset;
    form.requestSubmit();
  } else {
    ctx.setHash('scan');
    input.focus();
  }
  return {};
}

function resultCard(answer) {
  const scan = answer.scan || {};
  const a = answer.assessment;
  const state = scan.state || 'pending';
  const head = h('div', { class: 'result-head' },
    h('div', {},
      h('h2', { class: 'result-domain' }, answer.domain || scan.domain),
      h('div', { class: 'muted small' }, 'Scanned ', timeEl(scan.scannedAt))),
    scanStatePill(state, scan.detail));

  if (state !== 'ok' && state !== 'no_mx' && !a) {
    return h('article', { class: 'card result-card result-failed', 'data-state': state },
      head,
      h('div', { class: 'state state-error', role: 'alert' },
        icon('alert', 'state-icon'),
        h('div', {},
          h('strong', {}, `${SCAN_STATE_LABEL[state] || state}: ${SCAN_STATE_MEANING[state] || 'the scan did not succeed'}.`),
          h('p', {}, state === 'nxdomain'
            ? 'Check the spelling. A domain that does not exist has no mail and cannot be scored.'
            : 'No score without DNS answers: check the spelling or try again later. (Running hunter-local? Only its seeded companies’ domains resolve there.)'),
          scan.detail ? h('details', {}, h('summary', {}, 'DNS details'), h('pre', { class: 'raw-json small' }, scan.detail)) : null)));
  }

  return h('article', { class: 'card result-card', 'data-state': state },
    head,
    a ? h('div', { class: 'result-grid' },
      h('div', { class: 'result-score' },
        h('span', { class: 'detail-score-num', 'data-testid': 'scan-score' }, a.score == null ? '—' : String(a.score)),
        h('span', { class: 'detail-score-label' }, 'score'),
        scoreCell(a.score)),
      h('dl', { class: 'facts facts-grid' },
        h('div', { class: 'fact' }, h('dt', {}, 'Provider'), h('dd', { 'data-testid': 'scan-provider' }, a.provider || '—')),
        h('div', { class: 'fact' }, h('dt', {}, 'Tenant size'), h('dd', {}, tenantSize(a.tenantSize))),
        h('div', { class: 'fact' }, h('dt', {}, 'Priority'), h('dd', {}, priorityBadge(a.priorityCategory, a.priorityCategoryLabel, a.sellerAction))))) : null,
    state === 'no_mx' ? h('p', { class: 'notice' }, icon('alert'), SCAN_STATE_MEANING.no_mx) : null,
    a ? h('section', { class: 'detail-section' }, h('h3', {}, 'What it means for a seller'), sellerGuidance(a)) : null,
    a ? h('section', { class: 'detail-section' }, h('h3', {}, 'Why this score'), breakdownList(a.breakdown, a.score)) : null,
    h('section', { class: 'detail-section' }, h('h3', {}, 'Mail signals and risks'), signalsPanel(scan.signals, a?.breakdown)));
}
