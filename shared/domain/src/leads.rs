//! One lead per registrable domain: how a referral joins it, when it needs a push, and what a
//! push attempt does to it.

use chrono::{DateTime, Utc};

use crate::model::{Lead, LeadReferral, ReferralRecord, SyncStatus};
use crate::rules::UpsertOutcome;

/// What storing a referral means for the lead of its domain.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadJoin {
    /// Nothing to write, no push to ask for.
    Unchanged,
    /// Write this lead (created or changed, now pending) and ask for its push.
    Changed(Lead),
    /// Nothing changed, but this is a redelivery and the lead still waits for its push: the first
    /// request may have been lost, so ask again.
    PushAgain(Lead),
}

/// Joins `record`, stored with `outcome`, to `stored`, the lead of its domain (`None`: no lead
/// yet). An eligible referral creates or changes the lead; one that left eligibility only
/// refreshes a lead that counts it already. A stale delivery changes nothing.
pub fn join_referral(
    stored: Option<Lead>,
    record: &ReferralRecord,
    outcome: UpsertOutcome,
    now: DateTime<Utc>,
) -> LeadJoin {
    let Some(domain) = &record.domain else {
        return LeadJoin::Unchanged;
    };
    if outcome == UpsertOutcome::Stale
        || (!record.eligible && !stored.as_ref().is_some_and(|l| contains(l, &record.id)))
    {
        return LeadJoin::Unchanged;
    }
    let existed = stored.is_some();
    let mut lead = stored.unwrap_or_else(|| Lead::new(domain.clone(), now));
    if merge_referral(&mut lead, record, now) {
        lead.sync_status = SyncStatus::Pending;
        return LeadJoin::Changed(lead);
    }
    if existed && outcome == UpsertOutcome::Unchanged && lead.sync_status == SyncStatus::Pending {
        return LeadJoin::PushAgain(lead);
    }
    LeadJoin::Unchanged
}

/// Adds or refreshes `record`'s contribution to `lead` and recomputes the aggregates (count, ids,
/// types, latest status, total deal value, company name). An older version of a referral than
/// the one already counted changes nothing. Returns whether the lead changed.
pub fn merge_referral(lead: &mut Lead, record: &ReferralRecord, now: DateTime<Utc>) -> bool {
    let contribution = LeadReferral {
        id: record.id.clone(),
        referral_type: record.referral_type.clone(),
        status: record.status.clone(),
        deal_value: record.deal_value,
        currency: record.currency.clone(),
        customer_name: record.customer_name.clone(),
        updated_date_time: record.updated_date_time,
    };
    match lead.contributions.iter_mut().find(|c| c.id == record.id) {
        Some(existing) if existing.updated_date_time > contribution.updated_date_time => {
            return false;
        }
        // Only the time moved (e.g. Partner Center stored our write-back): nothing to show or push.
        Some(existing)
            if LeadReferral {
                updated_date_time: existing.updated_date_time,
                ..contribution.clone()
            } == *existing =>
        {
            return false;
        }
        Some(existing) => *existing = contribution,
        None => lead.contributions.push(contribution),
    }
    recompute(lead);
    lead.content_version += 1;
    lead.updated_at = now;
    true
}

/// Whether `record` already counts in `lead`.
pub fn contains(lead: &Lead, referral_id: &str) -> bool {
    lead.contributions.iter().any(|c| c.id == referral_id)
}

/// The lead's most recently updated referral.
pub fn newest_contribution(lead: &Lead) -> Option<&LeadReferral> {
    lead.contributions
        .iter()
        .max_by(|a, b| (a.updated_date_time, &a.id).cmp(&(b.updated_date_time, &b.id)))
}

/// The lead's referrals a seller accepted (status Active): candidates for opportunities.
pub fn active_contributions(lead: &Lead) -> impl Iterator<Item = &LeadReferral> {
    lead.contributions.iter().filter(|c| {
        c.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Active"))
    })
}

/// Whether a push request for content version `requested` still has work: not when Dynamics has
/// that version or a newer one, unless a person forced it.
pub fn push_needed(lead: &Lead, requested: u64, force: bool) -> bool {
    force || lead.synced_version.is_none_or(|synced| synced < requested)
}

/// How a push attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushAttempt {
    /// Dynamics holds the lead under this record id.
    Synced { dynamics_id: String },
    /// Dynamics refused the lead for good (the data must change); the reason.
    Failed(String),
    /// A failure that may pass; the push is tried again.
    Retry(String),
}

/// Records a push attempt of content version `pushed` on `lead` (as read now, which may hold
/// changes ingested while the push ran): synced only if nothing changed meanwhile, else it stays
/// pending for the push its change asked for.
pub fn record_push(lead: &mut Lead, pushed: u64, attempt: &PushAttempt, now: DateTime<Utc>) {
    lead.sync_attempts += 1;
    match attempt {
        PushAttempt::Synced { dynamics_id } => {
            lead.dynamics_id = Some(dynamics_id.clone());
            lead.last_synced_at = Some(now);
            lead.last_error = None;
            lead.synced_version = Some(pushed.max(lead.synced_version.unwrap_or(0)));
            lead.sync_status = if lead.content_version == pushed {
                SyncStatus::Synced
            } else {
                SyncStatus::Pending
            };
        }
        PushAttempt::Failed(error) => {
            lead.sync_status = SyncStatus::Failed;
            lead.last_error = Some(error.clone());
        }
        PushAttempt::Retry(error) => lead.last_error = Some(error.clone()),
    }
    lead.updated_at = now;
}

fn recompute(lead: &mut Lead) {
    let (latest_status, latest_name) = newest_contribution(lead)
        .map(|c| (c.status.clone(), c.customer_name.clone()))
        .unwrap_or_default();
    let contributions = &lead.contributions;
    lead.referral_ids = contributions.iter().map(|c| c.id.clone()).collect();
    lead.referral_count = u32::try_from(contributions.len()).unwrap_or(u32::MAX);
    let mut types: Vec<String> = contributions
        .iter()
        .filter_map(|c| c.referral_type.clone())
        .collect();
    types.sort();
    types.dedup();
    lead.referral_types = types;
    lead.deal_value_total = contributions
        .iter()
        .filter_map(|c| c.deal_value)
        .filter(|v| v.is_finite())
        .sum();
    lead.latest_status = latest_status;
    if let Some(name) = latest_name.filter(|n| !n.trim().is_empty()) {
        lead.company_name = Some(name);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::rules::normalize_domain;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap()
    }

    fn record(id: &str, status: &str, value: f64, updated: u32) -> ReferralRecord {
        let mut r = ReferralRecord::invalid("{}", "", at(0));
        r.id = id.to_owned();
        r.status = Some(status.to_owned());
        r.referral_type = Some(if id == "b" { "Shared" } else { "Independent" }.to_owned());
        r.deal_value = Some(value);
        r.customer_name = Some(format!("Contoso {id}"));
        r.updated_date_time = Some(at(updated));
        r.eligible = true;
        r.skip_reason = None;
        r
    }

    #[test]
    fn when_referrals_join_a_lead_should_aggregate_count_ids_types_status_and_value() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), at(0));
        assert!(merge_referral(
            &mut lead,
            &record("a", "New", 1000.0, 1),
            at(5)
        ));
        assert!(merge_referral(
            &mut lead,
            &record("b", "Active", 250.5, 3),
            at(5)
        ));
        assert_eq!(lead.referral_count, 2);
        assert_eq!(lead.referral_ids, vec!["a", "b"]);
        assert_eq!(lead.referral_types, vec!["Independent", "Shared"]);
        assert_eq!(lead.latest_status.as_deref(), Some("Active"));
        assert!((lead.deal_value_total - 1250.5).abs() < 1e-9);
        assert_eq!(lead.company_name.as_deref(), Some("Contoso b"));
    }

    #[test]
    fn when_a_referral_is_updated_should_replace_its_contribution_not_add_one() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), at(0));
        merge_referral(&mut lead, &record("a", "New", 1000.0, 1), at(5));
        assert!(merge_referral(
            &mut lead,
            &record("a", "Active", 3000.0, 2),
            at(6)
        ));
        assert_eq!(lead.referral_count, 1);
        assert_eq!(lead.latest_status.as_deref(), Some("Active"));
        assert!((lead.deal_value_total - 3000.0).abs() < 1e-9);
        assert_eq!(lead.updated_at, at(6));
    }

    #[test]
    fn when_the_same_or_an_older_version_arrives_should_change_nothing() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), at(0));
        merge_referral(&mut lead, &record("a", "Active", 3000.0, 2), at(5));
        let before = lead.clone();
        assert!(!merge_referral(
            &mut lead,
            &record("a", "Active", 3000.0, 2),
            at(7)
        ));
        assert!(!merge_referral(
            &mut lead,
            &record("a", "New", 1000.0, 1),
            at(7)
        ));
        assert!(
            !merge_referral(&mut lead, &record("a", "Active", 3000.0, 9), at(7)),
            "only the time moved"
        );
        assert_eq!(lead, before);
        assert!(contains(&lead, "a") && !contains(&lead, "z"));
    }

    fn lead_with(id: &str) -> Lead {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), at(0));
        merge_referral(&mut lead, &with_domain(record(id, "New", 10.0, 1)), at(1));
        lead
    }

    fn with_domain(mut r: ReferralRecord) -> ReferralRecord {
        r.domain = Some(normalize_domain("contoso.com").unwrap());
        r
    }

    #[test]
    fn when_an_eligible_referral_is_stored_should_create_or_change_a_pending_lead() {
        let first = with_domain(record("a", "New", 10.0, 1));
        let LeadJoin::Changed(created) =
            join_referral(None, &first, UpsertOutcome::Inserted, at(2))
        else {
            panic!("a new lead")
        };
        assert_eq!(created.referral_ids, vec!["a"]);
        assert_eq!(created.sync_status, SyncStatus::Pending);
        let mut synced = created.clone();
        synced.sync_status = SyncStatus::Synced;
        let update = with_domain(record("a", "Active", 10.0, 2));
        match join_referral(Some(synced), &update, UpsertOutcome::Updated, at(3)) {
            LeadJoin::Changed(lead) => {
                assert_eq!(
                    lead.sync_status,
                    SyncStatus::Pending,
                    "a change waits for its push"
                );
                assert_eq!(lead.latest_status.as_deref(), Some("Active"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn when_nothing_changes_should_ask_again_only_for_a_redelivered_pending_lead() {
        let again = with_domain(record("a", "New", 10.0, 1));
        let pending = lead_with("a");
        assert_eq!(
            join_referral(
                Some(pending.clone()),
                &again,
                UpsertOutcome::Unchanged,
                at(2)
            ),
            LeadJoin::PushAgain(pending.clone())
        );
        let mut synced = pending;
        synced.sync_status = SyncStatus::Synced;
        assert_eq!(
            join_referral(Some(synced), &again, UpsertOutcome::Unchanged, at(2)),
            LeadJoin::Unchanged
        );
    }

    #[test]
    fn when_a_referral_is_stale_ineligible_or_domainless_should_leave_the_lead_alone() {
        let other = with_domain(record("b", "New", 10.0, 1));
        assert_eq!(
            join_referral(Some(lead_with("a")), &other, UpsertOutcome::Stale, at(2)),
            LeadJoin::Unchanged
        );
        let mut skipped = other.clone();
        skipped.eligible = false;
        assert_eq!(
            join_referral(
                Some(lead_with("a")),
                &skipped,
                UpsertOutcome::Inserted,
                at(2)
            ),
            LeadJoin::Unchanged,
            "an ineligible referral the lead does not count"
        );
        let mut no_domain = other;
        no_domain.domain = None;
        assert_eq!(
            join_referral(None, &no_domain, UpsertOutcome::Inserted, at(2)),
            LeadJoin::Unchanged
        );
    }

    #[test]
    fn when_a_counted_referral_leaves_eligibility_should_refresh_the_lead() {
        let mut closed = with_domain(record("a", "Closed", 10.0, 5));
        closed.eligible = false;
        match join_referral(Some(lead_with("a")), &closed, UpsertOutcome::Updated, at(6)) {
            LeadJoin::Changed(lead) => assert_eq!(lead.latest_status.as_deref(), Some("Closed")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn when_dynamics_has_the_version_should_need_no_push_unless_forced() {
        let mut lead = lead_with("a");
        assert!(push_needed(&lead, 1, false), "never pushed");
        lead.synced_version = Some(2);
        assert!(!push_needed(&lead, 1, false) && !push_needed(&lead, 2, false));
        assert!(push_needed(&lead, 3, false));
        assert!(push_needed(&lead, 1, true), "a person asked for it");
    }

    #[test]
    fn when_a_push_is_recorded_should_move_the_sync_status() {
        let mut lead = lead_with("a");
        let pushed = lead.content_version;
        record_push(&mut lead, pushed, &PushAttempt::Retry("429".into()), at(3));
        assert_eq!(
            (lead.sync_status, lead.last_error.as_deref()),
            (SyncStatus::Pending, Some("429"))
        );
        let synced = PushAttempt::Synced {
            dynamics_id: "d-1".into(),
        };
        record_push(&mut lead, pushed, &synced, at(4));
        assert_eq!(lead.sync_status, SyncStatus::Synced);
        assert_eq!(lead.synced_version, Some(pushed));
        assert_eq!(
            (lead.dynamics_id.as_deref(), lead.last_error.as_deref()),
            (Some("d-1"), None)
        );
        assert_eq!(lead.sync_attempts, 2);
        record_push(
            &mut lead,
            pushed,
            &PushAttempt::Failed("0x80044331".into()),
            at(5),
        );
        assert_eq!(lead.sync_status, SyncStatus::Failed);
    }

    #[test]
    fn when_a_change_arrived_during_the_push_should_stay_pending() {
        let mut lead = lead_with("a");
        let pushed = lead.content_version;
        merge_referral(&mut lead, &with_domain(record("b", "New", 1.0, 2)), at(2));
        let synced = PushAttempt::Synced {
            dynamics_id: "d-1".into(),
        };
        record_push(&mut lead, pushed, &synced, at(3));
        assert_eq!(lead.sync_status, SyncStatus::Pending);
        assert_eq!(lead.synced_version, Some(pushed));
    }

    #[test]
    fn when_asked_for_newest_and_active_referrals_should_find_them() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), at(0));
        merge_referral(&mut lead, &record("a", "Active", 1.0, 4), at(5));
        merge_referral(&mut lead, &record("b", "New", 1.0, 2), at(5));
        assert_eq!(newest_contribution(&lead).map(|c| c.id.as_str()), Some("a"));
        let active: Vec<&str> = active_contributions(&lead).map(|c| c.id.as_str()).collect();
        assert_eq!(active, vec!["a"]);
    }
}
