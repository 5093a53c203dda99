// The lead detail dialog: score and why, DNS signals and risks, what it means for a seller,
// the referrals behind it, Dynamics (push now, and what sellers did there) and its audit trail,
// rescan.
import { h, replace, keepFocus } from '../dom.js';
import { seg } from '../api.js';
import {
  openDialog, priorityBadge, syncPill, scanStatePill, scoreCell, breakdownList, signalsPanel, sellerGuidance,
  spinner, errorState, icon, crmStatusPill, crmOpportunityPill, crmOwner,
} from '../components.js';
import {
  num, money, moneyMap, timeEl, tenantSize, relative, absolute, crmPulled, CRM_NOT_PULLED,
} from '../format.js';

const PUSH_POLL_MS = 400;
const PUSH_WAIT_MS = 15_000;

function section(title, ...content) {
  return h('section', { class: 'detail-section' }, h('h3', {}, title), content);
}

function fact(label, value) {
  return h('div', { class: 'fact' }, h('dt', {}, label), h('dd', {}, value));
}

export function openLeadDetail(ctx, domain, { returnFocus, onChanged } = {}) {
  let closed = false;
  const dlg = openDialog({
    title: domain,
    subtitle: '',
    className: 'drawer lead-detail',
    returnFocus,
    onClose: () => { closed = true; },
  });
  dlg.dialog.dataset.domain = domain;
  replace(dlg.body, spinner('Loading the lead…'));

  let lead = null;

  async function load() {
    try {
      lead = await ctx.api.get(`/leads/${seg(domain)}`);
      if (closed) return;
      keepFocus(dlg.body, render);
    } catch (err) {
      if (closed || err.status === 401) return;
      replace(dlg.body, errorState(err.status === 404 ? new Error(`There is no lead for ${domain} any more.`) : err, load));
    }
  }

  /* ---------- Dynamics ---------- */
  const dynamicsBox = h('div', { class: 'dynamics', 'data-testid': 'dynamics-panel' });
  const auditBox = h('div', { class: 'audit-box' });

  /** What sellers did with the lead in Dynamics 365, as Hunter last pulled it back. */
  function crmGroup(crm) {
    const heading = h('h4', { class: 'crm-heading' }, 'In Dynamics');
    if (!crmPulled(crm)) {
      return h('div', { class: 'crm-group' }, heading,
        h('p', { class: 'muted', 'data-testid': 'crm-detail-none' }, CRM_NOT_PULLED));
    }
    const reason = crm.crmStatusReason && crm.crmStatusReason !== crm.crmStatus
      ? h('span', { class: 'crm-reason' }, crm.crmStatusReason) : null;
    const opportunity = crm.crmOpportunityStatus
      ? crmOpportunityPill(crm.crmOpportunityStatus, crm.crmOpportunityId)
      : crm.crmOpportunityId
        ? h('span', { class: 'muted', title: `Opportunity ${crm.crmOpportunityId}` }, 'status not known')
        : h('span', { class: 'muted' }, 'none');
    return h('div', { class: 'crm-group' }, heading,
      h('dl', { class: 'facts' },
        fact('CRM status', h('span', { class: 'crm', 'data-testid': 'crm-detail-status' }, crmStatusPill(crm), reason)),
        fact('Owner', h('span', { 'data-testid': 'crm-detail-owner' }, crmOwner(crm))),
        fact('Opportunity', h('span', { 'data-testid': 'crm-detail-opportunity' }, opportunity)),
        fact('Changed in Dynamics', timeEl(crm.crmUpdatedAt))));
  }

  function renderDynamics(status) {
    const pushButton = h('button', { type: 'button', class: 'btn', id: 'push-now', onclick: pushNow }, icon('push'), 'Push now');
    replace(dynamicsBox,
      h('dl', { class: 'facts' },
        fact('Status', h('span', { 'data-testid': 'dynamics-status' }, syncPill(status.syncStatus, status.lastError))),
        fact('Record id', status.dynamicsId ? h('code', { class: 'record-id' }, status.dynamicsId) : h('span', { class: 'muted' }, 'not in Dynamics yet')),
        fact('Last synced', timeEl(status.lastSyncedAt)),
        fact('Attempts', num(status.syncAttempts ?? 0)),
        status.lastError ? fact('Last error', h('span', { class: 'text-danger' }, status.lastError)) : null),
      h('div', { class: 'section-actions' }, pushButton,
        h('span', { class: 'muted small' }, 'Sends this lead to Dynamics 365 now, without waiting for the next sync.')),
      // The push status may come without the pulled fields: those of the lead stay.
      crmGroup({ ...lead, ...status }));
    renderAudit(status.audit || []);
  }

  function renderAudit(audit) {
    if (!audit.length) {
      replace(auditBox, h('p', { class: 'muted' }, 'Nothing pushed yet.'));
      return;
    }
    replace(auditBox, h('ol', { class: 'audit', 'data-testid': 'audit' }, audit.map((entry) => h('li', { class: 'audit-entry' },
      h('div', { class: 'audit-head' },
        syncPill(entry.result),
        h('span', { class: 'audit-action' }, [entry.action, entry.actor].filter(Boolean).join(' · ')),
        timeEl(entry.at)),
      entry.detail ? h('div', { class: 'audit-detail' }, entry.detail) : null))));
  }

  // Busy buttons stay focusable (aria-disabled, not disabled) so keyboard focus is never lost.
  function busy(button, on) {
    if (on) button.setAttribute('aria-disabled', 'true');
    else button.removeAttribute('aria-disabled');
    button.classList.toggle('is-busy', on);
  }

  async function pushNow(event) {
    const button = event.currentTarget;
    if (button.getAttribute('aria-disabled') === 'true') return;
    busy(button, true);
    try {
      const before = await ctx.api.get(`/dynamics/status/${seg(domain)}`);
      await ctx.api.post(`/dynamics/sync/${seg(domain)}`);
      ctx.toast('Push to Dynamics queued', 'info');
      const started = Date.now();
      let status = null;
      let done = false;
      // The push is over once it was attempted again (or the record was written again) and the
      // lead is no longer pending; its audit entries come with it.
      while (!closed && Date.now() - started < PUSH_WAIT_MS) {
        status = await ctx.api.get(`/dynamics/status/${seg(domain)}`);
        const attempted = (status.syncAttempts ?? 0) > (before.syncAttempts ?? 0) || status.lastSyncedAt !== before.lastSyncedAt;
        done = attempted && status.syncStatus !== 'pending' && (status.audit || []).length > (before.audit || []).length;
        if (done) break;
        await new Promise((r) => setTimeout(r, PUSH_POLL_MS));
      }
      if (closed || !status) return;
      lead = { ...lead, ...status, audit: status.audit };
      keepFocus(dynamicsBox, () => renderDynamics(status));
      if (done && status.syncStatus === 'synced') ctx.toast('Pushed to Dynamics 365', 'success');
      else if (status.syncStatus === 'failed') ctx.toast(`Push failed: ${status.lastError || 'see the audit trail'}`, 'error');
      else ctx.toast('The push is still queued: check back in a moment', 'info');
      onChanged?.();
    } catch (err) {
      if (err.status === 401) return;
      ctx.toast(`Push failed: ${err.message}`, 'error');
      busy(button, false);
    }
  }

  /* ---------- rescan ---------- */
  async function rescan(event) {
    const button = event.currentTarget;
    if (button.getAttribute('aria-disabled') === 'true') return;
    busy(button, true);
    const oldScore = lead.score;
    try {
      const result = await ctx.api.post(`/leads/${seg(domain)}/rescan`);
      const newScore = result.lead?.score;
      const text = newScore == null
        ? `Rescan done: ${result.scan?.state || 'no score'}`
        : result.changed && oldScore !== newScore
          ? `Rescan done: score ${oldScore ?? '—'} → ${newScore}`
          : `Rescan done: score ${newScore} (unchanged)`;
      ctx.toast(text, 'success');
      await load();
      onChanged?.();
      const scoreEl = dlg.body.querySelector('.detail-score');
      scoreEl?.classList.add('flash');
    } catch (err) {
      if (err.status === 401) return;
      ctx.toast(`Rescan failed: ${err.message}`, 'error');
      busy(button, false);
    }
  }

  /* ---------- render ---------- */
  function render() {
    dlg.setTitle(lead.domain, lead.companyName || '');
    dlg.setHeaderExtra(priorityBadge(lead.priorityCategory, lead.priorityCategoryLabel, lead.sellerAction));

    const summary = h('div', { class: 'detail-summary' },
      h('div', { class: 'detail-score', 'data-testid': 'detail-score' },
        h('span', { class: 'detail-score-num' }, lead.score == null ? '—' : String(lead.score)),
        h('span', { class: 'detail-score-label' }, 'score'),
        scoreCell(lead.score)),
      h('dl', { class: 'facts facts-grid' },
        fact('Provider', lead.provider || '—'),
        fact('Tenant size', tenantSize(lead.tenantSize)),
        fact('Referrals', num(lead.referralCount)),
        fact('Deal value', moneyMap(lead.dealValues)),
        fact('Scan', h('span', {}, scanStatePill(lead.scanState, lead.scanDetail), ' ', timeEl(lead.scannedAt))),
        fact('Updated', timeEl(lead.updatedAt))),
      h('div', { class: 'detail-actions' },
        h('button', { type: 'button', class: 'btn', id: 'rescan', onclick: rescan }, icon('scan'), 'Rescan')));

    const scanProblem = lead.scanState && lead.scanState !== 'ok' && lead.scanDetail
      ? h('p', { class: 'notice' }, icon('alert'), lead.scanDetail)
      : null;

    const referrals = lead.referrals || [];
    const referralList = referrals.length
      ? h('ul', { class: 'ref-list' }, referrals.map((r) => h('li', { class: 'ref-item' },
        h('div', { class: 'ref-main' },
          h('strong', {}, r.customerName || '—'),
          h('span', { class: 'muted' }, [r.type, r.status].filter(Boolean).join(' · '))),
        h('div', { class: 'ref-side' },
          h('span', {}, money(r.dealValue, r.currency)),
          r.updatedDateTime ? h('span', { class: 'muted small', title: absolute(r.updatedDateTime) }, `updated ${relative(r.updatedDateTime)}`) : null))))
      : h('p', { class: 'muted' }, 'No referral details.');
    const refLink = h('a', { href: `#/referrals?q=${encodeURIComponent(lead.domain)}`, class: 'link' },
      lead.moreReferrals ? 'More referrals: see them all in Referrals' : 'Open in Referrals');

    const history = lead.history || [];
    const historyList = history.length
      ? h('ol', { class: 'history-list' }, history.map((entry) => h('li', {},
        timeEl(entry.at), ' · ', h('strong', {}, entry.score == null ? '—' : String(entry.score)), ' · ',
        entry.segment || '—', entry.provider ? ` · ${entry.provider}` : '')))
      : h('p', { class: 'muted' }, 'No earlier scores.');

    renderDynamics(lead);

    replace(dlg.body,
      summary,
      scanProblem,
      section('What it means for a seller', sellerGuidance(lead)),
      section('Why this score', h('p', { class: 'muted small' }, 'Rules in the order they were applied; negative points are risks.'),
        breakdownList(lead.scoreBreakdown, lead.score)),
      section('Mail signals and risks', signalsPanel(lead.signals, lead.scoreBreakdown)),
      section('Dynamics 365', dynamicsBox),
      section(`Referrals (${num(lead.referralCount)})`, referralList, h('p', {}, refLink)),
      section('Dynamics audit trail', auditBox),
      section('Score history', historyList));
  }

  load();
  return dlg;
}
