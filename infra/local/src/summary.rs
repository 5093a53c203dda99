//! The JSON summary `hunter-local --once` prints.

use std::collections::BTreeMap;

use fetch_referrals::{FetchStatus, FetchSummary};
use hunter_domain::model::SyncRun;
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
