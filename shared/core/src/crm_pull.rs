//! pull-dynamics: what sellers changed in the CRM (status, owner, the opportunity a lead became
//! and its state) comes back onto Hunter's leads as their [`CrmState`]. A pull writes nothing
//! Hunter owns and asks for no push (the conflict rule: see `hunter_domain::crm::outcome`); the
//! change-tracking cursor is kept in the sync state, written after the changes it covers, so a
//! pull that fails partway is read again from the same place (applying a change twice is a
//! no-op).

use std::time::Instant;

use hunter_domain::clock;
use std::collections::BTreeSet;

use hunter_domain::crm::{CrmChange, CrmState};
use hunter_domain::leads::CLOSED;
use hunter_domain::model::AuditEntry;
use hunter_domain::rules::Domain;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::optimistic::{Change, update_lead, update_state};
use crate::ports::{
    CrmChangeSource, CrmPullError, ReferralWriteBack, SourceError, Store, StoreError,
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
    /// The pull ran out of time (its cursor did not move).
    #[error("the pull did not finish within {0:?}")]
    TimedOut(std::time::Duration),
}

impl PullError {
    /// Whether the next scheduled pull may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Source(err) => err.is_retryable(),
            Self::Store(err) => err.is_retryable(),
            Self::TimedOut(_) => true,
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

/// Mirror attempts of one outcome before Hunter gives up on it (a pull every 5 minutes: an hour).
pub const MAX_MIRROR_ATTEMPTS: u32 = 12;
/// Leads whose outcome one pull mirrors at most (the rest wait for the next pull).
const MIRRORS_PER_PULL: usize = 200;
/// Partner Center's status of a referral a seller is working on (the ones an outcome closes).
const ACTIVE: &str = "Active";

/// Pulls what changed in the CRM since the last pull onto Hunter's leads, then (mirroring on)
/// closes the referrals of leads with an outcome due in Partner Center.
pub async fn pull_crm_changes(deps: &PullDeps<'_>) -> Result<PullSummary, PullError> {
    let started = Instant::now();
    let stored = deps.store.get_state(PULL_STATE_KEY).await?.map(|s| s.value);
    let text = |name: &str| {
        stored
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let cursor = text("cursor");
    let mut due: BTreeSet<String> = stored
        .as_ref()
        .and_then(|v| v.get("mirrorsDue"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
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
    let mirroring = deps.mirror.is_some();
    for change in &changes.changes {
        let (applied, mirror_due) = apply(deps.store, change, mirroring).await?;
        match applied {
            Applied::Updated => summary.leads_updated += 1,
            Applied::Unchanged => summary.unchanged += 1,
            Applied::UnknownLead => summary.unknown_leads += 1,
        }
        if let Some(domain) = mirror_due {
            due.insert(domain.to_string());
        }
    }
    if let Some(mirror) = deps.mirror {
        mirror_due_outcomes(deps.store, mirror, &mut due, &mut summary).await?;
    }
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let state = json!({
        "cursor": changes.cursor,
        "lastPullAt": clock::now(),
        "lastSummary": summary,
        "mirrorsDue": due,
    });
    update_state(deps.store, PULL_STATE_KEY, |_| {
        Change::Write(state.clone(), ())
    })
    .await?;
    tracing::info!(
        event = "crm_pull_finished",
        changes = summary.changes,
        leads_updated = summary.leads_updated,
        unchanged = summary.unchanged,
        unknown_leads = summary.unknown_leads,
        not_hunters = summary.not_hunters,
        deleted = summary.deleted,
        mirrored = summary.mirrored,
        mirror_failed = summary.mirror_failed,
        mirrors_due = due.len(),
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

/// The key of a change as logs may show it (a seller can type it).
fn shown_key(key: &str) -> String {
    key.chars().take(100).collect()
}

/// Applies `change` to the CRM state of its lead (nothing else of the lead changes: no content
/// version, no push), and records it in the lead's audit trail. With `mirroring`, an outcome
/// the lead reaches after Hunter first saw it becomes due for Partner Center (one Hunter first
/// sees already reached is history, not news: it is not mirrored). Answers what it did and the
/// lead's domain when an outcome is due (newly or still).
async fn apply(
    store: &dyn Store,
    change: &CrmChange,
    mirroring: bool,
) -> Result<(Applied, Option<Domain>), StoreError> {
    let Ok(domain) = change.key.parse::<Domain>() else {
        tracing::warn!(event = "crm_change_unknown_lead", key = %shown_key(&change.key), reason = "not a domain");
        return Ok((Applied::UnknownLead, None));
    };
    let now = clock::now();
    let (applied, due, detail) = update_lead(store, &domain, |stored| {
        let Some(mut lead) = stored else {
            return Change::Keep((Applied::UnknownLead, false, None));
        };
        let first_sight = lead.crm.is_none();
        let mut crm = lead.crm.clone().unwrap_or_default();
        let before = crm.outcome();
        if !crm.apply(change) {
            return Change::Keep((Applied::Unchanged, crm.mirror_due.is_some(), None));
        }
        let after = crm.outcome();
        if after.is_none() {
            // Reopened: nothing to close any more.
            crm.mirror_due = None;
        } else if mirroring && !first_sight && after != before {
            crm.mirror_due = after;
            crm.mirror_attempts = 0;
        }
        let due = crm.mirror_due.is_some();
        let detail = describe(&crm);
        lead.crm = Some(crm);
        lead.updated_at = now;
        Change::Write(lead, (Applied::Updated, due, Some(detail)))
    })
    .await?;
    match (applied, detail) {
        (Applied::UnknownLead, _) => {
            tracing::warn!(event = "crm_change_unknown_lead", key = %shown_key(&change.key));
        }
        (Applied::Updated, Some(detail)) => {
            tracing::info!(event = "crm_change_pulled", domain = %domain);
            let entry =
                AuditEntry::new(domain.clone(), now, ACTOR, "pull", "changed", Some(detail));
            store.append_audit(&entry).await?;
        }
        _ => {}
    }
    Ok((applied, due.then_some(domain)))
}

/// Mirrors the outcomes due (at most [`MIRRORS_PER_PULL`] leads a pull); leaves in `due` the
/// leads still to try again. A refused Partner Center sign-in stops the mirroring of this pull.
async fn mirror_due_outcomes(
    store: &dyn Store,
    mirror: &dyn ReferralWriteBack,
    due: &mut BTreeSet<String>,
    summary: &mut PullSummary,
) -> Result<(), StoreError> {
    let domains: Vec<String> = due.iter().take(MIRRORS_PER_PULL).cloned().collect();
    for key in domains {
        let Ok(domain) = key.parse::<Domain>() else {
            due.remove(&key);
            continue;
        };
        let tried = mirror_outcome(store, mirror, &domain).await?;
        summary.mirrored += tried.closed;
        summary.mirror_failed += tried.failed;
        if !tried.again {
            due.remove(&key);
        }
        if tried.sign_in_refused {
            break;
        }
    }
    Ok(())
}

/// What mirroring one lead's outcome did.
#[derive(Debug, Default)]
struct Mirrored {
    closed: usize,
    /// Referrals Partner Center refused for good (or given up on).
    failed: usize,
    /// Some referrals are to try again at the next pull.
    again: bool,
    /// Partner Center refused Hunter's credentials: no more mirroring until someone signs in.
    sign_in_refused: bool,
}

/// Closes, with the outcome due on the lead of `domain`, each of its referrals that Partner
/// Center has as `Active` for this domain (Hunter's stored copy; with the eTag it has, so a
/// referral changed since is not overwritten). Each referral is marked on the lead before the
/// call (so that its change coming back asks for no push) and unmarked when the call fails; a
/// marked referral is not closed again. A referral that changed since (412), or a call that may
/// pass, is tried again at the next pull, up to [`MAX_MIRROR_ATTEMPTS`]. Every attempt is
/// audited.
async fn mirror_outcome(
    store: &dyn Store,
    mirror: &dyn ReferralWriteBack,
    domain: &Domain,
) -> Result<Mirrored, StoreError> {
    let mut result = Mirrored::default();
    let Some(lead) = store.get_lead(domain).await? else {
        return Ok(result);
    };
    let Some(crm) = lead.crm.filter(|crm| crm.mirror_due.is_some()) else {
        return Ok(result);
    };
    let Some(outcome) = crm.mirror_due else {
        return Ok(result);
    };
    let substatus = outcome.substatus();
    let mut to_close = Vec::new();
    for contribution in store.all_contributions(domain).await? {
        if crm.mirrored.contains_key(&contribution.id) {
            continue;
        }
        let Some(record) = store.get_referral(&contribution.id).await? else {
            continue;
        };
        let open = record.status.as_deref() == Some(ACTIVE);
        if open && record.domain.as_ref() == Some(domain) {
            if let Some(etag) = record.etag {
                to_close.push((record.id, etag));
            }
        }
    }
    let audit = |result: &str, detail: String| {
        AuditEntry::new(
            domain.clone(),
            clock::now(),
            ACTOR,
            "mirror",
            result,
            Some(detail),
        )
    };
    let give_up = crm.mirror_attempts + 1 >= MAX_MIRROR_ATTEMPTS;
    for (referral_id, etag) in to_close {
        mark_mirrored(store, domain, &referral_id, Some(substatus)).await?;
        let what = format!("referral {referral_id} {CLOSED}/{substatus}");
        match mirror
            .close_referral(&referral_id, Some(&etag), substatus)
            .await
        {
            Ok(()) => {
                result.closed += 1;
                store.append_audit(&audit("closed", what)).await?;
            }
            Err(err) => {
                tracing::warn!(event = "crm_outcome_mirror_failed", domain = %domain, referral_id = %referral_id, retryable = err.is_retryable(), error = %err);
                // Unmarked: a mark means closed (a referral marked is not closed again).
                mark_mirrored(store, domain, &referral_id, None).await?;
                let passing = err.is_retryable() || matches!(err, SourceError::Conflict(_));
                if passing && !give_up {
                    result.again = true;
                    store
                        .append_audit(&audit("retry", format!("{what}: {err}")))
                        .await?;
                } else {
                    result.failed += 1;
                    let why = if passing {
                        "gave up after retries"
                    } else {
                        "refused"
                    };
                    store
                        .append_audit(&audit("failed", format!("{what} ({why}): {err}")))
                        .await?;
                }
                if matches!(
                    err,
                    SourceError::SignInRequired(_) | SourceError::Unauthorized(_)
                ) {
                    tracing::error!(event = "crm_outcome_mirror_stopped", error = %err);
                    result.sign_in_refused = true;
                    result.again = true;
                    break;
                }
            }
        }
    }
    update_lead(store, domain, |stored| {
        let Some(mut lead) = stored else {
            return Change::Keep(());
        };
        let Some(crm) = lead.crm.as_mut() else {
            return Change::Keep(());
        };
        match result.again {
            true => crm.mirror_attempts += 1,
            false => {
                crm.mirror_due = None;
                crm.mirror_attempts = 0;
            }
        }
        Change::Write(lead, ())
    })
    .await?;
    Ok(result)
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
