//! push-dynamics: one message per lead (domain + version) → map → upsert in Dynamics by key →
//! sync state on the lead and one audit entry per attempt.
//!
//! Pushes of a version Dynamics already has are skipped. Retryable failures (throttling, 5xx,
//! network) are batch item failures whose visibility is extended to the `Retry-After`; permanent
//! ones (validation, a lead that cannot be mapped) mark the lead `failed` with the reason and are
//! acknowledged.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::StreamExt as _;
use hunter_core::messages::PushMessage;
use hunter_core::ports::StoreError;
use hunter_core::ports::{
    LeadSink, LeadUpsert, PushedLead, Queue, ReferralWriteBack, SinkError, Store,
};
use hunter_domain::clock;
use hunter_domain::crm::{DynamicsMapping, lead_input, opportunity_records};
use hunter_domain::model::{AuditEntry, Lead, SyncStatus};
use hunter_domain::referral::{Referral, parse_referral};
use serde_json::{Map, Value};

/// Who the audit trail names for pushes.
pub const ACTOR: &str = "push-dynamics";
/// Optimistic writes of the lead's sync state before giving up (the message is retried).
const LEAD_WRITE_ATTEMPTS: u32 = 5;

/// What the function works with.
#[allow(missing_debug_implementations, reason = "trait objects")]
pub struct PushDeps<'a> {
    pub store: &'a dyn Store,
    pub sink: &'a dyn LeadSink,
    pub mapping: &'a DynamicsMapping,
    /// The dynamics-push queue, to extend a throttled message's visibility.
    pub queue: Option<&'a dyn Queue>,
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

/// The SQS batch handler: the batch's leads are upserted together (a `$batch` when there are
/// several), the rest of each push runs concurrently, as many at once as the sink allows
/// (Dataverse's `x-ms-dop-hint`).
pub async fn handle_batch(deps: &PushDeps<'_>, event: SqsEvent) -> SqsBatchResponse {
    let bodies: Vec<&str> = event
        .records
        .iter()
        .map(|r| r.body.as_deref().unwrap_or_default())
        .collect();
    let outcomes = push_messages(deps, &bodies).await;
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in event.records.iter().zip(outcomes) {
        let message_id = record.message_id.clone().unwrap_or_default();
        let (error, after) = match outcome {
            Ok(PushOutcome::Retry { error, after }) => (error, after),
            Err(err) => (err.to_string(), None),
            Ok(_) => continue,
        };
        tracing::warn!(event = "dynamics_push_retry", message_id = %message_id, error = %error, retry_after_ms = after.map(|d| d.as_millis()));
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
    response
}

/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

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
    for item in &mut prepared {
        if let Ok(Prepared::Ready(lead, _)) = item {
            if !seen.insert(lead.domain.clone()) {
                tracing::info!(event = "dynamics_push_skipped", domain = %lead.domain, reason = "duplicate in batch");
                *item = Ok(Prepared::Skipped("duplicate in batch"));
            }
        }
    }
    let (ready, upserts): (Vec<usize>, Vec<LeadUpsert>) = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            Ok(Prepared::Ready(lead, record)) => Some((
                i,
                LeadUpsert {
                    key: lead.domain.to_string(),
                    domain: lead.domain.to_string(),
                    record: record.clone(),
                    adopt: lead.dynamics_id.is_none(),
                },
            )),
            _ => None,
        })
        .unzip();
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
            tracing::error!(event = "dynamics_push_unreadable", error = %err, body = %hunter_domain::referral::cap_text(body, 512));
            return Ok(Prepared::Skipped("unreadable message"));
        }
    };
    let Some(lead) = find_lead(deps.store, &message.domain).await? else {
        tracing::warn!(event = "dynamics_push_skipped", domain = %message.domain, reason = "no such lead");
        return Ok(Prepared::Skipped("no such lead"));
    };
    if !message.force
        && lead
            .synced_version
            .is_some_and(|v| v >= message.lead_version)
    {
        tracing::info!(event = "dynamics_push_skipped", domain = %lead.domain, reason = "already synced", version = message.lead_version);
        return Ok(Prepared::Skipped("already synced"));
    }
    let referral = newest_referral(deps.store, &lead).await?;
    Ok(
        match deps.mapping.map(&lead_input(&lead, referral.as_ref())) {
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
            Err(err) if err.is_retryable() => PushOutcome::Retry {
                error: err.to_string(),
                after: err.retry_after(),
            },
            _ => PushOutcome::Synced(pushed),
        },
        Err(err) if err.is_retryable() => PushOutcome::Retry {
            error: err.to_string(),
            after: err.retry_after(),
        },
        Err(err) => PushOutcome::Failed(err.to_string()),
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
    for contribution in lead.contributions.iter().filter(|c| {
        c.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Active"))
    }) {
        let Some(referral) = deps
            .store
            .get_referral(&contribution.id)
            .await?
            .and_then(|record| parse_referral(&record.raw).ok())
        else {
            continue;
        };
        let (result, detail) = match opportunity_records(deps.mapping, lead, &referral) {
            Ok(None) => continue,
            Err(err) => ("failed", format!("referral {}: {err}", referral.id)),
            Ok(Some(records)) => match deps.sink.upsert_opportunity(&records).await {
                Ok(id) => (
                    "synced",
                    format!("referral {} → opportunity {id}", referral.id),
                ),
                Err(err) if err.is_retryable() => return Ok(Err(err)),
                Err(err) => ("failed", format!("referral {}: {err}", referral.id)),
            },
        };
        tracing::info!(event = "dynamics_opportunity_upserted", domain = %lead.domain, referral_id = %referral.id, result);
        let entry = AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            domain: lead.domain.clone(),
            at: clock::now(),
            actor: ACTOR.to_owned(),
            action: "opportunity".to_owned(),
            result: result.to_owned(),
            detail: Some(detail),
        };
        deps.store.append_audit(&entry).await?;
    }
    Ok(Ok(()))
}

/// Sets each referral's `externalReferenceId` to the Dynamics id (unless it is already), with
/// the stored eTag as `If-Match`. A refusal is audited and logged; the push stays done.
async fn write_back(
    store: &dyn Store,
    writer: &dyn ReferralWriteBack,
    lead: &Lead,
    dynamics_id: &str,
) -> Result<(), StoreError> {
    for contribution in &lead.contributions {
        let Some(record) = store.get_referral(&contribution.id).await? else {
            continue;
        };
        let current = serde_json::from_str::<serde_json::Value>(&record.raw)
            .ok()
            .and_then(|raw| raw["externalReferenceId"].as_str().map(str::to_owned));
        if current.as_deref() == Some(dynamics_id) {
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
        let entry = AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            domain: lead.domain.clone(),
            at: clock::now(),
            actor: ACTOR.to_owned(),
            action: "write_back".to_owned(),
            result: outcome.to_owned(),
            detail: Some(detail),
        };
        store.append_audit(&entry).await?;
    }
    Ok(())
}

async fn find_lead(store: &dyn Store, domain: &str) -> Result<Option<Lead>, StoreError> {
    match hunter_domain::rules::normalize_domain(domain) {
        Ok(domain) => store.get_lead(&domain).await,
        Err(_) => Ok(None),
    }
}

/// The lead's most recently updated referral, read from its stored raw payload.
async fn newest_referral(store: &dyn Store, lead: &Lead) -> Result<Option<Referral>, StoreError> {
    let newest = lead
        .contributions
        .iter()
        .max_by(|a, b| (a.updated_date_time, &a.id).cmp(&(b.updated_date_time, &b.id)));
    let Some(newest) = newest else {
        return Ok(None);
    };
    Ok(store
        .get_referral(&newest.id)
        .await?
        .and_then(|record| parse_referral(&record.raw).ok()))
}

/// Writes the attempt's sync state on the lead (re-reading on conflicts, so concurrent ingest
/// changes are kept) and appends its audit entry.
async fn record_attempt(
    store: &dyn Store,
    pushed: &Lead,
    outcome: &PushOutcome,
) -> Result<(), StoreError> {
    let now = clock::now();
    let (action, result, detail) = match outcome {
        PushOutcome::Synced(p) => (
            if p.adopted { "adopt" } else { "upsert" },
            "synced",
            Some(format!("dynamicsId {}", p.id)),
        ),
        PushOutcome::Failed(error) => ("upsert", "failed", Some(error.clone())),
        PushOutcome::Retry { error, .. } => ("upsert", "retry", Some(error.clone())),
        PushOutcome::Skipped(_) => return Ok(()),
    };
    for _ in 0..LEAD_WRITE_ATTEMPTS {
        let Some(mut lead) = store.get_lead(&pushed.domain).await? else {
            return Ok(());
        };
        let expected = lead.version;
        lead.sync_attempts += 1;
        match outcome {
            PushOutcome::Synced(p) => {
                lead.dynamics_id = Some(p.id.clone());
                lead.last_synced_at = Some(now);
                lead.last_error = None;
                lead.synced_version =
                    Some(pushed.content_version.max(lead.synced_version.unwrap_or(0)));
                // A change ingested meanwhile keeps the lead pending (its own push is queued).
                lead.sync_status = if lead.content_version == pushed.content_version {
                    SyncStatus::Synced
                } else {
                    SyncStatus::Pending
                };
            }
            PushOutcome::Failed(error) => {
                lead.sync_status = SyncStatus::Failed;
                lead.last_error = Some(error.clone());
            }
            PushOutcome::Retry { error, .. } => lead.last_error = Some(error.clone()),
            PushOutcome::Skipped(_) => {}
        }
        lead.version = expected + 1;
        lead.updated_at = now;
        match store.put_lead(&lead, Some(expected)).await {
            Ok(()) => break,
            Err(StoreError::Conflict(_)) => continue,
            Err(err) => return Err(err),
        }
    }
    let entry = AuditEntry {
        id: uuid::Uuid::new_v4().to_string(),
        domain: pushed.domain.clone(),
        at: now,
        actor: ACTOR.to_owned(),
        action: action.to_owned(),
        result: result.to_owned(),
        detail,
    };
    tracing::info!(event = "dynamics_push_attempt", domain = %pushed.domain, action, result, content_version = pushed.content_version);
    store.append_audit(&entry).await
}

/// The Lambda entry: an SQS event from the dynamics-push queue.
pub async fn handle(
    deps: &PushDeps<'_>,
    event: lambda_runtime::LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(handle_batch(deps, event.payload).await)
}
