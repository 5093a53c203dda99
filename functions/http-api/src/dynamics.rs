//! Pushes to Dynamics 365 on request: one lead, every lead not synced, and where a lead stands.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hunter_core::bulk_sync::{BulkSyncError, BulkSyncStep, push_messages, queue_step};
use hunter_core::fanout::send_all;
use hunter_core::retry::Backoff;
use hunter_domain::model::{AuditEntry, Lead, SyncStatus};
use hunter_domain::rules::Domain;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::ApiPath;
use crate::{ApiState, LeadDomain, lead_of};

/// How many audit entries the push status shows.
const STATUS_AUDIT: usize = 20;

/// Queues pushes of `leads` (`force`: even of a version Dynamics has); returns how many were
/// queued.
pub(crate) async fn queue_pushes(
    state: &ApiState,
    leads: &[Lead],
    force: bool,
) -> Result<usize, ApiError> {
    let messages = push_messages(leads, force);
    let report = send_all(state.push_queue.as_ref(), &messages, &Backoff::default())
        .await
        .map_err(|e| {
            tracing::error!(event = "api_queue_failed", retryable = e.is_retryable(), error = %e);
            ApiError::unavailable("queue_unavailable", "the push queue is unavailable")
        })?;
    for failure in &report.failed {
        tracing::error!(event = "api_push_not_queued", code = %failure.code, error = %failure.message);
    }
    Ok(report.sent)
}

/// A push that was queued.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PushQueued {
    domain: Domain,
    queued: bool,
}

/// `POST /dynamics/sync/{domain}`: pushes the lead to Dynamics now, even a version Dynamics has.
#[utoipa::path(post, path = "/dynamics/sync/{domain}", tag = "dynamics",
    params(LeadDomain),
    responses((status = 202, body = PushQueued), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), CommonErrors))]
pub(crate) async fn push_one(
    State(state): State<ApiState>,
    ApiPath(LeadDomain { domain }): ApiPath<LeadDomain>,
) -> Result<(StatusCode, Json<PushQueued>), ApiError> {
    let lead = lead_of(&state, &domain).await?;
    if queue_pushes(&state, std::slice::from_ref(&lead), true).await? == 0 {
        return Err(ApiError::unavailable(
            "queue_unavailable",
            "the push queue did not take the push; try again",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(PushQueued {
            domain: lead.domain,
            queued: true,
        }),
    ))
}

/// Pushes that were queued.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PushesQueued {
    /// Pushes queued by this request (the first page of leads).
    queued: usize,
    /// More pages follow: push-dynamics queues them one after the other.
    continuing: bool,
}

/// `POST /dynamics/bulk-sync`: pushes every lead not synced (pending or failed). This request
/// queues the first page; each page queues the next one from the push queue.
#[utoipa::path(post, path = "/dynamics/bulk-sync", tag = "dynamics",
    responses((status = 202, body = PushesQueued), CommonErrors))]
pub(crate) async fn push_all(
    State(state): State<ApiState>,
) -> Result<(StatusCode, Json<PushesQueued>), ApiError> {
    let step = queue_step(
        state.store.as_ref(),
        state.push_queue.as_ref(),
        &BulkSyncStep::start(),
    )
    .await
    .map_err(|e| match e {
        BulkSyncError::Store(err) => ApiError::from(err),
        other => {
            tracing::error!(event = "api_queue_failed", retryable = other.is_retryable(), error = %other);
            ApiError::unavailable("queue_unavailable", "the push queue is unavailable")
        }
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PushesQueued {
            queued: step.pushes,
            continuing: step.continues,
        }),
    ))
}

/// Where a lead stands with Dynamics.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PushStatus {
    domain: Domain,
    sync_status: SyncStatus,
    dynamics_id: Option<String>,
    last_synced_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    sync_attempts: u32,
    /// The lead's content version; Dynamics has `syncedVersion`.
    content_version: u64,
    synced_version: Option<u64>,
    /// The newest audit entries (at most 20).
    audit: Vec<AuditEntry>,
}

/// `GET /dynamics/status/{domain}`: the lead's Dynamics sync state and recent audit trail.
#[utoipa::path(get, path = "/dynamics/status/{domain}", tag = "dynamics",
    params(LeadDomain),
    responses((status = 200, body = PushStatus), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), CommonErrors))]
pub(crate) async fn push_status(
    State(state): State<ApiState>,
    ApiPath(LeadDomain { domain }): ApiPath<LeadDomain>,
) -> Result<Json<PushStatus>, ApiError> {
    let lead = lead_of(&state, &domain).await?;
    let audit = state.store.list_audit(&lead.domain, STATUS_AUDIT).await?;
    Ok(Json(PushStatus {
        domain: lead.domain,
        sync_status: lead.sync_status,
        dynamics_id: lead.dynamics_id,
        last_synced_at: lead.last_synced_at,
        last_error: lead.last_error,
        sync_attempts: lead.sync_attempts,
        content_version: lead.content_version,
        synced_version: lead.synced_version,
        audit,
    }))
}
