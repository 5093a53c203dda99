//! When a lead's domain is scanned, and what a scan makes of the lead: its score and the rest of
//! its judgement, its signals, its scan state, and a short history of how the judgement changed.

use chrono::{DateTime, Duration, Utc};

use crate::model::{LEAD_HISTORY, Lead, ScoreChange};
use crate::scan::DomainScan;
use crate::scoring::{Assessment, PriorityCategory, Segment, TenantSize};

/// How long a started scan keeps others from starting one (longer than a scan's deadline).
pub const SCAN_CLAIM: Duration = Duration::minutes(2);

/// Claims the scan of `lead`'s domain when one is due: never scanned, or the last scan is older
/// than `rescan_after`, and no scan started within [`SCAN_CLAIM`] (one scan per domain, however
/// many of its referrals arrive at once). Returns whether the caller is to scan.
pub fn claim_scan(lead: &mut Lead, now: DateTime<Utc>, rescan_after: std::time::Duration) -> bool {
    let rescan_after = Duration::from_std(rescan_after).unwrap_or(Duration::MAX);
    let due = lead.scanned_at.is_none_or(|at| now - at >= rescan_after);
    let claimed = lead
        .scan_claimed_at
        .is_some_and(|at| now - at < SCAN_CLAIM && at <= now);
    if due && !claimed {
        lead.scan_claimed_at = Some(now);
    }
    due && !claimed
}

/// Whether `lead` has never been scanned while another scan of its domain was claimed within
/// [`SCAN_CLAIM`]: that scan may have died with its process, so whoever sees this comes back later
/// (after the claim) rather than leaving the lead unscored for good.
pub fn first_scan_claimed_elsewhere(lead: &Lead, now: DateTime<Utc>) -> bool {
    lead.scanned_at.is_none()
        && lead
            .scan_claimed_at
            .is_some_and(|at| now - at < SCAN_CLAIM && at <= now)
}

/// How long the claim on `lead`'s scan still holds at `now` (zero when it does not).
pub fn scan_claim_left(lead: &Lead, now: DateTime<Utc>) -> std::time::Duration {
    lead.scan_claimed_at
        .map(|at| (at + SCAN_CLAIM - now).to_std().unwrap_or_default())
        .unwrap_or_default()
        .min(SCAN_CLAIM.to_std().unwrap_or_default())
}

/// Records `scan` on `lead` with `assessment`, what the rules make of it (`None` when the scan
/// failed: SERVFAIL or timeout). A failed scan keeps the last score and signals and records the
/// failure; a first scan that fails leaves the lead unscored. Returns whether what the lead
/// says changed (score, provider, segment or the rest of its judgement): then it needs a push.
pub fn apply_scan(
    lead: &mut Lead,
    scan: &DomainScan,
    assessment: Option<Assessment>,
    now: DateTime<Utc>,
) -> bool {
    lead.scan_state = scan.state;
    lead.scanned_at = Some(scan.scanned_at);
    lead.scan_detail = scan.detail.clone();
    lead.scan_claimed_at = None;
    lead.updated_at = now;
    let Some(assessment) = assessment else {
        return false;
    };
    lead.signals = Some(scan.signals.clone());
    let before = Judgement::of(lead);
    lead.score = Some(assessment.score);
    lead.provider = Some(assessment.provider.clone());
    lead.tenant_size = assessment.tenant_size;
    lead.segment = Some(assessment.segment);
    lead.priority = Some(assessment.priority);
    lead.priority_category = Some(assessment.priority_category);
    lead.commercial_segment = Some(assessment.commercial_segment);
    lead.commercial_heat = Some(assessment.commercial_heat);
    lead.score_breakdown = assessment.breakdown;
    if before == Judgement::of(lead) {
        return false;
    }
    lead.history.push(ScoreChange {
        at: now,
        score: assessment.score,
        provider: assessment.provider,
        segment: assessment.segment,
    });
    let excess = lead.history.len().saturating_sub(LEAD_HISTORY);
    lead.history.drain(..excess);
    lead.content_version += 1;
    lead.sync_status = crate::model::SyncStatus::Pending;
    true
}

/// What a push carries of a lead's judgement: a change in any of it needs a push.
#[derive(PartialEq)]
struct Judgement {
    score: Option<u8>,
    provider: Option<String>,
    segment: Option<Segment>,
    tenant_size: Option<TenantSize>,
    priority: Option<u8>,
    priority_category: Option<PriorityCategory>,
}

impl Judgement {
    fn of(lead: &Lead) -> Self {
        Self {
            score: lead.score,
            provider: lead.provider.clone(),
            segment: lead.segment,
            tenant_size: lead.tenant_size,
            priority: lead.priority,
            priority_category: lead.priority_category,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::SyncStatus;
    use crate::rules::{Rules, normalize_domain};
    use crate::scan::{DnsAnswers, MxRecord, ScanState, Signals};
    use crate::scoring::{ScoreInput, Segment, assess};

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap() + Duration::minutes(minute)
    }

    fn lead() -> Lead {
        Lead::new(normalize_domain("contoso.com").unwrap(), at(0))
    }

    fn scan(state: ScanState, mx: &str, minute: i64) -> DomainScan {
        let answers = DnsAnswers {
            mx: (!mx.is_empty())
                .then(|| MxRecord {
                    preference: 10,
                    host: mx.to_owned(),
                })
                .into_iter()
                .collect(),
            apex_txt: vec!["v=spf1 include:spf.protection.outlook.com -all".to_owned()],
            ..DnsAnswers::default()
        };
        DomainScan {
            domain: normalize_domain("contoso.com").unwrap(),
            state,
            signals: Signals::read(&answers),
            scanned_at: at(minute),
            detail: (state != ScanState::Ok).then(|| format!("{state:?}")),
        }
    }

    fn assessed(scan: &DomainScan) -> Option<Assessment> {
        let input = ScoreInput {
            state: scan.state,
            signals: &scan.signals,
            co_sell: false,
            azure_tenant: false,
        };
        assess(&input, Rules::embedded().scoring())
    }

    fn apply(lead: &mut Lead, scan: &DomainScan) -> bool {
        apply_scan(lead, scan, assessed(scan), scan.scanned_at)
    }

    #[test]
    fn when_a_lead_was_never_scanned_should_claim_its_scan_once() {
        let mut lead = lead();
        let week = std::time::Duration::from_secs(7 * 86_400);
        assert!(claim_scan(&mut lead, at(0), week));
        assert!(
            !claim_scan(&mut lead, at(1), week),
            "a scan under way is not started twice"
        );
        assert!(
            claim_scan(&mut lead, at(3), week),
            "a claim that outlived its scan lapses"
        );
    }

    #[test]
    fn when_the_last_scan_is_older_than_rescan_after_should_scan_again() {
        let mut lead = lead();
        apply(&mut lead, &scan(ScanState::Ok, "aspmx.l.google.com", 0));
        let week = std::time::Duration::from_secs(7 * 86_400);
        assert!(!claim_scan(&mut lead, at(60), week), "fresh");
        assert!(claim_scan(&mut lead, at(0) + Duration::days(7), week));
    }
    #[test]
    fn when_a_first_scan_was_claimed_by_another_should_say_so_until_the_claim_ends() {
        let week = std::time::Duration::from_secs(7 * 86_400);
        let mut lead = Lead::new(
            crate::rules::normalize_domain("contoso.com").unwrap(),
            at(0),
        );
        assert!(
            !first_scan_claimed_elsewhere(&lead, at(0)),
            "nobody claimed it"
        );
        assert!(claim_scan(&mut lead, at(0), week));
        assert!(first_scan_claimed_elsewhere(&lead, at(1)));
        assert!(
            !first_scan_claimed_elsewhere(&lead, at(0) + SCAN_CLAIM),
            "the claim ended"
        );
        lead.scanned_at = Some(at(1));
        assert!(
            !first_scan_claimed_elsewhere(&lead, at(1)),
            "scanned once: no need"
        );
    }

    #[test]
    fn when_a_scan_scores_the_lead_should_record_the_judgement_and_ask_for_a_push() {
        let mut lead = lead();
        lead.sync_status = SyncStatus::Synced;
        let version = lead.content_version;
        assert!(apply(
            &mut lead,
            &scan(ScanState::Ok, "aspmx.l.google.com", 0)
        ));
        assert_eq!(lead.provider.as_deref(), Some("Google"));
        assert_eq!(lead.scan_state, ScanState::Ok);
        assert!(lead.score.is_some() && lead.segment.is_some() && lead.priority.is_some());
        assert_eq!(
            lead.score_breakdown.iter().map(|l| l.points).sum::<i32>(),
            i32::from(lead.score.unwrap())
        );
        assert!(lead.signals.is_some());
        assert_eq!(lead.content_version, version + 1);
        assert_eq!(lead.sync_status, SyncStatus::Pending);
        assert_eq!(lead.history.len(), 1);
    }

    #[test]
    fn when_a_rescan_says_the_same_should_change_nothing_a_push_would_carry() {
        let mut lead = lead();
        apply(&mut lead, &scan(ScanState::Ok, "aspmx.l.google.com", 0));
        let version = lead.content_version;
        assert!(!apply(
            &mut lead,
            &scan(ScanState::Ok, "aspmx.l.google.com", 10)
        ));
        assert_eq!(lead.content_version, version);
        assert_eq!(lead.scanned_at, Some(at(10)), "the scan itself is recorded");
        assert_eq!(lead.history.len(), 1);
    }

    #[test]
    fn when_a_rescan_changes_the_provider_should_push_and_remember_the_change() {
        let mut lead = lead();
        apply(&mut lead, &scan(ScanState::Ok, "aspmx.l.google.com", 0));
        assert!(apply(
            &mut lead,
            &scan(ScanState::Ok, "contoso-com.mail.protection.outlook.com", 10)
        ));
        assert_eq!(lead.provider.as_deref(), Some("M365"));
        assert_eq!(lead.segment, Some(Segment::Existing));
        let providers: Vec<&str> = lead.history.iter().map(|h| h.provider.as_str()).collect();
        assert_eq!(providers, ["Google", "M365"]);
    }

    #[test]
    fn when_a_rescan_fails_should_keep_the_last_score_and_record_the_failure() {
        let mut lead = lead();
        apply(&mut lead, &scan(ScanState::Ok, "aspmx.l.google.com", 0));
        let scored = (lead.score, lead.provider.clone(), lead.signals.clone());
        assert!(!apply(&mut lead, &scan(ScanState::Timeout, "", 10)));
        assert_eq!(
            (lead.score, lead.provider.clone(), lead.signals.clone()),
            scored
        );
        assert_eq!(lead.scan_state, ScanState::Timeout);
        assert_eq!(lead.scan_detail.as_deref(), Some("Timeout"));
        assert_eq!(lead.scanned_at, Some(at(10)));
    }

    #[test]
    fn when_a_first_scan_fails_should_leave_the_lead_unscored() {
        let mut lead = lead();
        assert!(!apply(&mut lead, &scan(ScanState::Servfail, "", 0)));
        assert_eq!((lead.score, lead.provider.as_deref()), (None, None));
        assert_eq!(lead.scan_state, ScanState::Servfail);
    }

    #[test]
    fn when_the_domain_has_no_mail_should_score_it_zero_and_skip_it() {
        let mut lead = lead();
        assert!(apply(&mut lead, &scan(ScanState::NoMx, "", 0)));
        assert_eq!((lead.score, lead.segment), (Some(0), Some(Segment::Skip)));
    }

    #[test]
    fn when_the_judgement_changes_often_should_keep_only_the_newest_history() {
        let mut lead = lead();
        let hosts = [
            "aspmx.l.google.com",
            "contoso-com.mail.protection.outlook.com",
        ];
        for n in 0..(LEAD_HISTORY + 5) {
            apply(&mut lead, &scan(ScanState::Ok, hosts[n % 2], n as i64));
        }
        assert_eq!(lead.history.len(), LEAD_HISTORY);
        assert_eq!(
            lead.history.last().map(|h| h.at),
            Some(at((LEAD_HISTORY + 4) as i64))
        );
    }
}
