//! push-dynamics: one message per lead (domain + version) → map → upsert in Dynamics by key →
//! sync state on the lead and one audit entry per attempt.
//!
//! Pushes of a version Dynamics already has are skipped. Retryable failures (throttling, 5xx,
//! network) are batch item failures whose visibility is extended to the `Retry-After`; permanent
//! ones (validation, a lead that cannot be mapped) mark the lead `failed` with the reason and are
//! acknowledged.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt as _;
use hunter_core::bulk_sync::{BulkSyncMessage, queue_step};
use hunter_core::deadline;
use hunter_core::failures::{FailedMessage, note_failure, receive_count};
use hunter_core::fanout::send_all;
use hunter_core::messages::PushMessage;
use hunter_core::metrics::{Metrics, push_dynamics as metrics};
use hunter_core::optimistic::{Change, update_lead, update_lead_with_referral};
use hunter_core::ports::{
    LeadSink, LeadUpsert, OutgoingMessage, PushedLead, Queue, ReferralWriteBack, SinkError, Store,
    StoreError,
};
use hunter_core::retry::Backoff;
use hunter_domain::clock;
use hunter_domain::crm::{DynamicsMapping, lead_input, opportunity_records};
use hunter_domain::leads::{LeadWithReferral, PushAttempt, is_active, push_needed, record_push};
use hunter_domain::model::{AuditEntry, Lead};
use hunter_domain::referral::{Referral, cap_text, parse_referral};
use hunter_domain::rules::normalize_domain;
use serde_json::{Map, Value};

/// Who the audit trail names for pushes.
pub const ACTOR: &str = "push-dynamics";
/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// SQS's longest delivery delay.
const MAX_DELAY: Duration = Duration::from_secs(900);
/// The shortest wait before a put-off push is tried again.
const MIN_DEFERRAL: Duration = Duration::from_secs(1);
/// A push is put off at most this often (at up to 15 minutes each) before its waits count
/// toward the dead-letter queue like any other failure.
pub const MAX_DEFERRALS: u32 = 96;
/// Time kept back from the invocation's deadline to record outcomes and put off the rest.
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
/// The queue's name in failure records and logs.
pub const QUEUE: &str = "dynamics-push";

/// What the function works with.
#[allow(missing_debug_implementations, reason = "trait objects")]
pub struct PushDeps<'a> {
    pub store: &'a dyn Store,
    pub sink: &'a dyn LeadSink,
    pub mapping: &'a DynamicsMapping,
    /// The dynamics-push queue, to put off a throttled push (or extend its visibility).
    pub queue: Option<&'a dyn Queue>,
    /// The queue's maxReceiveCount, to log the failure that dead-letters a message.
    pub max_receives: Option<u32>,
    /// Partner Center, to write the Dynamics id back onto the referrals (off when `None`).
    pub write_back: Option<&'a dyn ReferralWriteBack>,
    /// Accepted referrals become account + contact + opportunity (`HUNTER_D365_OPPORTUNITIES`).
    pub opportunities: bool,
}

/// What became of one push message.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    Synced(PushedLead),
    /// Dynamics has this version (or a newer one) already, or the lead is gone.
    Skipped(&'static str),
    /// Recorded as `failed`; not retried.
    Failed(String),
    /// Try again after the delay (if the service named one).
    Retry {
        error: String,
        after: Option<Duration>,
    },
}

impl From<SinkError> for PushOutcome {
    fn from(err: SinkError) -> Self {
        match err.is_retryable() {
            true => Self::Retry {
                after: err.retry_after(),
                error: err.to_string(),
            },
            false => Self::Failed(err.to_string()),
        }
    }
}

/// The SQS batch handler: the batch's leads are upserted together (a `$batch` when there are
/// several), the rest of each push runs concurrently, as many at once as the sink allows
/// (Dataverse's `x-ms-dop-hint`).
///
/// A push Dynamics asked to wait for (429 with `Retry-After`, or a wait that would pass the
/// invocation's deadline) is put off: a fresh copy of its message is sent with that delay and
/// this one acknowledged, so waiting never uses up the queue's receives. Other retryable
/// failures go back to the queue as batch item failures, their reason recorded.
pub async fn handle_batch(deps: &PushDeps<'_>, mut event: SqsEvent) -> SqsBatchResponse {
    let mut retries = Vec::new();
    let (steps, records): (Vec<_>, Vec<_>) = event
        .records
        .drain(..)
        .partition(|r| BulkSyncMessage::from_body(r.body.as_deref().unwrap_or_default()).is_some());
    event.records = records;
    for record in &steps {
        if let Some(error) = bulk_sync_step(deps, record).await {
            retries.push((record, error, None));
        }
    }
    let bodies: Vec<&str> = event
        .records
        .iter()
        .map(|r| r.body.as_deref().unwrap_or_default())
        .collect();
    let outcomes = push_messages(deps, &bodies).await;
    let mut tally = Tally::default();
    let mut deferrals = Vec::new();
    for ((record, body), outcome) in event.records.iter().zip(&bodies).zip(outcomes) {
        let (error, after) = match outcome {
            Ok(PushOutcome::Retry { error, after }) => (error, after),
            Err(err) => (err.to_string(), None),
            Ok(PushOutcome::Synced(_)) => {
                tally.pushed += 1;
                continue;
            }
            Ok(PushOutcome::Failed(_)) => {
                tally.failed += 1;
                continue;
            }
            Ok(PushOutcome::Skipped(_)) => continue,
        };
        match after.and_then(|after| deferred(body, after)) {
            Some(mut copy) if deps.queue.is_some() => {
                copy.id = deferrals.len().to_string();
                deferrals.push((record, error, after, copy));
            }
            _ => retries.push((record, error, after)),
        }
    }
    tally.throttled = deferrals.len();
    if let Some(queue) = deps.queue.filter(|_| !deferrals.is_empty()) {
        let copies: Vec<OutgoingMessage> = deferrals.iter().map(|d| d.3.clone()).collect();
        let refused = match send_all(queue, &copies, &Backoff::default()).await {
            Ok(report) => report.failed.into_iter().map(|f| f.id).collect(),
            Err(err) => {
                tracing::warn!(event = "dynamics_push_defer_failed", error = %err);
                copies.iter().map(|c| c.id.clone()).collect::<Vec<_>>()
            }
        };
        for (record, error, after, copy) in deferrals {
            if refused.contains(&copy.id) {
                retries.push((record, error, after));
                continue;
            }
            tally.requeued += 1;
            tracing::info!(event = "dynamics_push_deferred", message_id = record.message_id.as_deref().unwrap_or_default(), error = %error, delay_s = copy.delay.map(|d| d.as_secs()));
        }
    }
    let mut response = SqsBatchResponse::default();
    for (record, error, after) in retries {
        let message_id = record.message_id.clone().unwrap_or_default();
        let failed = FailedMessage {
            queue: QUEUE,
            message_id: &message_id,
            receive_count: receive_count(&record.attributes),
            error: &error,
        };
        if note_failure(deps.store, failed, deps.max_receives).await {
            tally.dead_lettered += 1;
        }
        if let (Some(queue), Some(receipt), Some(after)) =
            (deps.queue, record.receipt_handle.as_deref(), after)
        {
            if let Err(err) = queue
                .change_visibility(receipt, after.min(MAX_VISIBILITY))
                .await
            {
                tracing::warn!(event = "dynamics_push_visibility_failed", message_id = %message_id, error = %err);
            }
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id;
        response.batch_item_failures.push(failure);
    }
    tally.emit();
    response
}

/// One step of a bulk sync (a page of leads queued, and the step after it); the error when it
/// must be tried again.
async fn bulk_sync_step(deps: &PushDeps<'_>, record: &SqsMessage) -> Option<String> {
    let step = BulkSyncMessage::from_body(record.body.as_deref().unwrap_or_default())?;
    let Some(queue) = deps.queue else {
        return Some("no push queue to continue the bulk sync on".to_owned());
    };
    match queue_step(deps.store, queue, &step).await {
        Ok(queued) => {
            tracing::info!(event = "dynamics_bulk_sync_step", status = ?step.status, pushes = queued.pushes, continues = queued.continues);
            None
        }
        Err(err) => Some(err.to_string()),
    }
}

/// What a batch did, for the function's metrics.
#[derive(Debug, Default)]
struct Tally {
    pushed: usize,
    failed: usize,
    throttled: usize,
    requeued: usize,
    dead_lettered: usize,
}

impl Tally {
    fn emit(&self) {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Metrics::new(metrics::FUNCTION)
            .count(metrics::PUSHED, count(self.pushed))
            .count(metrics::PUSH_FAILED, count(self.failed))
            .count(metrics::THROTTLED, count(self.throttled))
            .count(metrics::REQUEUED, count(self.requeued))
            .count(metrics::DEAD_LETTERED, count(self.dead_lettered))
            .emit();
    }
}

/// A fresh copy of push message `body`, delivered after `after`; `None` when the message is
/// unreadable or was put off [`MAX_DEFERRALS`] times already (then it counts toward the DLQ).
fn deferred(body: &str, after: Duration) -> Option<OutgoingMessage> {
    let mut message = PushMessage::from_body(body).ok()?;
    if message.deferrals >= MAX_DEFERRALS {
        return None;
    }
    message.deferrals += 1;
    let mut copy = OutgoingMessage::new(String::new(), message.to_body());
    copy.delay = Some(after.clamp(MIN_DEFERRAL, MAX_DELAY));
    Some(copy)
}

/// One push message. `Err` only for store failures (retried).
pub async fn push_message(deps: &PushDeps<'_>, body: &str) -> Result<PushOutcome, StoreError> {
    push_messages(deps, &[body])
        .await
        .into_iter()
        .next()
        .unwrap_or(Ok(PushOutcome::Skipped("no message")))
}

/// A push message read and its lead mapped, or what became of it before any upsert.
enum Prepared {
    /// Nothing to push (and nothing to record).
    Skipped(&'static str),
    /// The lead cannot be mapped: recorded as failed.
    Unmappable(Lead, String),
    Ready(Lead, Map<String, Value>),
}

/// Push messages, one outcome each, in order: read and map concurrently, upsert the leads
/// together, then opportunities, sync state, audit and write-back concurrently. A lead named
/// twice in one batch is pushed once.
pub async fn push_messages(
    deps: &PushDeps<'_>,
    bodies: &[&str],
) -> Vec<Result<PushOutcome, StoreError>> {
    let concurrency = deps.sink.concurrency();
    let mut prepared: Vec<Result<Prepared, StoreError>> =
        futures_util::stream::iter(0..bodies.len())
            .map(|i| prepare(deps, bodies[i]))
            .buffered(concurrency)
            .collect()
            .await;
    let mut seen = std::collections::HashSet::new();
    let mut ready = Vec::new();
    let mut upserts = Vec::new();
    for (i, item) in prepared.iter_mut().enumerate() {
        let Ok(Prepared::Ready(lead, record)) = item else {
            continue;
        };
        if !seen.insert(lead.domain.clone()) {
            tracing::info!(event = "dynamics_push_skipped", domain = %lead.domain, reason = "duplicate in batch");
            *item = Ok(Prepared::Skipped("duplicate in batch"));
            continue;
        }
        ready.push(i);
        upserts.push(LeadUpsert {
            key: lead.domain.to_string(),
            domain: lead.domain.to_string(),
            record: record.clone(),
            adopt: lead.dynamics_id.is_none(),
        });
    }
    let mut upserted: Vec<Option<Result<PushedLead, SinkError>>> =
        (0..prepared.len()).map(|_| None).collect();
    for (&i, result) in ready.iter().zip(deps.sink.upsert_leads(&upserts).await) {
        upserted[i] = Some(result);
    }
    let prepared = &prepared;
    let upserted = &upserted;
    futures_util::stream::iter(0..prepared.len())
        .map(|i| async move {
            match &prepared[i] {
                Err(err) => Err(err.clone()),
                Ok(Prepared::Skipped(reason)) => Ok(PushOutcome::Skipped(reason)),
                Ok(Prepared::Unmappable(lead, error)) => {
                    let outcome = PushOutcome::Failed(error.clone());
                    record_attempt(deps.store, lead, &outcome).await?;
                    Ok(outcome)
                }
                Ok(Prepared::Ready(lead, _)) => match &upserted[i] {
                    Some(result) => finish(deps, lead, result.clone()).await,
                    None => Ok(PushOutcome::Retry {
                        error: "the lead was not upserted".to_owned(),
                        after: None,
                    }),
                },
            }
        })
        .buffered(concurrency)
        .collect()
        .await
}

/// Reads a push message, loads its lead, and maps it unless Dynamics has this version already.
async fn prepare(deps: &PushDeps<'_>, body: &str) -> Result<Prepared, StoreError> {
    let message: PushMessage = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(err) => {
            tracing::error!(event = "dynamics_push_unreadable", error = %err, body = %cap_text(body, 512));
            return Ok(Prepared::Skipped("unreadable message"));
        }
    };
    let lead = match normalize_domain(&message.domain) {
        Ok(domain) => deps.store.get_lead(&domain).await?,
        Err(_) => None,
    };
    let Some(lead) = lead else {
        tracing::warn!(event = "dynamics_push_skipped", domain = %message.domain, reason = "no such lead");
        return Ok(Prepared::Skipped("no such lead"));
    };
    if !push_needed(&lead, message.lead_version, message.force) {
        tracing::info!(event = "dynamics_push_skipped", domain = %lead.domain, reason = "already synced", version = message.lead_version);
        return Ok(Prepared::Skipped("already synced"));
    }
    let referral = match &lead.latest {
        Some(newest) => stored_referral(deps.store, &newest.id).await?,
        None => None,
    };
    Ok(
        match deps
            .mapping
            .map(&lead_input(&lead, referral.as_ref(), deps.mapping))
        {
            Ok(record) => Prepared::Ready(lead, record),
            Err(err) => Prepared::Unmappable(lead, err.to_string()),
        },
    )
}

/// After a lead's upsert: its opportunities, sync state, audit entry and write-back.
async fn finish(
    deps: &PushDeps<'_>,
    lead: &Lead,
    upserted: Result<PushedLead, SinkError>,
) -> Result<PushOutcome, StoreError> {
    let outcome = match upserted {
        Ok(pushed) => match sync_opportunities(deps, lead).await? {
            Err(err) if err.is_retryable() => PushOutcome::from(err),
            _ => PushOutcome::Synced(pushed),
        },
        Err(err) => PushOutcome::from(err),
    };
    record_attempt(deps.store, lead, &outcome).await?;
    if let (PushOutcome::Synced(pushed), Some(writer)) = (&outcome, deps.write_back) {
        write_back(deps.store, writer, lead, &pushed.id).await?;
    }
    Ok(outcome)
}

/// Upserts the opportunity (with account and contact) of each accepted referral of the lead, in
/// one change set each. A permanent refusal is audited and the push stays done; the first
/// retryable failure is returned so the message is retried (the upserts are idempotent).
async fn sync_opportunities(
    deps: &PushDeps<'_>,
    lead: &Lead,
) -> Result<Result<(), SinkError>, StoreError> {
    if !deps.opportunities {
        return Ok(Ok(()));
    }
    for contribution in deps
        .store
        .all_contributions(&lead.domain)
        .await?
        .iter()
        .filter(|c| is_active(c))
    {
        let Some(referral) = stored_referral(deps.store, &contribution.id).await? else {
            continue;
        };
        let new_opportunity = contribution.opportunity_id.is_none();
        let records = opportunity_records(deps.mapping, lead, &referral, new_opportunity);
        let (result, detail) = match records {
            Ok(None) => continue,
            Err(err) => ("failed", format!("referral {}: {err}", referral.id)),
            Ok(Some(records)) => match deps.sink.upsert_opportunity(&records).await {
                Ok(id) => {
                    if new_opportunity {
                        remember_opportunity(deps.store, lead, &contribution.id, &id).await?;
                    }
                    let detail = format!("referral {} → opportunity {id}", referral.id);
                    ("synced", detail)
                }
                Err(err) if err.is_retryable() => return Ok(Err(err)),
                Err(err) => ("failed", format!("referral {}: {err}", referral.id)),
            },
        };
        tracing::info!(event = "dynamics_opportunity_upserted", domain = %lead.domain, referral_id = %referral.id, result);
        audit(deps.store, lead, "opportunity", result, Some(detail)).await?;
    }
    Ok(Ok(()))
}

/// Keeps the opportunity made of a referral on its contribution (its stage is the sellers' now).
async fn remember_opportunity(
    store: &dyn Store,
    lead: &Lead,
    referral_id: &str,
    opportunity_id: &str,
) -> Result<(), StoreError> {
    update_lead_with_referral(store, &lead.domain, referral_id, |stored| match stored {
        Some(LeadWithReferral {
            lead,
            contribution: Some(mut contribution),
        }) => {
            contribution.opportunity_id = Some(opportunity_id.to_owned());
            let written = LeadWithReferral {
                lead,
                contribution: Some(contribution),
            };
            Change::Write(written, ())
        }
        _ => Change::Keep(()),
    })
    .await
}

/// Sets each referral's `externalReferenceId` to the Dynamics id (unless it is already), with
/// the stored eTag as `If-Match`. A refusal is audited and logged; the push stays done.
async fn write_back(
    store: &dyn Store,
    writer: &dyn ReferralWriteBack,
    lead: &Lead,
    dynamics_id: &str,
) -> Result<(), StoreError> {
    for contribution in store.all_contributions(&lead.domain).await? {
        let Some(record) = store.get_referral(&contribution.id).await? else {
            continue;
        };
        if parse_referral(&record.raw).is_ok_and(|r| r.references(dynamics_id)) {
            continue;
        }
        let result = writer
            .set_external_reference(&record.id, record.etag.as_deref(), dynamics_id)
            .await;
        let (outcome, detail) = match &result {
            Ok(()) => ("done", format!("referral {}", record.id)),
            Err(err) => ("failed", format!("referral {}: {err}", record.id)),
        };
        tracing::info!(event = "partner_center_write_back", domain = %lead.domain, referral_id = %record.id, result = outcome);
        audit(store, lead, "write_back", outcome, Some(detail)).await?;
    }
    Ok(())
}

/// A referral as Partner Center sent it, read from its stored raw payload.
async fn stored_referral(store: &dyn Store, id: &str) -> Result<Option<Referral>, StoreError> {
    Ok(store
        .get_referral(id)
        .await?
        .and_then(|record| parse_referral(&record.raw).ok()))
}

/// Writes the attempt's sync state on the lead as stored now (changes ingested meanwhile are
/// kept) and appends its audit entry.
async fn record_attempt(
    store: &dyn Store,
    pushed: &Lead,
    outcome: &PushOutcome,
) -> Result<(), StoreError> {
    let attempt = match outcome {
        PushOutcome::Synced(p) => PushAttempt::Synced {
            dynamics_id: p.id.clone(),
            adopted: p.adopted,
        },
        PushOutcome::Failed(error) => PushAttempt::Failed(error.clone()),
        PushOutcome::Retry { error, .. } => PushAttempt::Retry(error.clone()),
        PushOutcome::Skipped(_) => return Ok(()),
    };
    let now = clock::now();
    let recorded = update_lead(store, &pushed.domain, |stored| match stored {
        Some(mut lead) => {
            record_push(&mut lead, pushed.content_version, &attempt, now);
            Change::Write(lead, true)
        }
        None => Change::Keep(false),
    })
    .await?;
    if !recorded {
        return Ok(());
    }
    let (action, result, detail) = attempt.audit();
    tracing::info!(event = "dynamics_push_attempt", domain = %pushed.domain, action, result, content_version = pushed.content_version);
    let entry = AuditEntry::new(
        pushed.domain.clone(),
        now,
        ACTOR,
        action,
        result,
        Some(detail),
    );
    store.append_audit(&entry).await
}

async fn audit(
    store: &dyn Store,
    lead: &Lead,
    action: &str,
    result: &str,
    detail: Option<String>,
) -> Result<(), StoreError> {
    let entry = AuditEntry::new(
        lead.domain.clone(),
        clock::now(),
        ACTOR,
        action,
        result,
        detail,
    );
    store.append_audit(&entry).await
}

/// The Lambda entry: an SQS event from the dynamics-push queue, pushed under the invocation's
/// deadline (less `DEADLINE_MARGIN` (10 s) to record what happened).
pub async fn handle(
    deps: &PushDeps<'_>,
    event: lambda_runtime::LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let deadline = deadline::from_epoch_millis(event.context.deadline)
        .map(|d| deadline::keeping_back(d, DEADLINE_MARGIN));
    Ok(deadline::within(deadline, handle_batch(deps, event.payload)).await)
}
