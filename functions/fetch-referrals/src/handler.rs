//! fetch-referrals: Partner Center referrals, page by page, onto the referrals queue.
//!
//! Each invocation continues the stored run or starts a new one from the watermark
//! ([`hunter_domain::sync_cursor::SyncCursor`]). Every page is enqueued before the next is
//! fetched; the watermark advances only when the last page is enqueued, so a failed run is simply
//! repeated by the next one (ingest is idempotent).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hunter_core::cursor::{load_cursor, save_cursor};
use hunter_core::fanout::{Unsendable, enqueue_referrals, referral_messages};
use hunter_core::intake::record_invalid;
use hunter_core::ports::{
    Queue, ReferralFilter, ReferralPage, ReferralSource, SourceError, Store, StoreError,
};
use hunter_core::retry::Backoff;
use hunter_core::sync_report::report_if_complete;
use hunter_domain::clock;
use hunter_domain::model::{RunStatus, SyncRun};
use hunter_domain::referral::updated_date_time;
pub use hunter_domain::sync_cursor::SYNC_STATE_KEY;
use hunter_domain::sync_cursor::{Continuation, SyncStart};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

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
    /// The sync cursor, the run records, and referrals too large to queue.
    pub store: &'a dyn Store,
    /// The ingest queue: one message per referral.
    pub queue: &'a dyn Queue,
    /// Partner Center's referral list.
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
    /// The watermark stored after this invocation.
    pub watermark: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// Whether the error may go away by itself (false: someone must act, e.g. sign in again).
    pub retryable: Option<bool>,
}

/// A failure that ends the run.
#[derive(Debug)]
struct RunFailure {
    message: String,
    retryable: bool,
}

impl RunFailure {
    fn of(err: &impl std::fmt::Display, retryable: bool) -> Self {
        Self {
            message: err.to_string(),
            retryable,
        }
    }
}

impl From<SourceError> for RunFailure {
    fn from(err: SourceError) -> Self {
        Self::of(&err, err.is_retryable())
    }
}

impl From<StoreError> for RunFailure {
    fn from(err: StoreError) -> Self {
        Self::of(&err, err.is_retryable())
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
    let cursor = load_cursor(deps.store).await?;
    let mut sync = match cursor.start() {
        SyncStart::Resume(continuation) => Sync::resume(deps.store, continuation).await?,
        SyncStart::New { since } => Sync::start(
            new_run_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            since,
        ),
    };
    deps.store.put_sync_run(&sync.run).await?;
    let work_deadline = deadline.map(|d| d.checked_sub(deps.settings.deadline_margin).unwrap_or(d));

    let (status, next_cursor) = match sync.run_pages(deps, work_deadline).await {
        Ok(None) => {
            sync.end(RunStatus::Succeeded, None);
            (
                FetchStatus::Succeeded,
                Some(cursor.completed(sync.max_updated)),
            )
        }
        Ok(Some(next_link)) => (
            FetchStatus::Continued,
            Some(cursor.continued(sync.continuation(next_link))),
        ),
        Err(failure) => {
            sync.end(RunStatus::Failed, Some(failure));
            (FetchStatus::Failed, cursor.failed())
        }
    };
    let watermark = match next_cursor {
        Some(next) => save_cursor(deps.store, next).await?,
        None => cursor.watermark,
    };
    deps.store.put_sync_run(&sync.run).await?;
    Ok(sync.finish(deps.store, status, watermark).await)
}

/// The run being fetched.
struct Sync {
    run: SyncRun,
    /// Where the next page is: the first page of `since` when `None`.
    next_link: Option<String>,
    since: Option<DateTime<Utc>>,
    max_updated: Option<DateTime<Utc>>,
    failure: Option<RunFailure>,
}

impl Sync {
    fn start(run_id: String, since: Option<DateTime<Utc>>) -> Self {
        Self {
            run: SyncRun::start(run_id, clock::now()),
            next_link: None,
            since,
            max_updated: None,
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
            next_link: Some(continuation.next_link.clone()),
            since: None,
            max_updated: continuation.max_updated,
            failure: None,
        })
    }

    fn continuation(&self, next_link: String) -> Continuation {
        Continuation {
            run_id: self.run.id.clone(),
            next_link,
            max_updated: self.max_updated,
            recorded_invalid: self.run.recorded_invalid,
        }
    }

    fn end(&mut self, status: RunStatus, failure: Option<RunFailure>) {
        self.run.status = status;
        self.run.finished_at = Some(clock::now());
        self.run.error = failure.as_ref().map(|f| f.message.clone());
        self.failure = failure;
    }

    /// Fetches and enqueues pages. `Ok(None)`: the last page is enqueued; `Ok(Some(link))`: stop
    /// here and continue at `link` in the next invocation.
    async fn run_pages(
        &mut self,
        deps: &FetchDeps<'_>,
        deadline: Option<Instant>,
    ) -> Result<Option<String>, RunFailure> {
        let settings = deps.settings;
        let mut pages_now = 0u32;
        loop {
            let page = match &self.next_link {
                None => {
                    let filter = ReferralFilter {
                        directions: settings.directions.clone(),
                        statuses: settings.statuses.clone(),
                        updated_since: self.since,
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
            let Some(link) = page.next_link else {
                return Ok(None);
            };
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            if out_of_time || pages_now >= settings.page_limit {
                return Ok(Some(link));
            }
            self.next_link = Some(link);
        }
    }

    /// Sends the page's referrals to the queue. A referral too large for a message, or one the
    /// queue refuses for what it is, is stored at once as `invalid_payload`.
    async fn enqueue_page(
        &mut self,
        deps: &FetchDeps<'_>,
        page: &ReferralPage,
    ) -> Result<(), RunFailure> {
        self.run.pages += 1;
        self.run.fetched += count(page.referrals.len());
        tracing::info!(
            event = "partner_center_referrals_fetched",
            run_id = %self.run.id,
            page = self.run.pages,
            count = page.referrals.len(),
            request_id = page.request_id.as_deref(),
        );
        let page_max = page.referrals.iter().filter_map(updated_date_time).max();
        self.max_updated = self.max_updated.max(page_max);
        let (messages, oversized) = referral_messages(&self.run.id, &page.referrals);
        self.record_invalid(deps.store, &oversized).await?;
        let backoff = &deps.settings.send_backoff;
        let enqueued = enqueue_referrals(deps.queue, &messages, backoff)
            .await
            .map_err(|err| {
                // What went out will be ingested and counted: the run must know it was sent.
                self.run.enqueued += count(err.sent);
                RunFailure::of(&format!("referrals queue: {err}"), err.is_retryable())
            })?;
        self.run.enqueued += count(enqueued.sent);
        self.record_invalid(deps.store, &enqueued.refused).await?;
        if !enqueued.transient.is_empty() {
            let codes: Vec<&str> = enqueued.transient.iter().map(|f| f.code.as_str()).collect();
            let message = format!(
                "{} referrals could not be enqueued ({})",
                codes.len(),
                codes.join(", ")
            );
            return Err(RunFailure::of(&message, true));
        }
        Ok(())
    }

    /// Stores input that cannot travel through the queue as `invalid_payload`, counted in the run.
    async fn record_invalid(
        &mut self,
        store: &dyn Store,
        unsendable: &[Unsendable],
    ) -> Result<(), StoreError> {
        for item in unsendable {
            record_invalid(store, Some(&self.run.id), &item.text, &item.detail).await?;
            self.run.recorded_invalid += 1;
        }
        Ok(())
    }

    /// Logs the invocation and, when the run is complete, its one summary.
    async fn finish(
        self,
        store: &dyn Store,
        status: FetchStatus,
        watermark: Option<DateTime<Utc>>,
    ) -> FetchSummary {
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
            recorded_invalid: run.recorded_invalid,
            watermark,
            error: self.failure.as_ref().map(|f| f.message.clone()),
            retryable: self.failure.as_ref().map(|f| f.retryable),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
