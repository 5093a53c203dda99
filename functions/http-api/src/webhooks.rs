//! Partner Center webhook events (`POST /webhooks/partner-center`, signed by Partner Center, no
//! bearer token) and what they did (`GET /webhooks`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hunter_core::fanout::{enqueue_referrals, webhook_messages};
use hunter_core::intake::record_invalid;
use hunter_core::partner_center::webhook::{
    CERTIFICATE_URL_HEADER, EventAction, SIGNATURE_ALGORITHM_HEADER, SignatureHeaders,
    WebhookEvent, WebhookVerifier,
};
use hunter_core::ports::ReferralLookup;
use hunter_core::retry::Backoff;
use hunter_core::webhook_activity::{EventOutcome, count_event, webhook_activity};
use hunter_domain::clock;
use hunter_domain::model::WebhookActivity;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::{ApiError, CommonErrors, ErrorBody};

/// The largest event body read (Partner Center's are a few hundred bytes).
const MAX_EVENT_BYTES: usize = 16 * 1024;

/// What the webhook route needs: who may sign events, and where to fetch the referral they name.
#[allow(missing_debug_implementations, reason = "trait objects")]
#[derive(Clone)]
pub struct WebhookIntake {
    pub verifier: Arc<WebhookVerifier>,
    pub referrals: Arc<dyn ReferralLookup>,
}

/// What was done with an event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventHandled {
    /// `queued` (the referral is on its way to ingest), `test`, `ignored` (an event Hunter does
    /// not act on), `not_found` (Partner Center no longer has the referral) or
    /// `recorded_invalid` (too large to ingest: stored as `invalid_payload`).
    outcome: &'static str,
    /// The referral the event named.
    #[serde(skip_serializing_if = "Option::is_none")]
    referral_id: Option<String>,
}

/// A Partner Center event as it is posted (`{EventName, ResourceUri, ResourceName, AuditUri,
/// ResourceChangeUtcDate}`), signed: `Authorization: Signature <base64>`,
/// `x-ms-certificate-url`, `x-ms-signature-algorithm: rsa-sha256`.
#[derive(Debug, ToSchema)]
#[schema(as = PartnerCenterEvent)]
#[allow(dead_code, non_snake_case, reason = "documents the body only")]
pub(crate) struct PartnerCenterEventDoc {
    EventName: String,
    ResourceUri: Option<String>,
    ResourceName: Option<String>,
    AuditUri: Option<String>,
    ResourceChangeUtcDate: Option<String>,
}

/// `POST /webhooks/partner-center`: a Partner Center event. Its signature is checked first
/// (401 when it is missing or wrong, before anything else is read); a referral event fetches
/// that referral from Partner Center and queues it for ingest, where duplicate and out-of-order
/// events change nothing twice (the version rule). 503 asks Partner Center to deliver it again.
#[utoipa::path(post, path = "/webhooks/partner-center", tag = "webhooks", security(()),
    request_body(content = PartnerCenterEventDoc, content_type = "application/json"),
    responses(
        (status = 202, description = "The referral was queued for ingest", body = EventHandled),
        (status = 200, description = "Nothing to queue (test event, other event, referral gone)", body = EventHandled),
        (status = 400, description = "A signed event Hunter cannot read (`invalid_event`)", body = ErrorBody),
        (status = 401, description = "Unsigned, wrongly signed, or an untrusted certificate (`invalid_signature`)", body = ErrorBody),
        (status = 404, description = "Webhooks are not set up here (`webhooks_disabled`)", body = ErrorBody),
        (status = 413, description = "A body larger than an event (`payload_too_large`)", body = ErrorBody),
        (status = 503, description = "Partner Center, the certificate or the queue cannot be reached now", body = ErrorBody)))]
pub(crate) async fn partner_center_event(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(intake) = state.webhooks.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "webhooks_disabled",
            "Partner Center webhooks are not set up on this deployment",
        ));
    };
    if body.len() > MAX_EVENT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("an event is at most {MAX_EVENT_BYTES} bytes"),
        ));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = SignatureHeaders {
        authorization: header("authorization"),
        certificate_url: header(CERTIFICATE_URL_HEADER),
        algorithm: header(SIGNATURE_ALGORITHM_HEADER),
    };
    if let Err(err) = intake.verifier.verify(signature, &body, clock::now()).await {
        if err.is_retryable() {
            tracing::warn!(event = "webhook_certificate_unavailable", error = %err);
            return Err(ApiError::unavailable(
                "certificate_unavailable",
                err.to_string(),
            ));
        }
        tracing::warn!(event = "webhook_refused", reason = %err);
        count_event(&*state.store, &EventOutcome::Refused(err.to_string())).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            err.to_string(),
        ));
    }
    let invalid = |e: hunter_core::partner_center::webhook::InvalidEvent| {
        tracing::warn!(event = "webhook_invalid_event", error = %e);
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string())
    };
    let event = WebhookEvent::parse(&body).map_err(invalid)?;
    let action = event.action().map_err(invalid)?;
    let (status, handled) = match action {
        EventAction::Test => (StatusCode::OK, handled("test", None)),
        EventAction::Ignore(name) => {
            tracing::info!(event = "webhook_event_ignored", name);
            (StatusCode::OK, handled("ignored", None))
        }
        EventAction::FetchReferral(id) => queue_referral(&state, intake, id).await?,
    };
    let outcome = if status == StatusCode::ACCEPTED {
        EventOutcome::Queued
    } else {
        EventOutcome::Received
    };
    count_event(&*state.store, &outcome).await;
    tracing::info!(
        event = "webhook_event",
        name = event.event_name,
        outcome = handled.outcome,
        referral_id = handled.referral_id
    );
    Ok((status, Json(handled)).into_response())
}

fn handled(outcome: &'static str, referral_id: Option<String>) -> EventHandled {
    EventHandled {
        outcome,
        referral_id,
    }
}

/// Fetches referral `id` and queues it for ingest as a webhook arrival: a message like the
/// sweep's, by reference when too large, recorded as `invalid_payload` when too large to read.
async fn queue_referral(
    state: &ApiState,
    intake: &WebhookIntake,
    id: String,
) -> Result<(StatusCode, EventHandled), ApiError> {
    let referral = match intake.referrals.referral(&id).await {
        Ok(Some(referral)) => referral,
        Ok(None) => {
            tracing::warn!(event = "webhook_referral_not_found", referral_id = id);
            return Ok((StatusCode::OK, handled("not_found", Some(id))));
        }
        Err(err) => {
            tracing::warn!(event = "webhook_referral_fetch_failed", referral_id = id, retryable = err.is_retryable(), error = %err);
            return Err(ApiError::unavailable(
                "partner_center_unavailable",
                format!("referral {id} could not be fetched from Partner Center: {err}"),
            ));
        }
    };
    let page = webhook_messages(referral);
    for payload in &page.payloads {
        state.store.put_payload(&payload.key, &payload.text).await?;
    }
    for unsendable in &page.unsendable {
        record_invalid(&*state.store, None, &unsendable.text, &unsendable.detail).await?;
    }
    let enqueued = enqueue_referrals(&*state.referrals_queue, &page.messages, &Backoff::default())
        .await
        .map_err(|e| ApiError::unavailable("queue_unavailable", e.to_string()))?;
    if !enqueued.transient.is_empty() {
        return Err(ApiError::unavailable(
            "queue_unavailable",
            "the referrals queue did not take the referral, try again",
        ));
    }
    for refused in &enqueued.refused {
        record_invalid(&*state.store, None, &refused.text, &refused.detail).await?;
    }
    let queued = enqueued.sent > 0;
    Ok(if queued {
        (StatusCode::ACCEPTED, handled("queued", Some(id)))
    } else {
        (StatusCode::OK, handled("recorded_invalid", Some(id)))
    })
}

/// `GET /webhooks`: the webhook registration and the events received so far.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookActivity), CommonErrors))]
pub(crate) async fn webhooks(
    State(state): State<ApiState>,
) -> Result<Json<WebhookActivity>, ApiError> {
    Ok(Json(webhook_activity(&*state.store).await?))
}
