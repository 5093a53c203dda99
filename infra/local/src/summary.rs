//! The JSON summary `hunter-local --once` prints.

use std::collections::BTreeMap;

use fetch_referrals::{FetchStatus, FetchSummary};
use hunter_domain::model::{Lead, SyncRun};
use serde::Serialize;

/// One sync, end to end. Every fetched referral is accounted for: `stored == fetched` and
/// `eligible + sum(skipped) == stored` unless something ended in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnceSummary {
    pub run_id: String,
    pub status: FetchStatus,
    pub pages: u32,
    pub fetched: u32,
    pub enqueued: u32,
    pub stored: u32,
    pub eligible: u32,
    pub skipped: BTreeMap<String, u32>,
    /// Stored referrals by upsert outcome (inserted, updated, unchanged, stale).
    pub outcomes: BTreeMap<String, u32>,
    /// The leads this sync created or changed, counted.
    #[serde(flatten)]
    pub leads: LeadCounts,
    pub pushes_queued: u64,
    /// Leads of this sync now in Dynamics (`synced`).
    pub dynamics_pushed: usize,
    /// Leads of this sync Dynamics refused for good (`failed`, with the reason on the lead).
    pub dynamics_failed: usize,
    pub dlq: u64,
    pub duration_ms: u128,
    pub error: Option<String>,
}

impl OnceSummary {
    pub fn new(fetch: &FetchSummary, run: &SyncRun) -> Self {
        Self {
            run_id: fetch.run_id.clone(),
            status: fetch.status,
            pages: run.pages,
            fetched: run.fetched,
            enqueued: run.enqueued,
            stored: run.stored,
            eligible: run.eligible,
            skipped: run.skipped.clone(),
            outcomes: run.outcomes.clone(),
            leads: LeadCounts::default(),
            pushes_queued: 0,
            dynamics_pushed: 0,
            dynamics_failed: 0,
            dlq: 0,
            duration_ms: 0,
            error: fetch.error.clone(),
        }
    }

    /// Whether the sync worked and nothing was dead-lettered (the exit status of `--once`).
    pub fn is_success(&self) -> bool {
        self.status == FetchStatus::Succeeded && self.dlq == 0
    }
}

/// Leads counted by how their scan ended and what the rules made of them.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadCounts {
    pub leads_upserted: usize,
    /// By the state of their domain's last scan (`ok`, `no_mx`, `timeout`, ...).
    pub scan_states: BTreeMap<String, u32>,
    /// Those with a score.
    pub leads_scored: usize,
    /// Scores in bands of ten (`"00-09"`, ..., `"90-100"`).
    pub scores: BTreeMap<String, u32>,
    /// By segment (`Existing`, `Migration`, `Cold`, `Skip`).
    pub segments: BTreeMap<String, u32>,
    /// By priority category (`P1`..`P6`).
    pub priority_categories: BTreeMap<String, u32>,
}

impl LeadCounts {
    /// Counts `leads` by scan state, score band, segment and priority category.
    pub fn of(leads: &[Lead]) -> Self {
        let mut counts = Self {
            leads_upserted: leads.len(),
            leads_scored: leads.iter().filter(|l| l.score.is_some()).count(),
            ..Self::default()
        };
        for lead in leads {
            count(&mut counts.scan_states, lead.scan_state.as_str());
            if let Some(score) = lead.score {
                let band = match score / 10 {
                    9.. => "90-100".to_owned(),
                    tens => format!("{:02}-{:02}", tens * 10, tens * 10 + 9),
                };
                count(&mut counts.scores, &band);
            }
            if let Some(segment) = lead.segment {
                count(&mut counts.segments, segment.as_str());
            }
            if let Some(category) = lead.priority_category {
                count(&mut counts.priority_categories, category.as_str());
            }
        }
        counts
    }
}

fn count(counts: &mut BTreeMap<String, u32>, key: &str) {
    *counts.entry(key.to_owned()).or_default() += 1;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use hunter_domain::rules::normalize_domain;
    use hunter_domain::scan::ScanState;
    use hunter_domain::scoring::{PriorityCategory, Segment};

    use super::*;

    fn lead(name: &str, score: Option<u8>, state: ScanState) -> Lead {
        let mut lead = Lead::new(normalize_domain(name).unwrap(), hunter_domain::clock::now());
        lead.score = score;
        lead.scan_state = state;
        lead.segment = score.map(|s| {
            if s >= 60 {
                Segment::Existing
            } else {
                Segment::Cold
            }
        });
        lead.priority_category = score.map(|_| PriorityCategory::P2);
        lead
    }

    #[test]
    fn when_counting_leads_should_band_scores_by_ten_with_100_in_the_top_band() {
        let leads = [
            lead("a.com", Some(0), ScanState::NoMx),
            lead("b.com", Some(9), ScanState::Ok),
            lead("c.com", Some(90), ScanState::Ok),
            lead("d.com", Some(100), ScanState::Ok),
            lead("e.com", None, ScanState::Timeout),
        ];
        let counts = LeadCounts::of(&leads);
        assert_eq!(counts.leads_upserted, 5);
        assert_eq!(counts.leads_scored, 4);
        assert_eq!(
            counts.scores,
            BTreeMap::from([("00-09".to_owned(), 2), ("90-100".to_owned(), 2)])
        );
        assert_eq!(
            counts.scan_states,
            BTreeMap::from([
                ("no_mx".to_owned(), 1),
                ("ok".to_owned(), 3),
                ("timeout".to_owned(), 1)
            ])
        );
        assert_eq!(
            counts.segments,
            BTreeMap::from([("Cold".to_owned(), 2), ("Existing".to_owned(), 2)])
        );
        assert_eq!(counts.priority_categories["P2"], 4);
    }
}
