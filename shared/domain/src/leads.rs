//! One lead per registrable domain: how a referral joins it, when it needs a push, and what a
//! push attempt does to it.

use chrono::{DateTime, Utc};

use crate::model::{LEAD_RECENT_REFERRALS, Lead, LeadReferral, ReferralRecord, SyncStatus};
use crate::rules::UpsertOutcome;

/// A lead as stored with the contribution of one of its referrals (`None`: the referral does
/// not count in it yet).
#[derive(Debug, Clone, PartialEq)]
pub struct LeadWithReferral {
    pub lead: Lead,
    pub contribution: Option<LeadReferral>,
}

/// What storing a referral means for the lead of its domain.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadJoin {
    /// Nothing to write, no push to ask for.
    Unchanged,
    /// Write this lead (created or changed, now pending) with the referral's contribution, and
    /// ask for its push.
    Changed(Lead, LeadReferral),
    /// Nothing changed, but this is a redelivery and the lead still waits for its push: the first
    /// request may have been lost, so ask again.
    PushAgain(Lead),
    /// Write this lead with the referral's contribution, but ask for no push: the change is a CRM
    /// outcome Hunter itself mirrored to Partner Center, coming back (Dynamics has it already).
    Recorded(Lead, LeadReferral),
}

impl LeadJoin {
    /// The join writes the lead (created or changed) with the referral's contribution.
    pub fn writes_lead(&self) -> bool {
        matches!(self, Self::Changed(..) | Self::Recorded(..))
    }
}

/// Joins `record`, stored with `outcome`, to `stored`, the lead of its domain with the record's
/// contribution (`None`: no lead yet). An eligible referral creates or changes the lead; one
/// that left eligibility only refreshes a lead that counts it already. A stale delivery changes
/// nothing.
pub fn join_referral(
    stored: Option<LeadWithReferral>,
    record: &ReferralRecord,
    outcome: UpsertOutcome,
    now: DateTime<Utc>,
) -> LeadJoin {
    let Some(domain) = &record.domain else {
        return LeadJoin::Unchanged;
    };
    let counted = stored.as_ref().is_some_and(|s| s.contribution.is_some());
    if outcome == UpsertOutcome::Stale || (!record.eligible && !counted) {
        return LeadJoin::Unchanged;
    }
    let (mut lead, contribution, existed) = match stored {
        Some(s) => (s.lead, s.contribution, true),
        None => (Lead::new(domain.clone(), now), None, false),
    };
    let echo = is_mirror_echo(&lead, contribution.as_ref(), record);
    let (content_version, sync_status) = (lead.content_version, lead.sync_status);
    if let Some(written) = merge_referral(&mut lead, contribution.as_ref(), record, now) {
        if echo {
            lead.content_version = content_version;
            lead.sync_status = sync_status;
            // Came back: the mark has done its work.
            if let Some(crm) = lead.crm.as_mut() {
                crm.mirrored.remove(&record.id);
            }
            return LeadJoin::Recorded(lead, written);
        }
        lead.sync_status = SyncStatus::Pending;
        return LeadJoin::Changed(lead, written);
    }
    if existed && outcome == UpsertOutcome::Unchanged && lead.sync_status == SyncStatus::Pending {
        return LeadJoin::PushAgain(lead);
    }
    LeadJoin::Unchanged
}

/// Adds `record`'s contribution to `lead`, or replaces `stored`, its earlier one, and updates the
/// aggregates (count, recent ids, types, newest referral, deal values per currency, company
/// name). An older version than the one counted, or one that differs only in time, changes
/// nothing: `None`. Otherwise the contribution to store.
pub fn merge_referral(
    lead: &mut Lead,
    stored: Option<&LeadReferral>,
    record: &ReferralRecord,
    now: DateTime<Utc>,
) -> Option<LeadReferral> {
    let contribution = LeadReferral {
        id: record.id.clone(),
        referral_type: record.referral_type.clone(),
        status: record.status.clone(),
        deal_value: record.deal_value.filter(|v| v.is_finite()),
        currency: record.currency.clone(),
        customer_name: record.customer_name.clone(),
        updated_date_time: record.updated_date_time,
        opportunity_id: stored.and_then(|old| old.opportunity_id.clone()),
    };
    if let Some(old) = stored {
        let only_time_moved = LeadReferral {
            updated_date_time: old.updated_date_time,
            ..contribution.clone()
        } == *old;
        // Older than counted, or only the time moved (e.g. Partner Center stored our write-back):
        // nothing to show or push.
        if old.updated_date_time > contribution.updated_date_time || only_time_moved {
            return None;
        }
        adjust(lead, old, -1);
    } else {
        lead.referral_count = lead.referral_count.saturating_add(1);
    }
    adjust(lead, &contribution, 1);
    let newest = |c: &LeadReferral| (c.updated_date_time, c.id.clone());
    let is_newest = lead.latest.as_ref().is_none_or(|latest| {
        latest.id == contribution.id || newest(&contribution) >= newest(latest)
    });
    if is_newest {
        lead.latest = Some(contribution.clone());
    }
    if let Some(name) = lead
        .latest
        .as_ref()
        .and_then(|l| l.customer_name.clone())
        .filter(|n| !n.trim().is_empty())
    {
        lead.company_name = Some(name);
    }
    lead.referral_ids.retain(|id| *id != contribution.id);
    lead.referral_ids.insert(0, contribution.id.clone());
    lead.referral_ids.truncate(LEAD_RECENT_REFERRALS);
    lead.content_version += 1;
    lead.updated_at = now;
    Some(contribution)
}

/// Adds (`sign` 1) or takes away (`sign` −1) a contribution's type and deal value.
fn adjust(lead: &mut Lead, contribution: &LeadReferral, sign: i8) {
    if let Some(kind) = &contribution.referral_type {
        let count = lead.referral_types.entry(kind.clone()).or_default();
        *count = if sign > 0 {
            count.saturating_add(1)
        } else {
            count.saturating_sub(1)
        };
        if *count == 0 {
            lead.referral_types.remove(kind);
        }
    }
    if let Some(value) = contribution.deal_value {
        let currency = contribution.currency.clone().unwrap_or_default();
        let total = lead.deal_values.entry(currency.clone()).or_default();
        // Kept in cents, so adding and taking away never drifts.
        *total = ((*total + f64::from(sign) * value) * 100.0).round() / 100.0;
        if sign < 0 && *total == 0.0 {
            lead.deal_values.remove(&currency);
        }
    }
}

/// Whether a seller accepted the referral (status Active): a candidate for an opportunity.
pub fn is_active(contribution: &LeadReferral) -> bool {
    contribution
        .status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("Active"))
}

/// Whether `record` is a CRM outcome Hunter mirrored to Partner Center coming back: closed with
/// the substatus Hunter set on it, and otherwise what the lead already counts (status and time
/// aside).
fn is_mirror_echo(lead: &Lead, counted: Option<&LeadReferral>, record: &ReferralRecord) -> bool {
    let mirrored = lead
        .crm
        .as_ref()
        .and_then(|crm| crm.mirrored.get(&record.id));
    let (Some(substatus), Some(old)) = (mirrored, counted) else {
        return false;
    };
    let same_otherwise = old.referral_type == record.referral_type
        && old.deal_value == record.deal_value.filter(|v| v.is_finite())
        && old.currency == record.currency
        && old.customer_name == record.customer_name;
    record.status.as_deref() == Some(CLOSED)
        && record.substatus.as_deref() == Some(substatus.as_str())
        && same_otherwise
}

/// Partner Center's status of a closed referral.
pub const CLOSED: &str = "Closed";

/// Whether a push request for content version `requested` still has work: not when Dynamics has
/// that version or a newer one, unless a person forced it.
pub fn push_needed(lead: &Lead, requested: u64, force: bool) -> bool {
    force || lead.synced_version.is_none_or(|synced| synced < requested)
}

/// How a push attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushAttempt {
    /// Dynamics holds the lead under this record id (`adopted`: a record made by hand, now keyed).
    Synced { dynamics_id: String, adopted: bool },
    /// Dynamics refused the lead for good (the data must change); the reason.
    Failed(String),
    /// A failure that may pass; the push is tried again.
    Retry(String),
}

impl PushAttempt {
    /// The attempt as the lead's audit trail says it: action, result, detail.
    pub fn audit(&self) -> (&'static str, &'static str, String) {
        match self {
            Self::Synced {
                dynamics_id,
                adopted,
            } => (
                if *adopted { "adopt" } else { "upsert" },
                "synced",
                format!("dynamicsId {dynamics_id}"),
            ),
            Self::Failed(error) => ("upsert", "failed", error.clone()),
            Self::Retry(error) => ("upsert", "retry", error.clone()),
        }
    }
}

/// Records a push attempt of content version `pushed` on `lead` (as read now, which may hold
/// changes ingested while the push ran): synced only if nothing changed meanwhile, else it stays
/// pending for the push its change asked for.
pub fn record_push(lead: &mut Lead, pushed: u64, attempt: &PushAttempt, now: DateTime<Utc>) {
    lead.sync_attempts += 1;
    match attempt {
        PushAttempt::Synced { dynamics_id, .. } => {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

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
        r.currency = Some("EUR".to_owned());
        r.customer_name = Some(format!("Contoso {id}"));
        r.updated_date_time = Some(at(updated));
        r.domain = Some(normalize_domain("contoso.com").unwrap());
        r.eligible = true;
        r.skip_reason = None;
        r
    }

    /// A lead and its stored contributions, as a store keeps them.
    #[derive(Debug, Default)]
    struct Stored {
        lead: Option<Lead>,
        contributions: HashMap<String, LeadReferral>,
    }

    impl Stored {
        fn join(&mut self, record: &ReferralRecord, outcome: UpsertOutcome) -> LeadJoin {
            let stored = self.lead.clone().map(|lead| LeadWithReferral {
                lead,
                contribution: self.contributions.get(&record.id).cloned(),
            });
            let join = join_referral(stored, record, outcome, at(12));
            if let LeadJoin::Changed(lead, contribution) | LeadJoin::Recorded(lead, contribution) =
                &join
            {
                self.lead = Some(lead.clone());
                self.contributions
                    .insert(contribution.id.clone(), contribution.clone());
            }
            join
        }

        fn lead(&self) -> &Lead {
            self.lead.as_ref().unwrap()
        }
    }

    fn lead_with(id: &str) -> Stored {
        let mut stored = Stored::default();
        stored.join(&record(id, "New", 10.0, 1), UpsertOutcome::Inserted);
        stored
    }

    #[test]
    fn when_referrals_join_a_lead_should_aggregate_count_ids_types_status_and_value() {
        let mut stored = Stored::default();
        stored.join(&record("a", "New", 1000.0, 1), UpsertOutcome::Inserted);
        stored.join(&record("b", "Active", 250.5, 3), UpsertOutcome::Inserted);
        let lead = stored.lead();
        assert_eq!(lead.referral_count, 2);
        assert_eq!(lead.referral_ids, vec!["b", "a"], "newest first");
        assert_eq!(
            lead.referral_types,
            BTreeMap::from([("Independent".to_owned(), 1), ("Shared".to_owned(), 1)])
        );
        assert!(lead.has_co_sell());
        assert_eq!(lead.latest_status(), Some("Active"));
        assert_eq!(lead.deal_values["EUR"], 1250.5);
        assert_eq!(lead.deal_value(), Some(1250.5));
        assert_eq!(lead.company_name.as_deref(), Some("Contoso b"));
    }

    #[test]
    fn when_a_referral_is_updated_should_replace_its_contribution_not_add_one() {
        let mut stored = lead_with("a");
        let mut update = record("a", "Active", 3000.0, 2);
        update.referral_type = Some("Shared".to_owned());
        assert!(matches!(
            stored.join(&update, UpsertOutcome::Updated),
            LeadJoin::Changed(..)
        ));
        let lead = stored.lead();
        assert_eq!(lead.referral_count, 1);
        assert_eq!(lead.latest_status(), Some("Active"));
        assert_eq!(lead.deal_values["EUR"], 3000.0);
        assert_eq!(
            lead.referral_types,
            BTreeMap::from([("Shared".to_owned(), 1)]),
            "the old type is taken away"
        );
        assert_eq!(lead.updated_at, at(12));
    }

    #[test]
    fn when_the_same_or_an_older_version_arrives_should_change_nothing() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), at(0));
        let counted = merge_referral(&mut lead, None, &record("a", "Active", 3000.0, 2), at(5));
        let before = lead.clone();
        let counted = counted.as_ref();
        assert!(
            merge_referral(&mut lead, counted, &record("a", "Active", 3000.0, 2), at(7)).is_none()
        );
        assert!(
            merge_referral(&mut lead, counted, &record("a", "New", 1000.0, 1), at(7)).is_none()
        );
        assert!(
            merge_referral(&mut lead, counted, &record("a", "Active", 3000.0, 9), at(7)).is_none(),
            "only the time moved"
        );
        assert_eq!(lead, before);
    }

    #[test]
    fn when_deal_values_come_in_several_currencies_should_sum_each_on_its_own() {
        let mut stored = Stored::default();
        let mut usd = record("u", "New", 100.25, 1);
        usd.currency = Some("USD".to_owned());
        let mut none = record("n", "New", 7.0, 2);
        none.currency = None;
        stored.join(&usd, UpsertOutcome::Inserted);
        stored.join(&record("e", "New", 0.1, 3), UpsertOutcome::Inserted);
        stored.join(&none, UpsertOutcome::Inserted);
        let mut e2 = record("e", "New", 0.2, 4);
        e2.currency = Some("EUR".to_owned());
        stored.join(&e2, UpsertOutcome::Updated);
        let lead = stored.lead();
        assert_eq!(
            lead.deal_values,
            BTreeMap::from([
                (String::new(), 7.0),
                ("EUR".to_owned(), 0.2),
                ("USD".to_owned(), 100.25)
            ])
        );
        assert_eq!(
            lead.deal_value(),
            Some(0.2),
            "in the newest referral's currency"
        );
    }

    #[test]
    fn when_a_domain_has_many_referrals_should_keep_only_the_newest_ids_on_the_lead() {
        let mut stored = Stored::default();
        for n in 0..(LEAD_RECENT_REFERRALS as u32 + 5) {
            stored.join(
                &record(&format!("r{n:02}"), "New", 1.0, n % 24),
                UpsertOutcome::Inserted,
            );
        }
        let lead = stored.lead();
        assert_eq!(lead.referral_count, LEAD_RECENT_REFERRALS as u32 + 5);
        assert_eq!(lead.referral_ids.len(), LEAD_RECENT_REFERRALS);
        assert_eq!(lead.referral_ids[0], "r24");
        assert_eq!(stored.contributions.len(), LEAD_RECENT_REFERRALS + 5);
    }

    #[test]
    fn when_an_eligible_referral_is_stored_should_create_or_change_a_pending_lead() {
        let mut stored = Stored::default();
        assert!(matches!(
            stored.join(&record("a", "New", 10.0, 1), UpsertOutcome::Inserted),
            LeadJoin::Changed(..)
        ));
        assert_eq!(stored.lead().sync_status, SyncStatus::Pending);
        stored.lead.as_mut().unwrap().sync_status = SyncStatus::Synced;
        match stored.join(&record("a", "Active", 10.0, 2), UpsertOutcome::Updated) {
            LeadJoin::Changed(lead, contribution) => {
                assert_eq!(
                    lead.sync_status,
                    SyncStatus::Pending,
                    "a change waits for its push"
                );
                assert_eq!(lead.latest_status(), Some("Active"));
                assert_eq!(contribution.status.as_deref(), Some("Active"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn when_an_outcome_hunter_mirrored_comes_back_should_record_it_without_a_push() {
        let mut stored = lead_with("a");
        let lead = stored.lead.as_mut().unwrap();
        lead.sync_status = SyncStatus::Synced;
        lead.synced_version = Some(lead.content_version);
        let synced = lead.content_version;
        let mut crm = crate::crm::CrmState::default();
        crm.mirrored.insert("a".to_owned(), "Won".to_owned());
        lead.crm = Some(crm.clone());

        let mut won = record("a", CLOSED, 10.0, 2);
        won.substatus = Some("Won".to_owned());
        match stored.join(&won, UpsertOutcome::Updated) {
            LeadJoin::Recorded(lead, contribution) => {
                assert_eq!(contribution.status.as_deref(), Some(CLOSED));
                assert_eq!(lead.latest_status(), Some(CLOSED), "shown");
                assert_eq!(lead.content_version, synced, "nothing new for Dynamics");
                assert_eq!(lead.sync_status, SyncStatus::Synced);
                assert!(lead.crm.unwrap().mirrored.is_empty(), "the mark is done");
            }
            other => panic!("{other:?}"),
        }

        // Another substatus, or anything else changing with it, is a change to push.
        let mirrored_won = || {
            let mut other = lead_with("a");
            other.lead.as_mut().unwrap().crm = Some(crm.clone());
            other
        };
        let mut lost = record("a", CLOSED, 10.0, 2);
        lost.substatus = Some("Lost".to_owned());
        assert!(matches!(
            mirrored_won().join(&lost, UpsertOutcome::Updated),
            LeadJoin::Changed(..)
        ));
        let mut won_bigger = record("a", CLOSED, 99.0, 2);
        won_bigger.substatus = Some("Won".to_owned());
        assert!(matches!(
            mirrored_won().join(&won_bigger, UpsertOutcome::Updated),
            LeadJoin::Changed(..)
        ));
    }

    #[test]
    fn when_nothing_changes_should_ask_again_only_for_a_redelivered_pending_lead() {
        let mut stored = lead_with("a");
        let again = record("a", "New", 10.0, 1);
        let pending = stored.lead().clone();
        assert_eq!(
            stored.join(&again, UpsertOutcome::Unchanged),
            LeadJoin::PushAgain(pending)
        );
        stored.lead.as_mut().unwrap().sync_status = SyncStatus::Synced;
        assert_eq!(
            stored.join(&again, UpsertOutcome::Unchanged),
            LeadJoin::Unchanged
        );
    }

    #[test]
    fn when_a_referral_is_stale_ineligible_or_domainless_should_leave_the_lead_alone() {
        let mut stored = lead_with("a");
        let other = record("b", "New", 10.0, 1);
        assert_eq!(
            stored.join(&other, UpsertOutcome::Stale),
            LeadJoin::Unchanged
        );
        let mut skipped = other.clone();
        skipped.eligible = false;
        assert_eq!(
            stored.join(&skipped, UpsertOutcome::Inserted),
            LeadJoin::Unchanged,
            "an ineligible referral the lead does not count"
        );
        let mut no_domain = other;
        no_domain.domain = None;
        assert_eq!(
            Stored::default().join(&no_domain, UpsertOutcome::Inserted),
            LeadJoin::Unchanged
        );
    }

    #[test]
    fn when_a_counted_referral_leaves_eligibility_should_refresh_the_lead() {
        let mut stored = lead_with("a");
        let mut closed = record("a", "Closed", 10.0, 5);
        closed.eligible = false;
        match stored.join(&closed, UpsertOutcome::Updated) {
            LeadJoin::Changed(lead, _) => assert_eq!(lead.latest_status(), Some("Closed")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn when_dynamics_has_the_version_should_need_no_push_unless_forced() {
        let mut lead = lead_with("a").lead().clone();
        assert!(push_needed(&lead, 1, false), "never pushed");
        lead.synced_version = Some(2);
        assert!(!push_needed(&lead, 1, false) && !push_needed(&lead, 2, false));
        assert!(push_needed(&lead, 3, false));
        assert!(push_needed(&lead, 1, true), "a person asked for it");
    }

    #[test]
    fn when_a_push_is_recorded_should_move_the_sync_status() {
        let mut lead = lead_with("a").lead().clone();
        let pushed = lead.content_version;
        record_push(&mut lead, pushed, &PushAttempt::Retry("429".into()), at(3));
        assert_eq!(
            (lead.sync_status, lead.last_error.as_deref()),
            (SyncStatus::Pending, Some("429"))
        );
        let synced = PushAttempt::Synced {
            dynamics_id: "d-1".into(),
            adopted: false,
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
        let mut stored = lead_with("a");
        let pushed = stored.lead().content_version;
        stored.join(&record("b", "New", 1.0, 2), UpsertOutcome::Inserted);
        let mut lead = stored.lead().clone();
        let synced = PushAttempt::Synced {
            dynamics_id: "d-1".into(),
            adopted: false,
        };
        record_push(&mut lead, pushed, &synced, at(3));
        assert_eq!(lead.sync_status, SyncStatus::Pending);
        assert_eq!(lead.synced_version, Some(pushed));
    }

    #[test]
    fn when_asked_for_accepted_referrals_should_find_them() {
        let stored = lead_with("a");
        assert!(!is_active(&stored.contributions["a"]));
        let mut active = stored.contributions["a"].clone();
        active.status = Some("active".to_owned());
        assert!(is_active(&active));
    }
}
