// Formatting with Intl, and the words the UI uses for the API's codes.
import { h } from './dom.js';

const locale = navigator.language || 'en-US';
const numberFmt = new Intl.NumberFormat(locale);
const rtf = new Intl.RelativeTimeFormat(locale, { numeric: 'auto', style: 'short' });
const absFmt = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'medium' });
const shortFmt = new Intl.DateTimeFormat(locale, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(locale, { month: 'short', day: 'numeric' });
const dayYearFmt = new Intl.DateTimeFormat(locale, { month: 'short', day: 'numeric', year: 'numeric' });
const timeFmt = new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit' });
const timeSecFmt = new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function num(n) {
  return n == null || Number.isNaN(Number(n)) ? '—' : numberFmt.format(Number(n));
}

export function money(value, currency) {
  if (value == null) return '—';
  try {
    return new Intl.NumberFormat(locale, {
      style: 'currency',
      currency: currency || 'USD',
      maximumFractionDigits: 0,
    }).format(value);
  } catch {
    // Not an ISO 4217 code: show it as it came.
    return `${numberFmt.format(value)} ${currency ?? ''}`.trim();
  }
}

/** {USD: 1000, EUR: 50} → "$1,000 · €50" */
export function moneyMap(values) {
  const entries = Object.entries(values || {});
  if (!entries.length) return '—';
  return entries.map(([cur, v]) => money(v, cur)).join(' · ');
}

function parse(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function relative(iso, now = Date.now()) {
  const d = parse(iso);
  if (!d) return '—';
  const secs = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(secs);
  if (abs < 45) return secs <= 0 ? 'just now' : 'in a few seconds';
  const units = [
    ['minute', 60, 3600],
    ['hour', 3600, 86400],
    ['day', 86400, 86400 * 7],
  ];
  for (const [unit, size, limit] of units) {
    if (abs < limit) return rtf.format(Math.round(secs / size), unit);
  }
  // Older than a week: the date says more than "last mo.".
  return (d.getFullYear() === new Date(now).getFullYear() ? dayFmt : dayYearFmt).format(d);
}

export function absolute(iso) {
  const d = parse(iso);
  return d ? absFmt.format(d) : '';
}

export function shortDate(iso) {
  const d = parse(iso);
  return d ? shortFmt.format(d) : '—';
}

export function clock(iso, seconds = false) {
  const d = parse(iso);
  if (!d) return '';
  return (seconds ? timeSecFmt : timeFmt).format(d);
}

/** <time> with relative text and the absolute time as its title. */
export function timeEl(iso) {
  if (!parse(iso)) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: absolute(iso), class: 'rel-time' }, relative(iso));
}

/** Keeps every relative time on the page current (a page left open for an hour stays right). */
export function refreshRelativeTimes(root = document) {
  for (const t of root.querySelectorAll('time.rel-time[datetime]')) {
    const text = relative(t.getAttribute('datetime'));
    if (t.textContent !== text) t.textContent = text;
  }
}

export function duration(startIso, endIso) {
  const a = parse(startIso);
  const b = parse(endIso);
  if (!a || !b) return '—';
  const ms = b.getTime() - a.getTime();
  if (ms < 1000) return `${Math.max(ms, 0)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export const SEGMENTS = ['Existing', 'Migration', 'Cold', 'Skip'];

export const SEGMENT_MEANING = {
  Existing: 'already on Microsoft 365: sell more (seats, security, Copilot) or defend the renewal',
  Migration: 'a well-run mail domain on Google, Zoho, Yandex, hosting or its own server: a migration to Microsoft 365',
  Cold: 'a weaker signal: nurture',
  Skip: "no mail, no such domain, or a low score: not worth a seller's time now",
};

export const SYNC_STATUSES = ['pending', 'synced', 'failed', 'skipped'];
export const SYNC_STATUS_LABEL = {
  pending: 'Pending',
  synced: 'Synced',
  failed: 'Failed',
  skipped: 'Not pushed',
  // Results in the audit trail only: a change pulled back from Dynamics, a referral closed, an
  // attempt to be made again.
  changed: 'Changed',
  closed: 'Closed',
  retry: 'Retrying',
};

export const SCAN_STATES = ['ok', 'no_mx', 'nxdomain', 'servfail', 'timeout', 'pending'];
export const SCAN_STATE_LABEL = {
  ok: 'Scanned',
  no_mx: 'No MX',
  nxdomain: 'No such domain',
  servfail: 'DNS failure',
  timeout: 'DNS timeout',
  pending: 'Not scanned',
};
export const SCAN_STATE_MEANING = {
  ok: 'the DNS scan succeeded',
  no_mx: 'the domain has no MX records: it receives no mail',
  nxdomain: 'the domain does not exist in DNS',
  servfail: "the domain's name servers failed or refused to answer",
  timeout: "the domain's name servers did not answer in time",
  pending: 'the domain has not been scanned yet',
};

export const SKIP_REASONS = ['not_incoming', 'status_closed', 'substatus_excluded', 'no_domain', 'invalid_payload'];
export const SKIP_REASON_LABEL = {
  not_incoming: 'Not incoming',
  status_closed: 'Closed',
  substatus_excluded: 'Excluded substatus',
  no_domain: 'No domain',
  invalid_payload: 'Invalid payload',
};

export const ARRIVAL_LABEL = { webhook: 'webhook', sweep: 'sweep' };
export const ARRIVAL_MEANING = {
  webhook: 'a Partner Center webhook event named this referral and Hunter fetched it at once',
  sweep: 'fetched by a scheduled or requested sync',
};

export const TENANT_SIZE_LABEL = { small: 'Small', medium: 'Medium', large: 'Large', enterprise: 'Enterprise' };

export function tenantSize(size) {
  if (!size) return '—';
  return TENANT_SIZE_LABEL[size] ?? size;
}

export function plural(n, one, many) {
  return `${num(n)} ${n === 1 ? one : many}`;
}

/* ---------- what sellers did in Dynamics 365 (pulled back from Dataverse) ---------- */

/** The CSS tone of a lead's status in Dynamics; another text (e.g. "Unknown (7)") is neutral. */
export const CRM_STATUS_TONE = { Open: 'open', Qualified: 'qualified', Disqualified: 'disqualified' };
/** The CSS tone of the opportunity the lead was qualified into. */
export const CRM_OPPORTUNITY_TONE = { Open: 'open', Won: 'won', Lost: 'lost' };
export const CRM_NOT_PULLED = 'Not pulled from Dynamics yet';

/** True once anything was pulled back from Dynamics for the lead. */
export function crmPulled(lead) {
  if (!lead) return false;
  return ['crmStatus', 'crmStatusReason', 'crmOwner', 'crmOwnerId', 'crmOpportunityId',
    'crmOpportunityStatus', 'crmUpdatedAt'].some((key) => lead[key] != null && lead[key] !== '');
}
