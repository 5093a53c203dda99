//! One lead per registrable domain: how a referral joins it and what the lead shows.

use chrono::{DateTime, Utc};

use crate::model::{Lead, LeadReferral, ReferralRecord};

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

fn recompute(lead: &mut Lead) {
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
    let latest = contributions
        .iter()
        .max_by(|a, b| (a.updated_date_time, &a.id).cmp(&(b.updated_date_time, &b.id)));
    lead.latest_status = latest.and_then(|c| c.status.clone());
    lead.deal_value_total = contributions
        .iter()
        .filter_map(|c| c.deal_value)
        .filter(|v| v.is_finite())
        .sum();
    if let Some(name) = latest
        .and_then(|c| c.customer_name.clone())
        .filter(|n| !n.trim().is_empty())
    {
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
}
