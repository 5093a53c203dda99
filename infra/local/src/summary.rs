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
    pub leads_upserted: usize,
    /// Those leads by the state of their domain's last scan (`ok`, `no_mx`, `timeout`, ...).
    pub scan_states: BTreeMap<String, u32>,
    /// Those leads with a score.
    pub leads_scored: usize,
    /// Their scores in bands of ten (`"00-09"`, ..., `"90-100"`).
    pub scores: BTreeMap<String, u32>,
    /// Those leads by segment (`Existing`, `Migration`, `Cold`, `Skip`).
    pub segments: BTreeMap<String, u32>,
    /// Those leads by priority category (`P1`..`P6`).
    pub priority_categories: BTreeMap<String, u32>,
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
            leads_upserted: 0,
            scan_states: BTreeMap::new(),
            leads_scored: 0,
            scores: BTreeMap::new(),
            segments: BTreeMap::new(),
            priority_categories: BTreeMap::new(),
            pushes_queued: 0,
            dynamics_pushed: 0,
            dynamics_failed: 0,
            dlq: 0,
            duration_ms: 0,
            error: fetch.error.clone(),
        }
    }

    /// Counts `leads` (those this sync created or changed) by scan state, segment and category.
    pub fn count_leads(&mut self, leads: &[Lead]) {
        self.leads_upserted = leads.len();
        self.leads_scored = leads.iter().filter(|l| l.score.is_some()).count();
        for lead in leads {
            *self
                .scan_states
                .entry(lead.scan_state.as_str().to_owned())
                .or_default() += 1;
            if let Some(score) = lead.score {
                let band = match score / 10 {
                    9.. => "90-100".to_owned(),
                    tens => format!("{:02}-{:02}", tens * 10, tens * 10 + 9),
                };
                *self.scores.entry(band).or_default() += 1;
            }
            if let Some(segment) = lead.segment {
                *self.segments.entry(segment.to_string()).or_default() += 1;
            }
            if let Some(category) = lead.priority_category {
                *self
                    .priority_categories
                    .entry(category.to_string())
                    .or_default() += 1;
            }
        }
    }

    /// Whether the sync worked and nothing was dead-lettered (the exit status of `--once`).
    pub fn is_success(&self) -> bool {
        self.status == FetchStatus::Succeeded && self.dlq == 0
    }
}
