//! Partner Center webhook events (`POST /webhooks/partner-center`, signed by Partner Center, no
//! bearer token) and what they did (`GET /webhooks`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hunter_core::fanout::{DeliveryFailure, deliver_referrals, webhook_messages};
use hunter_core::partner_center::webhook::{
    CERTIFICATE_URL_HEADER, EventAction, SIGNATURE_ALGORITHM_HEADER, SignatureHeaders,
    WebhookError, WebhookEvent, WebhookVerifier,
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
pub(crate) const MAX_EVENT_BYTES: usize = 16 * 1024;

/// Refused events are recorded in the store at most this often (each is logged): anyone can
/// post an unsigned event, and each would otherwise be a write.
const REFUSAL_RECORD_INTERVAL: Duration = Duration::from_secs(60);

/// What the webhook route needs: who may sign events, and where to fetch the referral they name.
#[allow(missing_debug_implementations, reason = "trait objects")]
#[derive(Clone)]
pub struct WebhookIntake {
    pub verifier: Arc<WebhookVerifier>,
    pub referrals: Arc<dyn ReferralLookup>,
    /// When a refusal was last recorded in the store.
    pub last_refusal_recorded: Arc<Mutex<Option<Instant>>>,
}

impl WebhookIntake {
    pub fn new(verifier: Arc<WebhookVerifier>, referrals: Arc<dyn ReferralLookup>) -> Self {
        Self {
            verifier,
            referrals,
            last_refusal_recorded: Arc::default(),
        }
    }

    /// Whether to record a refusal now (at most one per [`REFUSAL_RECORD_INTERVAL`]).
    fn record_refusal_now(&self) -> bool {
        let mut last = self
            .last_refusal_recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= REFUSAL_RECORD_INTERVAL);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

/// What was done with an event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventHandled {
    /// `queued` (the referral is on its way to ingest), `test`, `ignored` (an event Hunter does
    /// not act on), `invalid` (a signed body Hunter cannot read or that names no referral id) or
    /// `recorded_invalid` (a referral too large to ingest: stored as `invalid_payload`).
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
/// events change nothing twice (the version rule). 503 asks Partner Center to deliver it again
/// (it tries 10 times).
#[utoipa::path(post, path = "/webhooks/partner-center", tag = "webhooks", security(()),
    request_body(content = PartnerCenterEventDoc, content_type = "application/json"),
    responses(
        (status = 202, description = "The referral was queued for ingest", body = EventHandled),
        (status = 200, description = "Nothing to queue (a test event, another event, a signed body Hunter cannot read)", body = EventHandled),
        (status = 401, description = "Unsigned, wrongly signed, or an untrusted certificate (`invalid_signature`)", body = ErrorBody),
        (status = 404, description = "Webhooks are not set up here (`webhooks_disabled`)", body = ErrorBody),
        (status = 400, description = "A body that cannot be read", body = ErrorBody),
        (status = 413, description = "A body larger than an event (`payload_too_large`)", body = ErrorBody),
        (status = 503, description = "Partner Center, the certificate or the queue cannot be reached now, or the referral is not readable yet: deliver again", body = ErrorBody)))]
pub(crate) async fn partner_center_event(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(intake) = state.webhooks.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "webhooks_disabled",
            "Partner Center webhooks are not set up on this deployment",
        ));
    };
    // The route's body limit is MAX_EVENT_BYTES (handler.rs).
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("an event is at most {MAX_EVENT_BYTES} bytes"),
        ),
        _ => ApiError::bad_request(e.body_text()),
    })?;
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
        tracing::warn!(event = "webhook_refused", reason = err.kind(), detail = %err);
        // Requests that do not even look signed (scanners, a wrong URL) are logged only; one
        // that carries Partner Center's headers and fails says something is misconfigured or
        // forged, and is shown.
        let looks_signed = !matches!(
            err,
            WebhookError::MissingHeader(_)
                | WebhookError::WrongScheme
                | WebhookError::MalformedSignature
        );
        if looks_signed && intake.record_refusal_now() {
            count_event(&*state.store, &EventOutcome::Refused(err.kind().to_owned())).await;
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            err.to_string(),
        ));
    }
    // A signed event Hunter cannot act on is answered 200: delivering it again would not help.
    let action = WebhookEvent::parse(&body).and_then(|event| Ok((event.action()?, event)));
    let (action, event) = match action {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(event = "webhook_invalid_event", error = %e);
            count_event(&*state.store, &EventOutcome::Received).await;
            return Ok((StatusCode::OK, Json(handled("invalid", None))).into_response());
        }
    };
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
            // Not readable yet (or gone): answered 503 so that Partner Center delivers the event
            // again; a referral that is gone for good stops after its retries.
            tracing::warn!(event = "webhook_referral_not_found", referral_id = id);
            return Err(ApiError::unavailable(
                "referral_not_found",
                format!("Partner Center has no referral {id} (yet); deliver the event again"),
            ));
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
    let delivered = deliver_referrals(
        &*state.store,
        &*state.referrals_queue,
        None,
        &page,
        &Backoff::default(),
    )
    .await
    .map_err(|err| match err.failure {
        DeliveryFailure::Store { error, .. } => ApiError::from(error),
        DeliveryFailure::Queue(_) | DeliveryFailure::NotTaken(_) => {
            ApiError::unavailable("queue_unavailable", err.to_string())
        }
    })?;
    Ok(if delivered.sent > 0 {
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
