//! Sort keys and cursors shared by the adapters, so both order and page the same way.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ports::{LeadSort, Page, StoreError, page_size};
use hunter_domain::clock::sortable;
use hunter_domain::model::{AuditEntry, Lead, ReferralRecord, SyncRun};

/// Referrals list newest `createdDateTime` first; undated ones last.
pub fn referral_sort_key(r: &ReferralRecord) -> String {
    let created = r
        .created_date_time
        .as_ref()
        .map(sortable)
        .unwrap_or_else(|| "0000".to_owned());
    format!("{created}#{}", r.id)
}

/// Leads list highest score first; unscored ones last (the score index's sort key).
pub fn lead_sort_key(l: &Lead) -> String {
    format!("{:03}#{}", l.score.unwrap_or(0), l.domain)
}

/// The key a lead list in `sort` order is paged by ([`LeadSort::descending`] says which way).
pub fn lead_order_key(l: &Lead, sort: LeadSort) -> String {
    match sort {
        LeadSort::Score | LeadSort::ScoreAscending => lead_sort_key(l),
        LeadSort::Domain => l.domain.to_string(),
        LeadSort::Referrals => format!("{:010}#{}", l.referral_count, l.domain),
        LeadSort::Updated => format!("{}#{}", sortable(&l.updated_at), l.domain),
    }
}

/// Sorts `keyed` by key (greatest first when `descending`) and cuts the page after `cursor`,
/// the encoded key of the last item of the page before.
pub fn page_by_key<T>(
    mut keyed: Vec<(String, T)>,
    descending: bool,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<T>, StoreError> {
    let after = cursor.map(decode_cursor).transpose()?;
    if descending {
        keyed.sort_by(|a, b| b.0.cmp(&a.0));
    } else {
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let size = page_size(limit);
    let mut rest = keyed.into_iter().filter(|(k, _)| match &after {
        None => true,
        Some(a) if descending => k < a,
        Some(a) => k > a,
    });
    let page: Vec<(String, T)> = rest.by_ref().take(size).collect();
    let next_cursor = match (rest.next(), page.last()) {
        (Some(_), Some((last, _))) => Some(encode_cursor(last)),
        _ => None,
    };
    Ok(Page {
        items: page.into_iter().map(|(_, v)| v).collect(),
        next_cursor,
    })
}

/// Runs list newest `startedAt` first.
pub fn run_sort_key(r: &SyncRun) -> String {
    format!("{}#{}", sortable(&r.started_at), r.id)
}

/// Audit entries list newest first.
pub fn audit_sort_key(a: &AuditEntry) -> String {
    format!("AUDIT#{}#{}", sortable(&a.at), a.id)
}

/// An opaque cursor for a position.
pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

/// The position of a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)
}
