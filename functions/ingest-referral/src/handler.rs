//! ingest-referral: each referral message → parse, domain, eligibility → conditional upsert →
//! the lead of its domain → a push request when the lead changed.
//!
//! Unreadable input is stored as `invalid_payload` with its (capped) text and acknowledged; only
//! failures that may pass (store or queue unavailable) are reported as batch item failures, so
//! SQS redelivers just those messages and dead-letters them after maxReceiveCount.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use hunter_core::fanout::send_all;
use hunter_core::messages::{PushMessage, ReferralMessage};
use hunter_core::ports::{OutgoingMessage, Queue, Store, UpsertOutcome};
use hunter_core::ports::{QueueError, StoreError};
use hunter_core::retry::Backoff;
use hunter_core::sync_report::report_if_complete;
use hunter_domain::clock;
use hunter_domain::leads::{contains, merge_referral};
use hunter_domain::model::{Lead, ReferralRecord, SyncStatus};
use hunter_domain::referral::parse_referral_value;
use hunter_domain::rules::{Domain, Rules, SkipReason, eligibility, extract_domain};

/// Optimistic lead writes tried before the message is handed back to the queue.
const LEAD_WRITE_ATTEMPTS: u32 = 5;

/// What the function works with.
#[allow(missing_debug_implementations, reason = "trait objects")]
pub struct IngestDeps<'a> {
    pub store: &'a dyn Store,
    /// The dynamics-push queue.
    pub push_queue: &'a dyn Queue,
    pub rules: &'a Rules,
    pub send_backoff: Backoff,
}

/// A failure that leaves the message on the queue.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the dynamics-push queue refused the push of {domain}: {message}")]
    PushRefused { domain: String, message: String },
}

impl IngestError {
    /// Whether redelivering the message may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Queue(e) => e.is_retryable(),
            Self::PushRefused { .. } => false,
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub referral_id: String,
    pub outcome: UpsertOutcome,
    pub skip_reason: Option<SkipReason>,
    pub domain: Option<Domain>,
    /// The lead was created or changed and a push was requested.
    pub lead_changed: bool,
    pub push_requested: bool,
}

/// The SQS batch handler: every record processed, transient failures reported for redelivery.
pub async fn handle_batch(deps: &IngestDeps<'_>, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.unwrap_or_default();
        let body = record.body.unwrap_or_default();
        if let Err(err) = ingest_message(deps, &body).await {
            tracing::warn!(event = "referral_ingest_failed", message_id = %message_id, error = %err, retryable = err.is_retryable());
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// One message. An `Err` means "deliver it again"; permanent problems are recorded, not returned.
pub async fn ingest_message(deps: &IngestDeps<'_>, body: &str) -> Result<Ingested, IngestError> {
    match ingest_readable(deps, body).await {
        // The store refused the record for what it is (e.g. too large an item): keep the input,
        // capped, with the reason.
        Err(IngestError::Store(StoreError::InvalidItem(detail))) => {
            record_invalid(deps, None, body, &detail).await
        }
        other => other,
    }
}

async fn ingest_readable(deps: &IngestDeps<'_>, body: &str) -> Result<Ingested, IngestError> {
    let message = match ReferralMessage::from_body(body) {
        Ok(message) => message,
        Err(invalid) => return record_invalid(deps, None, body, &invalid.to_string()).await,
    };
    let run_id = message.run_id.as_deref();
    let referral = match parse_referral_value(message.referral.clone()) {
        Ok(referral) => referral,
        Err(invalid) => {
            return record_invalid(
                deps,
                run_id,
                &message.referral.to_string(),
                &invalid.to_string(),
            )
            .await;
        }
    };
    let extracted = extract_domain(&referral, deps.rules);
    let decision = eligibility(&referral, extracted.as_ref().map(|d| &d.domain), deps.rules);
    let record = ReferralRecord::from_referral(&referral, extracted, decision, clock::now());
    let outcome = deps.store.upsert_referral(&record).await?;
    let (lead_changed, push_requested) = match outcome {
        UpsertOutcome::Stale => (false, false),
        _ => update_lead(deps, &record, outcome).await?,
    };
    log_ingested(run_id, &record, outcome, lead_changed);
    count(deps, run_id, &record.id, outcome, record.skip_reason).await?;
    Ok(Ingested {
        referral_id: record.id,
        outcome,
        skip_reason: record.skip_reason,
        domain: record.domain,
        lead_changed,
        push_requested,
    })
}

/// Joins an eligible referral to its domain's lead (and refreshes a referral that left
/// eligibility in the lead that counts it). Requests a push when the lead changed, and again on
/// a redelivery of a referral whose lead is still pending (the first request may have been lost).
async fn update_lead(
    deps: &IngestDeps<'_>,
    record: &ReferralRecord,
    outcome: UpsertOutcome,
) -> Result<(bool, bool), IngestError> {
    let Some(domain) = &record.domain else {
        return Ok((false, false));
    };
    for _ in 0..LEAD_WRITE_ATTEMPTS {
        let stored = deps.store.get_lead(domain).await?;
        if !record.eligible && !stored.as_ref().is_some_and(|l| contains(l, &record.id)) {
            return Ok((false, false));
        }
        let expected = stored.as_ref().map(|l| l.version);
        let mut lead = stored.unwrap_or_else(|| Lead::new(domain.clone(), clock::now()));
        if !merge_referral(&mut lead, record, clock::now()) {
            let retry_push = outcome == UpsertOutcome::Unchanged
                && lead.sync_status == SyncStatus::Pending
                && expected.is_some();
            if retry_push {
                request_push(deps, &lead).await?;
            }
            return Ok((false, retry_push));
        }
        if let Some(version) = expected {
            lead.version = version + 1;
        }
        lead.sync_status = SyncStatus::Pending;
        match deps.store.put_lead(&lead, expected).await {
            Ok(()) => {
                request_push(deps, &lead).await?;
                return Ok((true, true));
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(StoreError::Conflict(format!("lead {domain} kept changing")).into())
}

async fn request_push(deps: &IngestDeps<'_>, lead: &Lead) -> Result<(), IngestError> {
    let body = PushMessage {
        domain: lead.domain.to_string(),
        lead_version: lead.content_version,
        force: false,
    }
    .to_body();
    let report = send_all(
        deps.push_queue,
        &[OutgoingMessage::new("0", body)],
        &deps.send_backoff,
    )
    .await
    .map_err(|e| e.error)?;
    match report.failed.first() {
        None => Ok(()),
        Some(f) if f.sender_fault => Err(IngestError::PushRefused {
            domain: lead.domain.to_string(),
            message: format!("{} {}", f.code, f.message),
        }),
        Some(f) => Err(QueueError::Unavailable(format!("{} {}", f.code, f.message)).into()),
    }
}

/// Stores unreadable input as `invalid_payload` and counts it in its run.
async fn record_invalid(
    deps: &IngestDeps<'_>,
    run_id: Option<&str>,
    text: &str,
    detail: &str,
) -> Result<Ingested, IngestError> {
    let record = ReferralRecord::invalid(text, detail, clock::now());
    let outcome = deps.store.upsert_referral(&record).await?;
    log_ingested(run_id, &record, outcome, false);
    count(deps, run_id, &record.id, outcome, record.skip_reason).await?;
    Ok(Ingested {
        referral_id: record.id,
        outcome,
        skip_reason: record.skip_reason,
        domain: None,
        lead_changed: false,
        push_requested: false,
    })
}

async fn count(
    deps: &IngestDeps<'_>,
    run_id: Option<&str>,
    referral_id: &str,
    outcome: UpsertOutcome,
    skip_reason: Option<SkipReason>,
) -> Result<(), StoreError> {
    if let Some(run_id) = run_id {
        if deps
            .store
            .count_ingested(run_id, referral_id, outcome, skip_reason)
            .await?
        {
            report_if_complete(deps.store, run_id).await;
        }
    }
    Ok(())
}

fn log_ingested(
    run_id: Option<&str>,
    record: &ReferralRecord,
    outcome: UpsertOutcome,
    lead_changed: bool,
) {
    let domain = record.domain.as_ref().map(Domain::as_str);
    match record.skip_reason {
        None => tracing::info!(
            event = "partner_center_referral_ingested",
            run_id,
            referral_id = %record.id,
            outcome = outcome.as_str(),
            domain,
            domain_source = record.domain_source.map(|s| s.as_str()),
            lead_changed,
        ),
        Some(reason) => tracing::info!(
            event = "partner_center_referral_skipped",
            run_id,
            referral_id = %record.id,
            outcome = outcome.as_str(),
            reason = reason.as_str(),
            detail = record.skip_detail.as_deref(),
            domain,
        ),
    }
}

/// The Lambda entry: an SQS event from the referrals queue.
pub async fn handle(
    deps: &IngestDeps<'_>,
    event: lambda_runtime::LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(handle_batch(deps, event.payload).await)
}
