//! pull-dynamics: what sellers changed in the CRM (status, owner, the opportunity a lead became
//! and its state) comes back onto Hunter's leads as their [`CrmState`]. A pull writes nothing
//! Hunter owns and asks for no push (the conflict rule: see `hunter_domain::crm::outcome`); the
//! change-tracking cursor is kept in the sync state, written after the changes it covers, so a
//! pull that fails partway is read again from the same place (applying a change twice is a
//! no-op).

use std::time::Instant;

use hunter_domain::clock;
use hunter_domain::crm::{CrmChange, CrmState, Outcome};
use hunter_domain::leads::CLOSED;
use hunter_domain::model::AuditEntry;
use hunter_domain::rules::Domain;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::optimistic::{Change, update_lead, update_state};
use crate::ports::{
    CrmChangeSource, CrmPullError, MAX_PAGE_SIZE, ReferralWriteBack, SourceError, Store, StoreError,
};

/// The sync-state key of the pull's cursor and last summary.
pub const PULL_STATE_KEY: &str = "dynamics-pull";
/// Who pulled changes, in the audit trail.
const ACTOR: &str = "pull-dynamics";

/// What one pull did (the JSON summary pull-dynamics answers and hunter-local logs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullSummary {
    /// Changes of Hunter's leads the CRM reported.
    pub changes: usize,
    /// Leads whose CRM state changed.
    pub leads_updated: usize,
    /// Reported changes that changed nothing Hunter shows (e.g. a column Hunter does not read).
    pub unchanged: usize,
    /// Changes keyed for a lead Hunter does not have (a key typed by hand, a removed lead).
    pub unknown_leads: usize,
    /// Changed records without Hunter's key.
    pub not_hunters: usize,
    /// Records deleted in the CRM (counted; Hunter's leads keep their last state).
    pub deleted: usize,
    /// Referrals closed in Partner Center for a CRM outcome (`HUNTER_MIRROR_CRM_OUTCOMES`).
    pub mirrored: usize,
    /// Referrals that could not be closed (changed since read, or Partner Center refused).
    pub mirror_failed: usize,
    /// The cursor had expired (or there was none): every record was read.
    pub full_read: bool,
    pub duration_ms: u64,
}

/// A pull that did not complete; the next one starts from the same cursor.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("reading CRM changes failed: {0}")]
    Source(#[from] CrmPullError),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
}

impl PullError {
    /// Whether the next scheduled pull may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Source(err) => err.is_retryable(),
            Self::Store(err) => err.is_retryable(),
        }
    }
}

/// What a pull needs.
#[allow(missing_debug_implementations, reason = "trait objects")]
pub struct PullDeps<'a> {
    pub store: &'a dyn Store,
    pub source: &'a dyn CrmChangeSource,
    /// Where CRM outcomes are mirrored (Partner Center), when `HUNTER_MIRROR_CRM_OUTCOMES` is on.
    pub mirror: Option<&'a dyn ReferralWriteBack>,
}

/// Pulls what changed in the CRM since the last pull onto Hunter's leads.
pub async fn pull_crm_changes(deps: &PullDeps<'_>) -> Result<PullSummary, PullError> {
    let started = Instant::now();
    let cursor = deps
        .store
        .get_state(PULL_STATE_KEY)
        .await?
        .and_then(|state| {
            state
                .value
                .get("cursor")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let mut summary = PullSummary {
        full_read: cursor.is_none(),
        ..PullSummary::default()
    };
    let changes = match deps.source.changes_since(cursor.as_deref()).await {
        Err(CrmPullError::CursorExpired(why)) => {
            tracing::warn!(event = "crm_pull_cursor_expired", reason = %why);
            summary.full_read = true;
            deps.source.changes_since(None).await?
        }
        other => other?,
    };
    summary.changes = changes.changes.len();
    summary.not_hunters = changes.not_hunters;
    summary.deleted = changes.deleted.len();
    for id in &changes.deleted {
        tracing::info!(event = "crm_record_deleted", record_id = %id);
    }
    for change in &changes.changes {
        match apply(deps.store, change).await? {
            (Applied::Updated, reached) => {
                summary.leads_updated += 1;
                if let (Some(outcome), Some(mirror)) = (reached, deps.mirror) {
                    let (closed, failed) =
                        mirror_outcome(deps.store, mirror, &change.key, outcome).await?;
                    summary.mirrored += closed;
                    summary.mirror_failed += failed;
                }
            }
            (Applied::Unchanged, _) => summary.unchanged += 1,
            (Applied::UnknownLead, _) => summary.unknown_leads += 1,
        }
    }
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let state = json!({
        "cursor": changes.cursor,
        "lastPullAt": clock::now(),
        "lastSummary": summary,
    });
    update_state(deps.store, PULL_STATE_KEY, |_| {
        Change::Write(state.clone(), ())
    })
    .await?;
    tracing::info!(
        event = "crm_pull_finished",
        changes = summary.changes,
        leads_updated = summary.leads_updated,
        unknown_leads = summary.unknown_leads,
        not_hunters = summary.not_hunters,
        deleted = summary.deleted,
        full_read = summary.full_read,
        duration_ms = summary.duration_ms
    );
    Ok(summary)
}

/// What one change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Updated,
    Unchanged,
    UnknownLead,
}

/// Applies `change` to the CRM state of its lead (nothing else of the lead changes: no content
/// version, no push), and records it in the lead's audit trail. Answers what it did and the
/// outcome the lead newly reached, if any.
async fn apply(
    store: &dyn Store,
    change: &CrmChange,
) -> Result<(Applied, Option<Outcome>), StoreError> {
    let Ok(domain) = change.key.parse::<Domain>() else {
        tracing::warn!(event = "crm_change_unknown_lead", key = %change.key, reason = "not a domain");
        return Ok((Applied::UnknownLead, None));
    };
    let now = clock::now();
    let applied = update_lead(store, &domain, |stored| {
        let Some(mut lead) = stored else {
            return Change::Keep((Applied::UnknownLead, None, None));
        };
        let mut crm = lead.crm.clone().unwrap_or_default();
        let before = crm.outcome();
        if !crm.apply(change) {
            return Change::Keep((Applied::Unchanged, None, None));
        }
        let reached = crm.outcome().filter(|after| before != Some(*after));
        let detail = describe(&crm);
        lead.crm = Some(crm);
        lead.updated_at = now;
        Change::Write(lead, (Applied::Updated, reached, Some(detail)))
    })
    .await?;
    match &applied {
        (Applied::UnknownLead, ..) => {
            tracing::warn!(event = "crm_change_unknown_lead", key = %change.key);
        }
        (Applied::Updated, _, Some(detail)) => {
            tracing::info!(event = "crm_change_pulled", domain = %domain);
            let entry =
                AuditEntry::new(domain, now, ACTOR, "pull", "changed", Some(detail.clone()));
            store.append_audit(&entry).await?;
        }
        _ => {}
    }
    Ok((applied.0, applied.1))
}

/// Closes the open referrals of the lead keyed `key` in Partner Center with `outcome`: each
/// one conditional on the eTag Hunter stored, marked on the lead before the call (so its change
/// coming back asks for no push) and unmarked when the call fails; every attempt audited.
/// Answers how many were closed and how many failed.
async fn mirror_outcome(
    store: &dyn Store,
    mirror: &dyn ReferralWriteBack,
    key: &str,
    outcome: Outcome,
) -> Result<(usize, usize), StoreError> {
    let Ok(domain) = key.parse::<Domain>() else {
        return Ok((0, 0));
    };
    let substatus = outcome.substatus();
    let mut open = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_contributions(&domain, Some(MAX_PAGE_SIZE), cursor.as_deref())
            .await?;
        open.extend(
            page.items
                .into_iter()
                .filter(|c| c.status.as_deref() != Some(CLOSED))
                .map(|c| c.id),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let (mut closed, mut failed) = (0, 0);
    for referral_id in open {
        mark_mirrored(store, &domain, &referral_id, Some(substatus)).await?;
        let etag = store
            .get_referral(&referral_id)
            .await?
            .and_then(|record| record.etag);
        let (result, detail) = match mirror
            .close_referral(&referral_id, etag.as_deref(), substatus)
            .await
        {
            Ok(()) => {
                closed += 1;
                (
                    "closed",
                    format!("referral {referral_id} {CLOSED}/{substatus}"),
                )
            }
            Err(err) => {
                failed += 1;
                mark_mirrored(store, &domain, &referral_id, None).await?;
                tracing::warn!(event = "crm_outcome_mirror_failed", domain = %domain, referral_id = %referral_id, retryable = err.is_retryable(), error = %err);
                let result = match err {
                    SourceError::Conflict(_) => "skipped",
                    _ => "failed",
                };
                (
                    result,
                    format!("referral {referral_id} {CLOSED}/{substatus}: {err}"),
                )
            }
        };
        let entry = AuditEntry::new(
            domain.clone(),
            clock::now(),
            ACTOR,
            "mirror",
            result,
            Some(detail),
        );
        store.append_audit(&entry).await?;
    }
    Ok((closed, failed))
}

/// Marks (`Some(substatus)`) or unmarks (`None`) referral `referral_id` as closed by Hunter on
/// the lead of `domain`.
async fn mark_mirrored(
    store: &dyn Store,
    domain: &Domain,
    referral_id: &str,
    substatus: Option<&str>,
) -> Result<(), StoreError> {
    update_lead(store, domain, |stored| {
        let Some(mut lead) = stored else {
            return Change::Keep(());
        };
        let crm = lead.crm.get_or_insert_with(CrmState::default);
        match substatus {
            Some(substatus) => {
                crm.mirrored
                    .insert(referral_id.to_owned(), substatus.to_owned());
            }
            None => {
                crm.mirrored.remove(referral_id);
            }
        }
        Change::Write(lead, ())
    })
    .await
}

/// The CRM state in one line for the audit trail: `status Qualified (Qualified), owner …`.
fn describe(crm: &CrmState) -> String {
    let mut parts = Vec::new();
    if let Some(status) = &crm.status {
        parts.push(match &crm.status_reason {
            Some(reason) => format!("status {status} ({reason})"),
            None => format!("status {status}"),
        });
    }
    if let Some(owner) = &crm.owner {
        parts.push(format!("owner {owner}"));
    }
    if let Some(opportunity) = &crm.opportunity_id {
        parts.push(match &crm.opportunity_status {
            Some(status) => format!("opportunity {opportunity} {status}"),
            None => format!("opportunity {opportunity}"),
        });
    }
    parts.join(", ")
}
