//! The JSON summary `hunter-local --once` prints.

use std::collections::BTreeMap;

use fetch_referrals::{FetchStatus, FetchSummary};
use hunter_core::crm_pull::PullSummary;
use hunter_domain::model::{Lead, SyncRun};
use hunter_domain::stats::LeadStats;
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
    /// What the pull of CRM changes after the pushes did (`null` with `--no-dynamics`).
    pub crm_pull: Option<PullSummary>,
    /// Why that pull failed, if it did (the sync's own figures stand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_pull_error: Option<String>,
    pub duration_ms: u128,
    /// Where the time went.
    pub stages: StageTimes,
    pub error: Option<String>,
}

/// Where a `--once` run spent its time: fetch, then ingest, then the pushes, one after the other
/// (their sum is about `durationMs`); queue calls and DNS scans are summed across all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageTimes {
    /// Fetching every page and sending its referrals to the referrals queue (ingest runs beside
    /// it, except with `--aws`).
    pub fetch_ms: u128,
    /// Draining the referrals queue through ingest-referral (scans included) once the fetch
    /// has ended.
    pub ingest_ms: u128,
    /// Draining the push queue through push-dynamics.
    pub push_ms: u128,
    /// Inside queue calls (send, receive, delete), in every phase.
    pub queue_ms: u128,
    /// Inside DNS scans (during ingest).
    pub scan_ms: u128,
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
            crm_pull: None,
            crm_pull_error: None,
            duration_ms: 0,
            stages: StageTimes::default(),
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
    pub leads_upserted: u64,
    /// By the state of their domain's last scan (`ok`, `no_mx`, `timeout`, ...).
    pub scan_states: BTreeMap<String, u64>,
    /// Those with a score.
    pub leads_scored: u64,
    /// Scores in bands of ten (`"00-09"`, ..., `"90-100"`).
    pub scores: BTreeMap<String, u64>,
    /// By segment (`Existing`, `Migration`, `Cold`, `Skip`).
    pub segments: BTreeMap<String, u64>,
    /// By priority category (`P1`..`P6`).
    pub priority_categories: BTreeMap<String, u64>,
}

impl LeadCounts {
    /// Counts `leads` by scan state, score band, segment and priority category.
    pub fn of(leads: &[Lead]) -> Self {
        let stats = LeadStats::of(leads);
        Self {
            leads_upserted: stats.leads,
            scan_states: stats.scan_states,
            leads_scored: stats.scored,
            scores: stats.score_bands,
            segments: stats.segments,
            priority_categories: stats.priority_categories,
        }
    }
}
