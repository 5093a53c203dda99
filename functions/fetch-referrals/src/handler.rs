//! fetch-referrals: Partner Center referrals, page by page, onto the referrals queue.
//!
//! Each invocation continues the stored continuation (a `@odata.nextLink` left by an invocation
//! that ran out of time or pages) or starts a new sync run from the watermark. Every page is
//! enqueued before the next is fetched; the watermark advances only when the last page is
//! enqueued, so a failed run is simply repeated by the next one (ingest is idempotent).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hunter_core::fanout::send_all;
use hunter_core::messages::{MAX_MESSAGE_BYTES, ReferralMessage};
use hunter_core::ports::StoreError;
use hunter_core::ports::{
    OutgoingMessage, Queue, ReferralFilter, ReferralPage, ReferralSource, SourceError, Store,
};
use hunter_core::retry::Backoff;
use hunter_core::sync_report::report_if_complete;
use hunter_domain::clock;
use hunter_domain::model::{ReferralRecord, RunStatus, SyncRun, SyncState};
use hunter_domain::referral::parse_referral_value;
use hunter_domain::rules::SkipReason;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Sync-state key of the watermark and the continuation.
pub const SYNC_STATE_KEY: &str = "partner_center_sync";

/// What a sync asks for and how far one invocation may go.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchSettings {
    /// `direction` values to fetch; empty: all (every referral is stored, with its skip reason).
    pub directions: Vec<String>,
    /// `status` values to fetch; empty: all.
    pub statuses: Vec<String>,
    /// `$top` asked for.
    pub page_size: usize,
    /// Pages one invocation fetches before it leaves a continuation.
    pub page_limit: u32,
    /// Time kept free before the deadline to save the continuation.
    pub deadline_margin: Duration,
    /// Retries of refused queue entries.
    pub send_backoff: Backoff,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            directions: Vec::new(),
            statuses: Vec::new(),
            page_size: 100,
            page_limit: 500,
            deadline_margin: Duration::from_secs(20),
            send_backoff: Backoff::default(),
        }
    }
}

/// What the function works with.
#[allow(missing_debug_implementations, reason = "trait objects")]
pub struct FetchDeps<'a> {
    pub store: &'a dyn Store,
    pub queue: &'a dyn Queue,
    pub source: &'a dyn ReferralSource,
    pub settings: &'a FetchSettings,
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchStatus {
    /// Every page was enqueued and the watermark advanced.
    Succeeded,
    /// Time or the page limit ran out; the next invocation continues from the stored nextLink.
    Continued,
    /// Partner Center or the queue failed; the watermark stayed, the next run repeats the work.
    Failed,
}

/// The function's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchSummary {
    pub status: FetchStatus,
    pub run_id: String,
    /// Totals of the run so far (across continued invocations).
    pub pages: u32,
    pub fetched: u32,
    pub enqueued: u32,
    /// Referrals stored at once as `invalid_payload` (too large for a message, refused by SQS).
    pub recorded_invalid: u32,
    pub watermark: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// Whether the error may go away by itself (false: someone must act, e.g. sign in again).
    pub retryable: Option<bool>,
}

/// The stored watermark and continuation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncCursor {
    /// Largest `updatedDateTime` of a completed run; the next run asks for `ge` it.
    watermark: Option<DateTime<Utc>>,
    continuation: Option<Continuation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Continuation {
    run_id: String,
    next_link: String,
    max_updated: Option<DateTime<Utc>>,
    recorded_invalid: u32,
}

/// A failure that ends the run.
struct RunFailure {
    message: String,
    retryable: bool,
}

impl From<SourceError> for RunFailure {
    fn from(err: SourceError) -> Self {
        Self {
            retryable: err.is_retryable(),
            message: err.to_string(),
        }
    }
}

impl From<StoreError> for RunFailure {
    fn from(err: StoreError) -> Self {
        Self {
            retryable: err.is_retryable(),
            message: err.to_string(),
        }
    }
}

/// One invocation: continue the stored run, or start a new one (with id `new_run_id` when
/// given); fetch and enqueue pages until done, out of pages or out of time. Only a store failure
/// that prevents recording the run is an `Err`.
pub async fn fetch_referrals(
    deps: &FetchDeps<'_>,
    new_run_id: Option<String>,
    deadline: Option<Instant>,
) -> Result<FetchSummary, StoreError> {
    let (cursor, cursor_version) = load_cursor(deps.store).await?;
    let mut sync = match &cursor.continuation {
        Some(c) => Sync::resume(deps.store, c).await?,
        None => Sync::start(
            new_run_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            cursor.watermark,
        ),
    };
    deps.store.put_sync_run(&sync.run).await?;
    let work_deadline = deadline.map(|d| d.checked_sub(deps.settings.deadline_margin).unwrap_or(d));

    let outcome = sync
        .run_pages(deps, cursor.continuation.as_ref(), work_deadline)
        .await;
    let status = match outcome {
        Ok(None) => {
            sync.run.status = RunStatus::Succeeded;
            sync.run.finished_at = Some(clock::now());
            let watermark = max_time(cursor.watermark, sync.max_updated);
            save_cursor(
                deps.store,
                cursor_version,
                SyncCursor {
                    watermark,
                    continuation: None,
                },
            )
            .await?;
            sync.watermark = watermark;
            FetchStatus::Succeeded
        }
        Ok(Some(next_link)) => {
            let continuation = Continuation {
                run_id: sync.run.id.clone(),
                next_link,
                max_updated: sync.max_updated,
                recorded_invalid: sync.run.recorded_invalid,
            };
            save_cursor(
                deps.store,
                cursor_version,
                SyncCursor {
                    watermark: cursor.watermark,
                    continuation: Some(continuation),
                },
            )
            .await?;
            FetchStatus::Continued
        }
        Err(failure) => {
            sync.run.status = RunStatus::Failed;
            sync.run.finished_at = Some(clock::now());
            sync.run.error = Some(failure.message.clone());
            sync.failure = Some(failure);
            if cursor.continuation.is_some() {
                // The next run starts over from the watermark rather than from a link that may be stale.
                save_cursor(
                    deps.store,
                    cursor_version,
                    SyncCursor {
                        watermark: cursor.watermark,
                        continuation: None,
                    },
                )
                .await?;
            }
            FetchStatus::Failed
        }
    };
    deps.store.put_sync_run(&sync.run).await?;
    Ok(sync.finish(deps.store, status).await)
}

/// The run being fetched.
struct Sync {
    run: SyncRun,
    filter_since: Option<DateTime<Utc>>,
    max_updated: Option<DateTime<Utc>>,
    watermark: Option<DateTime<Utc>>,
    failure: Option<RunFailure>,
}

impl Sync {
    fn start(run_id: String, watermark: Option<DateTime<Utc>>) -> Self {
        Self {
            run: SyncRun::start(run_id, clock::now()),
            filter_since: watermark,
            max_updated: None,
            watermark,
            failure: None,
        }
    }

    async fn resume(store: &dyn Store, continuation: &Continuation) -> Result<Self, StoreError> {
        let mut run = store
            .get_sync_run(&continuation.run_id)
            .await?
            .unwrap_or_else(|| SyncRun::start(continuation.run_id.clone(), clock::now()));
        run.recorded_invalid = continuation.recorded_invalid;
        Ok(Self {
            run,
            filter_since: None,
            max_updated: continuation.max_updated,
            watermark: None,
            failure: None,
        })
    }

    /// Fetches and enqueues pages. `Ok(None)`: the last page is enqueued; `Ok(Some(link))`: stop
    /// here and continue at `link` in the next invocation.
    async fn run_pages(
        &mut self,
        deps: &FetchDeps<'_>,
        continuation: Option<&Continuation>,
        deadline: Option<Instant>,
    ) -> Result<Option<String>, RunFailure> {
        let settings = deps.settings;
        let mut next_link = continuation.map(|c| c.next_link.clone());
        let mut pages_now = 0u32;
        loop {
            let page = match &next_link {
                None => {
                    let filter = ReferralFilter {
                        directions: settings.directions.clone(),
                        statuses: settings.statuses.clone(),
                        updated_since: self.filter_since,
                        page_size: settings.page_size,
                    };
                    deps.source.first_page(&filter, deadline).await?
                }
                Some(link) => match deps.source.next_page(link, deadline).await {
                    Err(SourceError::Deadline(_)) => return Ok(Some(link.clone())),
                    page => page?,
                },
            };
            pages_now += 1;
            self.enqueue_page(deps, &page).await?;
            deps.store.put_sync_run(&self.run).await?;
            match page.next_link {
                None => return Ok(None),
                Some(link) => {
                    let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
                    if out_of_time || pages_now >= settings.page_limit {
                        return Ok(Some(link));
                    }
                    next_link = Some(link);
                }
            }
        }
    }

    async fn enqueue_page(
        &mut self,
        deps: &FetchDeps<'_>,
        page: &ReferralPage,
    ) -> Result<(), RunFailure> {
        self.run.pages += 1;
        self.run.fetched += u32::try_from(page.referrals.len()).unwrap_or(u32::MAX);
        tracing::info!(
            event = "partner_center_referrals_fetched",
            run_id = %self.run.id,
            page = self.run.pages,
            count = page.referrals.len(),
            request_id = page.request_id.as_deref(),
        );
        let mut messages = Vec::with_capacity(page.referrals.len());
        for (i, referral) in page.referrals.iter().enumerate() {
            if let Ok(parsed) = parse_referral_value(referral.clone()) {
                self.max_updated = max_time(self.max_updated, parsed.updated);
            }
            let body = ReferralMessage {
                run_id: Some(self.run.id.clone()),
                referral: referral.clone(),
            }
            .to_body();
            if body.len() > MAX_MESSAGE_BYTES {
                let detail = format!(
                    "referral is {} bytes, more than a queue message holds",
                    body.len()
                );
                self.record_invalid(deps.store, &referral.to_string(), &detail)
                    .await?;
                continue;
            }
            messages.push(OutgoingMessage::new(i.to_string(), body));
        }
        let report = match send_all(deps.queue, &messages, &deps.settings.send_backoff).await {
            Ok(report) => report,
            Err(err) => {
                // What went out will be ingested and counted: the run must know it was sent.
                self.run.enqueued += u32::try_from(err.sent).unwrap_or(u32::MAX);
                return Err(RunFailure {
                    retryable: err.is_retryable(),
                    message: format!("referrals queue: {err}"),
                });
            }
        };
        self.run.enqueued += u32::try_from(report.sent).unwrap_or(u32::MAX);
        let mut transient = Vec::new();
        for failure in report.failed {
            if failure.sender_fault {
                let body = messages
                    .iter()
                    .find(|m| m.id == failure.id)
                    .map(|m| m.body.as_str())
                    .unwrap_or_default();
                let detail = format!(
                    "the referrals queue refused it: {} {}",
                    failure.code, failure.message
                );
                self.record_invalid(deps.store, body, &detail).await?;
            } else {
                transient.push(failure.code);
            }
        }
        if !transient.is_empty() {
            return Err(RunFailure {
                message: format!(
                    "{} referrals could not be enqueued ({})",
                    transient.len(),
                    transient.join(", ")
                ),
                retryable: true,
            });
        }
        Ok(())
    }

    /// Stores input that cannot travel through the queue as `invalid_payload`, counted in the run.
    async fn record_invalid(
        &mut self,
        store: &dyn Store,
        text: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let record = ReferralRecord::invalid(text, detail, clock::now());
        let outcome = store.upsert_referral(&record).await?;
        store
            .count_ingested(
                &self.run.id,
                &record.id,
                outcome,
                Some(SkipReason::InvalidPayload),
            )
            .await?;
        self.run.recorded_invalid += 1;
        tracing::warn!(
            event = "partner_center_referral_skipped",
            run_id = %self.run.id,
            referral_id = %record.id,
            reason = SkipReason::InvalidPayload.as_str(),
            detail,
        );
        Ok(())
    }

    /// Logs the invocation and, when the run is complete, its one summary.
    async fn finish(self, store: &dyn Store, status: FetchStatus) -> FetchSummary {
        let run = &self.run;
        match &self.failure {
            Some(failure) => tracing::error!(
                event = "partner_center_sync_failed",
                run_id = %run.id,
                error = %failure.message,
                retryable = failure.retryable,
                pages = run.pages,
                fetched = run.fetched,
                enqueued = run.enqueued,
            ),
            None => tracing::info!(
                event = "partner_center_fetch_finished",
                run_id = %run.id,
                status = ?status,
                pages = run.pages,
                fetched = run.fetched,
                enqueued = run.enqueued,
            ),
        }
        report_if_complete(store, &run.id).await;
        FetchSummary {
            status,
            run_id: run.id.clone(),
            pages: run.pages,
            fetched: run.fetched,
            enqueued: run.enqueued,
            recorded_invalid: self.run.recorded_invalid,
            watermark: self.watermark,
            error: self.failure.as_ref().map(|f| f.message.clone()),
            retryable: self.failure.as_ref().map(|f| f.retryable),
        }
    }
}

fn max_time(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    a.max(b)
}

async fn load_cursor(store: &dyn Store) -> Result<(SyncCursor, Option<u64>), StoreError> {
    match store.get_state(SYNC_STATE_KEY).await? {
        None => Ok((SyncCursor::default(), None)),
        Some(state) => {
            let cursor = serde_json::from_value(state.value).map_err(|e| {
                StoreError::InvalidItem(format!("sync state {SYNC_STATE_KEY}: {e}"))
            })?;
            Ok((cursor, Some(state.version)))
        }
    }
}

/// Writes the cursor. If another invocation wrote it meanwhile, keeps the later watermark of both.
async fn save_cursor(
    store: &dyn Store,
    expected: Option<u64>,
    cursor: SyncCursor,
) -> Result<(), StoreError> {
    let mut expected = expected;
    let mut cursor = cursor;
    for _ in 0..5 {
        let state = SyncState {
            key: SYNC_STATE_KEY.to_owned(),
            value: serde_json::to_value(&cursor)
                .map_err(|e| StoreError::InvalidItem(e.to_string()))?,
            version: expected.map_or(1, |v| v + 1),
            updated_at: clock::now(),
        };
        match store.put_state(&state, expected).await {
            Err(StoreError::Conflict(_)) => {
                let (stored, version) = load_cursor(store).await?;
                cursor.watermark = max_time(cursor.watermark, stored.watermark);
                expected = version;
            }
            other => return other,
        }
    }
    Err(StoreError::Conflict(format!(
        "sync state {SYNC_STATE_KEY} kept changing"
    )))
}

/// Turns the Lambda deadline (milliseconds since the epoch) into an [`Instant`].
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Option<Instant> {
    let now_ms = u64::try_from(Utc::now().timestamp_millis()).ok()?;
    (deadline_ms > 0)
        .then(|| Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// The settings a deployment configures (`HUNTER_PC_DIRECTIONS`, `HUNTER_PC_STATUSES`,
/// `HUNTER_PC_PAGE_SIZE`), defaults for the rest.
pub fn settings_from(config: &hunter_core::config::Config) -> FetchSettings {
    let defaults = FetchSettings::default();
    FetchSettings {
        directions: config.pc_directions.clone(),
        statuses: config.pc_statuses.clone(),
        page_size: config.pc_page_size.unwrap_or(defaults.page_size),
        ..defaults
    }
}

/// A run that failed, as the Lambda's error (so the function's Errors metric and alarm see it).
#[derive(Debug, thiserror::Error)]
#[error("sync run {run_id} failed (retryable: {retryable}): {message}")]
pub struct SyncFailed {
    pub run_id: String,
    pub message: String,
    pub retryable: bool,
}

/// The Lambda entry: any scheduled (EventBridge) or on-demand JSON event starts or continues a
/// sync; an on-demand event may name the new run (`{"runId": "..."}`). A failed run is answered
/// with [`SyncFailed`]; every other outcome with the [`FetchSummary`].
pub async fn handle(
    deps: &FetchDeps<'_>,
    event: lambda_runtime::LambdaEvent<serde_json::Value>,
) -> Result<FetchSummary, lambda_runtime::Error> {
    tracing::info!(
        event = "fetch_referrals_invoked",
        source = event.payload["source"].as_str(),
        request_id = %event.context.request_id
    );
    let deadline = deadline_from_epoch_ms(event.context.deadline);
    let run_id = event.payload["runId"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let summary = fetch_referrals(deps, run_id, deadline).await?;
    if summary.status == FetchStatus::Failed {
        return Err(Box::new(SyncFailed {
            run_id: summary.run_id,
            message: summary.error.unwrap_or_default(),
            retryable: summary.retryable.unwrap_or(false),
        }));
    }
    Ok(summary)
}
