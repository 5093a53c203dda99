//! fetch-referrals: Partner Center referrals, page by page, onto the referrals queue.
//!
//! Each invocation first claims the sync: a lease in the stored cursor
//! ([`hunter_domain::sync_cursor::SyncCursor`]), so that one invocation at a time fetches
//! (the schedule, `POST /sync`, several hosts on one table); another that finds a live lease
//! answers `in_progress` with the holder's run. The lease lasts the invocation's deadline plus a
//! margin, is renewed on every page and let go when the invocation ends; one left to expire (the
//! invocation was killed) ends its run as `abandoned`, and a new run goes on from the stored
//! cursor. Then the invocation continues the stored run or starts a new one from a little before
//! the watermark. Each page is enqueued and recorded before the next counts (the next is read
//! meanwhile); the watermark advances only when the last page is enqueued, so a failed run is
//! simply repeated by the next one (ingest is idempotent).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hunter_core::cursor::{claim_sync, release_sync, renew_lease};
use hunter_core::fanout::{deliver_referrals, referral_messages};
use hunter_core::metrics::{Metrics, MetricsSink, fetch_referrals as metric};
use hunter_core::ports::{
    Queue, ReferralFilter, ReferralPage, ReferralSource, SourceError, Store, StoreError,
};
use hunter_core::retry::Backoff;
use hunter_core::sync_report::report_if_complete;
use hunter_domain::clock;
use hunter_domain::model::{RunStatus, SyncRun};
use hunter_domain::referral::updated_date_time;
pub use hunter_domain::sync_cursor::SYNC_STATE_KEY;
use hunter_domain::sync_cursor::{Claim, Continuation, Lease, LeaseRequest, SyncStart};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The lease of an invocation that has no deadline: Lambda's longest timeout.
const LEASE_WITHOUT_DEADLINE: Duration = Duration::from_secs(15 * 60);

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
    /// How far before the watermark a new run asks from (`HUNTER_SYNC_OVERLAP`): referrals
    /// committed late with an earlier `updatedDateTime` are fetched too.
    pub sync_overlap: Duration,
    /// How long an invocation's lease on the sync outlasts its deadline.
    pub lease_margin: Duration,
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
            sync_overlap: Duration::from_secs(10 * 60),
            lease_margin: Duration::from_secs(60),
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
    /// Another invocation holds the sync (its run is the summary's `runId`): this one fetched
    /// nothing.
    InProgress,
}

/// What one invocation did (the summary's other counts are the run's totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationCounts {
    pub pages: u32,
    pub fetched: u32,
    pub enqueued: u32,
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
    /// Referrals stored at once as `invalid_payload` (above the reader's size bound, refused by
    /// SQS).
    pub recorded_invalid: u32,
    /// The watermark stored after this invocation.
    pub watermark: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// Whether the error may go away by itself (false: someone must act, e.g. sign in again).
    pub retryable: Option<bool>,
    /// This invocation's share of the totals.
    #[serde(default)]
    pub invocation: InvocationCounts,
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

    fn lease_lost() -> Self {
        Self::of(
            &"the sync lease ran out before this invocation let go of it; another run took over",
            true,
        )
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

/// When a lease taken at `now` by an invocation with `deadline` runs out.
fn lease_expiry(
    settings: &FetchSettings,
    deadline: Option<Instant>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let remaining = deadline.map_or(LEASE_WITHOUT_DEADLINE, |d| {
        d.saturating_duration_since(Instant::now())
    });
    chrono::Duration::from_std(remaining + settings.lease_margin)
        .map_or(now + chrono::Duration::days(1), |lease| now + lease)
}

/// One invocation: claim the sync, then continue the stored run or start a new one (with id
/// `new_run_id` when given); fetch and enqueue pages until done, out of pages or out of time.
/// Only a store failure that prevents recording the run is an `Err`.
pub async fn fetch_referrals(
    deps: &FetchDeps<'_>,
    new_run_id: Option<String>,
    deadline: Option<Instant>,
) -> Result<FetchSummary, StoreError> {
    let now = clock::now();
    let holder = uuid::Uuid::new_v4().to_string();
    let request = LeaseRequest {
        holder: holder.clone(),
        new_run_id: new_run_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        expires_at: lease_expiry(deps.settings, deadline, now),
    };
    let grant = match claim_sync(deps.store, request).await? {
        Claim::Granted(grant) => grant,
        Claim::Held { lease, watermark } => return Ok(in_progress(&lease, watermark)),
    };
    let result = run_granted(deps, &grant, holder.clone(), now, deadline).await;
    if result.is_err() {
        // Let go of the sync as it was, so the next invocation need not wait for the lease.
        let _ = release_sync(deps.store, &holder, grant.cursor.clone()).await;
    }
    result
}

/// The invocation that holds the sync ([`hunter_domain::sync_cursor::Grant`]).
async fn run_granted(
    deps: &FetchDeps<'_>,
    grant: &hunter_domain::sync_cursor::Grant,
    holder: String,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
) -> Result<FetchSummary, StoreError> {
    if let Some(expired) = &grant.expired {
        abandon(deps.store, expired, grant.run_id()).await?;
    }
    let overlap =
        chrono::Duration::from_std(deps.settings.sync_overlap).unwrap_or(chrono::Duration::zero());
    let run_id = grant.run_id().to_owned();
    let mut sync = match grant.start(now, overlap) {
        SyncStart::Resume(continuation) => Sync::resume(deps.store, continuation).await?,
        SyncStart::TakeOver(continuation) => Sync::take_over(run_id, continuation),
        SyncStart::New { since } => Sync::start(run_id, since),
    };
    sync.holder = holder;
    sync.deadline = deadline;
    deps.store.put_sync_run(&sync.run).await?;
    let work_deadline = deadline.map(|d| d.checked_sub(deps.settings.deadline_margin).unwrap_or(d));

    let cursor = &grant.cursor;
    let (mut status, outcome) = match sync.run_pages(deps, work_deadline).await {
        Ok(None) => {
            sync.end(RunStatus::Succeeded, None);
            let started = sync.run.started_at;
            (
                FetchStatus::Succeeded,
                cursor.completed(sync.max_updated, started),
            )
        }
        Ok(Some(next_link)) => (
            FetchStatus::Continued,
            cursor.continued(sync.continuation(next_link)),
        ),
        Err(failure) => {
            sync.end(RunStatus::Failed, Some(failure));
            (
                FetchStatus::Failed,
                cursor.failed().unwrap_or_else(|| cursor.clone()),
            )
        }
    };
    let watermark = match release_sync(deps.store, &sync.holder, outcome).await? {
        Some(watermark) => watermark,
        None => {
            // Another run owns the sync now: this outcome was not written.
            sync.end(RunStatus::Abandoned, Some(RunFailure::lease_lost()));
            status = FetchStatus::Failed;
            cursor.watermark
        }
    };
    deps.store.put_sync_run(&sync.run).await?;
    Ok(sync.finish(deps.store, status, watermark).await)
}

/// The answer of an invocation that found the sync held by another.
fn in_progress(lease: &Lease, watermark: Option<DateTime<Utc>>) -> FetchSummary {
    tracing::info!(
        event = "partner_center_sync_in_progress",
        run_id = %lease.run_id,
        lease_expires_at = %lease.expires_at,
    );
    FetchSummary {
        status: FetchStatus::InProgress,
        run_id: lease.run_id.clone(),
        pages: 0,
        fetched: 0,
        enqueued: 0,
        recorded_invalid: 0,
        watermark,
        error: None,
        retryable: None,
        invocation: InvocationCounts::default(),
    }
}

/// Ends the run of a lease that expired without being let go (its invocation was killed), if
/// it is still `running`.
async fn abandon(store: &dyn Store, expired: &Lease, taker: &str) -> Result<(), StoreError> {
    let Some(mut run) = store.get_sync_run(&expired.run_id).await? else {
        return Ok(());
    };
    if run.status != RunStatus::Running {
        return Ok(());
    }
    run.status = RunStatus::Abandoned;
    run.finished_at = Some(clock::now());
    run.error = Some(format!(
        "its invocation ended without letting go of the sync (lease expired at {}); run {taker} \
         took over",
        expired.expires_at
    ));
    store.put_sync_run(&run).await?;
    tracing::warn!(
        event = "partner_center_sync_abandoned",
        run_id = %run.id,
        taken_over_by = taker,
        lease_expired_at = %expired.expires_at,
        pages = run.pages,
        enqueued = run.enqueued,
    );
    report_if_complete(store, &run.id).await;
    Ok(())
}

/// The run being fetched.
struct Sync {
    run: SyncRun,
    /// The run's counts when this invocation took it up.
    before: InvocationCounts,
    /// Where the next page is: the first page of `since` when `None`.
    next_link: Option<String>,
    since: Option<DateTime<Utc>>,
    max_updated: Option<DateTime<Utc>>,
    failure: Option<RunFailure>,
    /// This invocation's id in the lease, and its deadline.
    holder: String,
    deadline: Option<Instant>,
}

impl Sync {
    fn new(run: SyncRun, next_link: Option<String>, since: Option<DateTime<Utc>>) -> Self {
        let before = InvocationCounts {
            pages: run.pages,
            fetched: run.fetched,
            enqueued: run.enqueued,
        };
        Self {
            run,
            before,
            next_link,
            since,
            max_updated: None,
            failure: None,
            holder: String::new(),
            deadline: None,
        }
    }

    fn start(run_id: String, since: Option<DateTime<Utc>>) -> Self {
        Self::new(SyncRun::start(run_id, clock::now()), None, since)
    }

    async fn resume(store: &dyn Store, continuation: &Continuation) -> Result<Self, StoreError> {
        let mut run = store
            .get_sync_run(&continuation.run_id)
            .await?
            .unwrap_or_else(|| SyncRun::start(continuation.run_id.clone(), clock::now()));
        run.recorded_invalid = continuation.recorded_invalid;
        let mut sync = Self::new(run, Some(continuation.next_link.clone()), None);
        sync.max_updated = continuation.max_updated;
        Ok(sync)
    }

    /// A new run going on where the abandoned run of `continuation` stopped.
    fn take_over(run_id: String, continuation: &Continuation) -> Self {
        let run = SyncRun::start(run_id, clock::now());
        let mut sync = Self::new(run, Some(continuation.next_link.clone()), None);
        sync.max_updated = continuation.max_updated;
        sync
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

    /// Fetches and enqueues pages, renewing the lease after each. `Ok(None)`: the last page is
    /// enqueued; `Ok(Some(link))`: stop here and continue at `link` in the next invocation.
    ///
    /// The next page is read while one is enqueued (one page ahead): Partner Center's answer and
    /// the queue's take turns otherwise. What the read-ahead brings counts only once the page
    /// before it is enqueued and recorded; an enqueue that fails drops it unread.
    async fn run_pages(
        &mut self,
        deps: &FetchDeps<'_>,
        deadline: Option<Instant>,
    ) -> Result<Option<String>, RunFailure> {
        let settings = deps.settings;
        let mut page = match &self.next_link {
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
        let mut pages_now = 0u32;
        let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);
        loop {
            pages_now += 1;
            let read_ahead = page
                .next_link
                .as_deref()
                .filter(|_| pages_now < settings.page_limit && !out_of_time());
            // An enqueue that fails ends the join at once, dropping the page being read ahead.
            let ((), next) = tokio::try_join!(self.enqueue_page(deps, &page), async {
                Ok(match read_ahead {
                    Some(link) => Some(deps.source.next_page(link, deadline).await),
                    None => None,
                })
            })?;
            deps.store.put_sync_run(&self.run).await?;
            let expires_at = lease_expiry(settings, self.deadline, clock::now());
            if !renew_lease(deps.store, &self.holder, expires_at).await? {
                return Err(RunFailure::lease_lost());
            }
            let Some(link) = page.next_link else {
                return Ok(None);
            };
            page = match next {
                Some(Ok(next)) if !out_of_time() => next,
                None | Some(Ok(_) | Err(SourceError::Deadline(_))) => return Ok(Some(link)),
                Some(Err(err)) => return Err(err.into()),
            };
            self.next_link = Some(link);
        }
    }

    /// Sends the page's referrals to the queue; one too large for a message is stored first and
    /// sent by reference. A referral above the reader's size bound, or one the queue refuses for
    /// what it is, is stored at once as `invalid_payload`.
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
        let page_max = page
            .referrals
            .iter()
            .filter_map(|r| updated_date_time(r.get()))
            .max();
        self.max_updated = self.max_updated.max(page_max);
        let messages = referral_messages(&self.run.id, &page.referrals);
        let backoff = &deps.settings.send_backoff;
        let delivered = deliver_referrals(
            deps.store,
            deps.queue,
            Some(&self.run.id),
            &messages,
            backoff,
        )
        .await;
        // What went out will be ingested and counted: the run must know it was sent, also when
        // the delivery stopped partway.
        let (done, failure) = match delivered {
            Ok(done) => (done, None),
            Err(err) => (err.delivered, Some(err)),
        };
        self.run.enqueued += count(done.sent);
        self.run.recorded_invalid += count(done.recorded_invalid);
        match failure {
            Some(err) => Err(RunFailure::of(&err, err.is_retryable())),
            None => Ok(()),
        }
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
            invocation: InvocationCounts {
                pages: run.pages.saturating_sub(self.before.pages),
                fetched: run.fetched.saturating_sub(self.before.fetched),
                enqueued: run.enqueued.saturating_sub(self.before.enqueued),
            },
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The one metrics line of an invocation (`Hunter / Fetched`, `Enqueued`, `PagesFetched`,
/// `SyncRunsFailed` by `Function`): what this invocation did, and 1 failed run if it failed.
pub fn invocation_metrics(summary: &FetchSummary) -> Metrics {
    Metrics::new(metric::FUNCTION)
        .count(metric::FETCHED, summary.invocation.fetched.into())
        .count(metric::ENQUEUED, summary.invocation.enqueued.into())
        .count(metric::PAGES_FETCHED, summary.invocation.pages.into())
        .count(
            metric::SYNC_RUNS_FAILED,
            u64::from(summary.status == FetchStatus::Failed),
        )
        .property("runId", summary.run_id.clone())
}

/// The metrics line of an invocation that could not record its run: a failed run, nothing
/// counted.
fn store_failure_metrics() -> Metrics {
    Metrics::new(metric::FUNCTION)
        .count(metric::FETCHED, 0)
        .count(metric::ENQUEUED, 0)
        .count(metric::PAGES_FETCHED, 0)
        .count(metric::SYNC_RUNS_FAILED, 1)
}

/// The settings a deployment configures (`HUNTER_PC_DIRECTIONS`, `HUNTER_PC_STATUSES`,
/// `HUNTER_PC_PAGE_SIZE`, `HUNTER_SYNC_OVERLAP`), defaults for the rest.
pub fn settings_from(config: &hunter_core::config::Config) -> FetchSettings {
    let defaults = FetchSettings::default();
    FetchSettings {
        directions: config.pc_directions.clone(),
        statuses: config.pc_statuses.clone(),
        page_size: config.pc_page_size.unwrap_or(defaults.page_size),
        sync_overlap: config.sync_overlap,
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
/// with [`SyncFailed`]; every other outcome with the [`FetchSummary`]. Writes the invocation's
/// metrics ([`invocation_metrics`]) when metrics are on ([`hunter_core::metrics::enabled`]).
pub async fn handle(
    deps: &FetchDeps<'_>,
    event: lambda_runtime::LambdaEvent<serde_json::Value>,
) -> Result<FetchSummary, lambda_runtime::Error> {
    handle_with_metrics(deps, event, &MetricsSink::from_env()).await
}

/// [`handle`], its metrics line written to `metrics`.
pub async fn handle_with_metrics(
    deps: &FetchDeps<'_>,
    event: lambda_runtime::LambdaEvent<serde_json::Value>,
    metrics: &MetricsSink,
) -> Result<FetchSummary, lambda_runtime::Error> {
    tracing::info!(
        event = "fetch_referrals_invoked",
        source = event.payload["source"].as_str(),
        request_id = %event.context.request_id
    );
    let deadline = hunter_core::deadline::from_epoch_millis(event.context.deadline);
    let run_id = event.payload["runId"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let fetched = hunter_core::deadline::within(deadline, fetch_referrals(deps, run_id, deadline));
    let summary = match fetched.await {
        Ok(summary) => summary,
        Err(err) => {
            metrics.emit(&store_failure_metrics());
            return Err(err.into());
        }
    };
    metrics.emit(&invocation_metrics(&summary));
    if summary.status == FetchStatus::Failed {
        return Err(Box::new(SyncFailed {
            run_id: summary.run_id,
            message: summary.error.unwrap_or_default(),
            retryable: summary.retryable.unwrap_or(false),
        }));
    }
    Ok(summary)
}
