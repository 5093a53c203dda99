//! The ports: what handlers need from storage and queues, as traits.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use tokio::time::Instant;

use crate::error::{QueueError, StoreError, TriggerError};
use crate::model::{AuditEntry, Lead, ReferralRecord, SyncRun, SyncState, SyncStatus};
use crate::partner_center::{PartnerCenterError, ReferralFilter, ReferralPage};
use crate::rules::{Domain, SkipReason};

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

/// What a conditional referral upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOutcome {
    /// No referral with this id was stored.
    Inserted,
    /// A newer version replaced the stored one.
    Updated,
    /// The same version was stored already (a duplicate delivery).
    Unchanged,
    /// The stored version is newer; the incoming one was ignored.
    Stale,
}

impl UpsertOutcome {
    /// The snake_case name used in counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inserted => "inserted",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Stale => "stale",
        }
    }
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
    pub segment: Option<String>,
    pub provider: Option<String>,
    pub min_score: Option<u8>,
    pub sync_status: Option<SyncStatus>,
    /// Case-insensitive text in domain or company name.
    pub q: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// The page size a query asks for, within `1..=MAX_PAGE_SIZE`.
pub fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE)
}

/// Referrals keyed by id, replaced only by newer versions.
#[async_trait]
pub trait ReferralStore: Send + Sync {
    /// Stores `record` unless the stored version is newer or the same (see [`UpsertOutcome`]).
    async fn upsert_referral(&self, record: &ReferralRecord) -> Result<UpsertOutcome, StoreError>;
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
    /// else [`StoreError::Conflict`].
    async fn put_lead(&self, lead: &Lead, expected_version: Option<u64>) -> Result<(), StoreError>;
    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<Lead>, StoreError>;
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
    /// Counts referral `referral_id` once for run `run_id`: as stored, by upsert outcome, and as
    /// eligible or skipped. Atomic and idempotent (a redelivered message is not counted again), so
    /// concurrent ingests add up exactly. Returns whether it counted now; a run that does not
    /// exist is left alone.
    async fn count_ingested(
        &self,
        run_id: &str,
        referral_id: &str,
        outcome: UpsertOutcome,
        skip_reason: Option<SkipReason>,
    ) -> Result<bool, StoreError>;
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

/// Everything Hunter stores; one adapter implements all of it.
pub trait Store: ReferralStore + LeadStore + SyncStore {}
impl<T: ReferralStore + LeadStore + SyncStore> Store for T {}

/// A message to send; `id` is unique within its batch.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub id: String,
    pub body: String,
    /// Delivery delay, at most 15 minutes.
    pub delay: Option<Duration>,
}

impl OutgoingMessage {
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            body: body.into(),
            delay: None,
        }
    }
}

/// A batch entry the queue refused.
#[derive(Debug, Clone, PartialEq)]
pub struct SendFailure {
    pub id: String,
    pub code: String,
    pub message: String,
    /// The entry itself is wrong (retrying will not help); otherwise the failure was transient.
    pub sender_fault: bool,
}

/// A received message, invisible to other receivers until its visibility timeout ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// How often it has been received, this time included.
    pub receive_count: u32,
}

/// Approximate message counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
}

/// A queue with SQS semantics and its dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends at most 10 messages; returns the entries that failed (the others were accepted).
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<SendFailure>, QueueError>;
    /// Up to `max` (≤ 10) visible messages, waiting up to `wait` for one; each becomes invisible
    /// for `visibility` (or the queue's default). A message received more than the queue's
    /// maxReceiveCount times moves to the dead-letter queue instead.
    async fn receive(
        &self,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Makes a received message visible again after `timeout` (zero: now).
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
    /// Takes up to `max` messages off the dead-letter queue (they are deleted from it).
    async fn take_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Moves every dead letter back to the queue; returns how many moved.
    async fn redrive_dead_letters(&self) -> Result<usize, QueueError>;
}

/// Where referrals come from, page by page: Partner Center (see [`crate::partner_center`]).
#[async_trait]
pub trait ReferralSource: Send + Sync {
    /// The first page of what `filter` selects; retries give up before `deadline`.
    async fn first_page(
        &self,
        filter: &ReferralFilter,
        deadline: Option<Instant>,
    ) -> Result<ReferralPage, PartnerCenterError>;
    /// The page at a `@odata.nextLink`.
    async fn next_page(
        &self,
        next_link: &str,
        deadline: Option<Instant>,
    ) -> Result<ReferralPage, PartnerCenterError>;
}

/// Writes Hunter's result back onto the referral in Partner Center.
#[async_trait]
pub trait ReferralWriteBack: Send + Sync {
    /// Sets the referral's `externalReferenceId` (the CRM record id), as Microsoft's own CRM
    /// connector does; `etag` makes it conditional (`If-Match`, 412 when the referral changed).
    async fn set_external_reference(
        &self,
        referral_id: &str,
        etag: Option<&str>,
        reference: &str,
    ) -> Result<(), PartnerCenterError>;
}

/// Starts a Partner Center sync outside the schedule: hunter-local wakes its sync loop, on AWS
/// fetch-referrals is invoked asynchronously.
#[async_trait]
pub trait SyncTrigger: Send + Sync {
    /// Asks for a sync: a new run named `run_id`, or with `None` the run in progress (resumed
    /// from its continuation, else a new run with an id of its own); returns once the request
    /// was accepted.
    async fn request_sync(&self, run_id: Option<&str>) -> Result<(), TriggerError>;
}
