//! Where Hunter keeps referrals, leads, sync runs and sync state.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hunter_domain::model::{
    AuditEntry, Lead, LeadReferral, ReferralRecord, SyncRun, SyncState, SyncStatus,
};
use hunter_domain::rules::{Domain, SkipReason, UpsertOutcome};
use hunter_domain::scan::ScanState;
use hunter_domain::scoring::{PriorityCategory, Segment};
use hunter_domain::stats::LeadStats;
use serde::{Deserialize, Serialize};

/// Largest page any list call returns.
pub const MAX_PAGE_SIZE: usize = 200;
/// Page size when the caller names none.
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// One page of results and the opaque cursor of the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Filters for listing referrals (newest `createdDateTime` first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferralQuery {
    pub status: Option<String>,
    pub substatus: Option<String>,
    pub eligible: Option<bool>,
    pub skip_reason: Option<SkipReason>,
    /// Case-insensitive text in name, customer, domain or id.
    pub q: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// Filters for listing leads (highest score first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadQuery {
    pub segment: Option<Segment>,
    /// Leads of any of these priority categories; empty: all.
    pub priority_categories: Vec<PriorityCategory>,
    pub provider: Option<String>,
    pub min_score: Option<u8>,
    pub sync_status: Option<SyncStatus>,
    pub scan_state: Option<ScanState>,
    /// Case-insensitive text in domain or company name.
    pub q: Option<String>,
    pub sort: LeadSort,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// The order of a lead list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LeadSort {
    /// Highest score first (unscored last).
    #[default]
    Score,
    /// Lowest score first.
    ScoreAscending,
    /// By domain, a to z.
    Domain,
    /// Most referrals first.
    Referrals,
    /// Most recently changed first.
    Updated,
}

impl LeadSort {
    /// Every order with its name in `?sort=` (`-` before a name reverses the default direction).
    pub const NAMES: [(&'static str, LeadSort); 5] = [
        ("score", LeadSort::Score),
        ("-score", LeadSort::ScoreAscending),
        ("domain", LeadSort::Domain),
        ("referrals", LeadSort::Referrals),
        ("updated", LeadSort::Updated),
    ];

    /// Whether the list runs from the greatest sort key down.
    pub fn descending(self) -> bool {
        !matches!(self, LeadSort::ScoreAscending | LeadSort::Domain)
    }
}

/// The page size a query asks for, within `1..=MAX_PAGE_SIZE`.
pub fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE)
}

/// Stores each of `records` in turn ([`ReferralStore::upsert_referral`]), each with its own
/// outcome: what [`ReferralStore::upsert_referrals`] does unless a store can do better, and
/// where a store's batch falls back to.
pub async fn upsert_each<S: ReferralStore + ?Sized>(
    store: &S,
    records: &[&ReferralRecord],
) -> Vec<Result<UpsertOutcome, StoreError>> {
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        outcomes.push(store.upsert_referral(record).await);
    }
    outcomes
}

/// A stored referral to count once in the sync run that delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCount<'a> {
    pub run_id: &'a str,
    pub referral_id: &'a str,
    pub outcome: UpsertOutcome,
    /// `None`: the referral is eligible.
    pub skip_reason: Option<SkipReason>,
}

/// Referrals keyed by id, replaced only by newer versions.
#[async_trait]
pub trait ReferralStore: Send + Sync {
    /// Stores `record` unless the stored version is newer or the same (see [`UpsertOutcome`]).
    async fn upsert_referral(&self, record: &ReferralRecord) -> Result<UpsertOutcome, StoreError>;
    /// [`ReferralStore::upsert_referral`] for the records of a batch, in one call where the
    /// store can: each record's own outcome, in order.
    async fn upsert_referrals(
        &self,
        records: &[&ReferralRecord],
    ) -> Vec<Result<UpsertOutcome, StoreError>> {
        upsert_each(self, records).await
    }
    async fn get_referral(&self, id: &str) -> Result<Option<ReferralRecord>, StoreError>;
    async fn list_referrals(
        &self,
        query: &ReferralQuery,
    ) -> Result<Page<ReferralRecord>, StoreError>;
}

/// Leads keyed by domain, with their audit trail.
#[async_trait]
pub trait LeadStore: Send + Sync {
    async fn get_lead(&self, domain: &Domain) -> Result<Option<Lead>, StoreError>;
    /// Writes `lead` if the stored version is `expected_version` (`None`: none is stored),
    /// else [`StoreError::Conflict`]; with it, in the same write, a referral's `contribution`.
    async fn put_lead(
        &self,
        lead: &Lead,
        expected_version: Option<u64>,
        contribution: Option<&LeadReferral>,
    ) -> Result<(), StoreError>;
    /// What referral `referral_id` contributes to the lead of `domain`, if it counts there.
    async fn get_contribution(
        &self,
        domain: &Domain,
        referral_id: &str,
    ) -> Result<Option<LeadReferral>, StoreError>;
    /// The contributions of a lead's referrals, by referral id.
    async fn list_contributions(
        &self,
        domain: &Domain,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<LeadReferral>, StoreError>;
    /// Every contribution of a lead's referrals, read page by page.
    async fn all_contributions(&self, domain: &Domain) -> Result<Vec<LeadReferral>, StoreError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .list_contributions(domain, Some(MAX_PAGE_SIZE), cursor.as_deref())
                .await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }
    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<Lead>, StoreError>;
    /// Every lead counted (exact, however many there are).
    async fn lead_stats(&self) -> Result<LeadStats, StoreError>;
    /// Appends an entry; entries are never changed or removed.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// A lead's audit entries, newest first.
    async fn list_audit(
        &self,
        domain: &Domain,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Sync runs and sync state.
#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Creates the run, or updates the fields fetch-referrals owns (status, times, pages, fetched,
    /// enqueued, error); a stored run keeps its ingest counters (stored, eligible, skipped).
    async fn put_sync_run(&self, run: &SyncRun) -> Result<(), StoreError>;
    /// Counts a stored referral once in its run: as stored, by upsert outcome, and as eligible or
    /// skipped. Atomic and idempotent (a redelivered message is not counted again), so
    /// concurrent ingests add up exactly. Returns whether it counted now; a run that does not
    /// exist is left alone.
    async fn count_ingested(&self, count: RunCount<'_>) -> Result<bool, StoreError>;
    /// [`SyncStore::count_ingested`] for the referrals of a batch, in one call where the store
    /// can: whether each counted now, in order (a referral named twice counts once). After an
    /// error some may have counted; counting them again does not count them twice.
    async fn count_all_ingested(&self, counts: &[RunCount<'_>]) -> Result<Vec<bool>, StoreError> {
        let mut counted = Vec::with_capacity(counts.len());
        for count in counts {
            counted.push(self.count_ingested(*count).await?);
        }
        Ok(counted)
    }
    /// Marks run `run_id` as summarized; true for the one caller that marked it (so the run's
    /// summary is reported once, by whichever of fetch and ingest sees it complete first).
    async fn claim_run_summary(&self, run_id: &str) -> Result<bool, StoreError>;
    async fn get_sync_run(&self, id: &str) -> Result<Option<SyncRun>, StoreError>;
    /// Runs, newest `startedAt` first.
    async fn list_sync_runs(
        &self,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<SyncRun>, StoreError>;
    async fn get_state(&self, key: &str) -> Result<Option<SyncState>, StoreError>;
    /// Writes `state` if the stored version is `expected_version` (`None`: none is stored),
    /// else [`StoreError::Conflict`].
    async fn put_state(
        &self,
        state: &SyncState,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError>;
}

/// Why a queued message last failed, kept so that a dead letter can say why it died (queues
/// keep no error of their own; a message keeps its id when it moves to the dead-letter queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageFailure {
    /// The queue's name (`referrals`, `dynamics-push`).
    pub queue: String,
    pub message_id: String,
    /// How often the message had been received when it failed.
    pub receive_count: u32,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// The last failure of each queued message.
#[async_trait]
pub trait FailureStore: Send + Sync {
    /// Records `failure`, replacing an earlier one of the same message.
    async fn record_failure(&self, failure: &MessageFailure) -> Result<(), StoreError>;
    async fn get_failure(
        &self,
        queue: &str,
        message_id: &str,
    ) -> Result<Option<MessageFailure>, StoreError>;
}

/// Texts too large for a queue message or a store item, kept whole under a key: a referral's
/// payload between fetch-referrals and ingest-referral (the message carries the key), or the raw
/// text beside a referral record (the DynamoDB adapter's own concern).
#[async_trait]
pub trait PayloadStore: Send + Sync {
    /// Stores `text` under `key`, replacing what was there. Done when it returns: a later
    /// [`PayloadStore::get_payload`] anywhere sees it.
    async fn put_payload(&self, key: &str, text: &str) -> Result<(), StoreError>;
    /// The text stored under `key`, if any.
    async fn get_payload(&self, key: &str) -> Result<Option<String>, StoreError>;
}

/// Everything Hunter stores; one adapter implements all of it.
pub trait Store: ReferralStore + LeadStore + SyncStore + FailureStore + PayloadStore {}
impl<T: ReferralStore + LeadStore + SyncStore + FailureStore + PayloadStore> Store for T {}

/// A failure of a store adapter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the stored item changed (or exists) since it was read.
    #[error("conditional write failed: {0}")]
    Conflict(String),
    /// A pagination cursor that this store did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// An item that cannot be (de)serialized; retrying will not help.
    #[error("invalid item: {0}")]
    InvalidItem(String),
    /// Throttling, network or service failure; retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict(_))
    }
}
