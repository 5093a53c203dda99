//! Sort keys and cursors shared by the adapters, so both order and page the same way.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ports::StoreError;
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

/// Leads list highest score first; unscored ones last.
pub fn lead_sort_key(l: &Lead) -> String {
    format!("{:03}#{}", l.score.unwrap_or(0), l.domain)
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
