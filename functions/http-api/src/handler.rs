//! The `/api/v1` HTTP API: health, referrals, leads and scans, sync runs, starting a sync,
//! Dynamics pushes. The same router serves API Gateway (payload 2.0) on Lambda and
//! hunter-local's listener.

mod leads;

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hunter_core::fanout::send_all;
use hunter_core::messages::PushMessage;
use hunter_core::ports::{AccessTokenVerifier, AuthError, StoreError, TriggerError};
use hunter_core::ports::{
    DomainScanner, LeadQuery, MAX_PAGE_SIZE, OutgoingMessage, Queue, ReferralQuery, Store,
    SyncTrigger,
};
use hunter_core::retry::Backoff;
use hunter_core::secret::Secret;
use hunter_domain::model::{Lead, RunStatus, SyncStatus};
use hunter_domain::rules::{Rules, SkipReason, normalize_domain};
use serde::Deserialize;
use serde_json::{Value, json};

/// What the routes share.
#[allow(missing_debug_implementations, reason = "trait objects")]
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// The referrals queue (its depth is in `/health`).
    pub referrals_queue: Arc<dyn Queue>,
    /// The dynamics-push queue.
    pub push_queue: Arc<dyn Queue>,
    /// Starts `POST /sync` runs.
    pub sync: Arc<dyn SyncTrigger>,
    /// Scans domains for `POST /scan` and rescans.
    pub scanner: Arc<dyn DomainScanner>,
    /// The rules scans are scored by.
    pub rules: Arc<Rules>,
    /// The bearer token every route but `/health` accepts; never empty (see [`api_token`]).
    pub api_token: Secret,
    /// Checks the access tokens of people signed in with Entra ID, accepted beside the API
    /// token when set.
    pub access_tokens: Option<Arc<dyn AccessTokenVerifier>>,
}

/// The API cannot start without a bearer token: an empty one would let anyone in.
#[derive(Debug, thiserror::Error)]
#[error(
    "HUNTER_API_TOKEN is not set (in the secret or the environment): the API refuses to run open"
)]
pub struct MissingApiToken;

/// `token`, unless it is empty.
pub fn api_token(token: Secret) -> Result<Secret, MissingApiToken> {
    if token.expose().trim().is_empty() {
        Err(MissingApiToken)
    } else {
        Ok(token)
    }
}

/// The API as Lambda serves it: [`routes`], and the JSON 404 for every other path.
pub fn router(state: ApiState) -> Router {
    routes(state).fallback(unknown_route)
}

/// The routes under `/api/v1`; all but `/health` need `Authorization: Bearer <token>`. Without a
/// fallback, so that hunter-local can serve the UI beside them.
pub fn routes(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/referrals", get(list_referrals))
        .route("/referrals/{id}", get(get_referral))
        .route("/stats", get(leads::stats))
        .route("/leads", get(leads::list_leads))
        .route("/leads/export.csv", get(leads::export_csv))
        .route("/leads/{domain}", get(leads::get_lead))
        .route("/leads/{domain}/rescan", post(leads::rescan_lead))
        .route("/scan", post(leads::scan_domain))
        .route("/sync-runs", get(list_sync_runs))
        .route("/sync", post(start_sync))
        .route("/dynamics/sync/{domain}", post(push_one))
        .route("/dynamics/bulk-sync", post(push_all))
        .route("/dynamics/status/{domain}", get(push_status))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let api = Router::new()
        .route("/health", get(health))
        .merge(protected)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

async fn unknown_route() -> ApiError {
    not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The API's 404: `{"error": {"code": "not_found", "message"}}`.
pub fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::not_found(message)
}

/// An error answer: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidCursor => Self::bad_request("invalid cursor"),
            other => {
                tracing::error!(event = "api_store_failed", error = %other);
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable, try again",
                )
            }
        }
    }
}

/// Whether `headers` carry `Authorization: Bearer` with the API token or, when Entra ID sign-in
/// is on, a valid access token of a signed-in person.
async fn authorize(state: &ApiState, headers: &header::HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    let expected = state.api_token.expose();
    if !expected.is_empty() && constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Ok(());
    }
    let Some(verifier) = state
        .access_tokens
        .as_ref()
        .filter(|_| presented.contains('.'))
    else {
        return Err(unauthorized("send Authorization: Bearer <API token>"));
    };
    match verifier.verify(presented).await {
        Ok(caller) => {
            tracing::debug!(event = "api_caller_signed_in", caller = %caller.id);
            Ok(())
        }
        Err(err @ AuthError::Refused(_)) => {
            tracing::info!(event = "api_token_refused", reason = %err);
            Err(unauthorized(
                "the sign-in is not valid (expired?): sign in again",
            ))
        }
        Err(err) => {
            tracing::warn!(event = "api_token_check_failed", retryable = true, error = %err);
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "sign-ins cannot be checked right now, try again",
            ))
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match authorize(&state, request.headers()).await {
        Ok(()) => next.run(request).await,
        Err(err) => {
            let unauthorized = err.status == StatusCode::UNAUTHORIZED;
            let mut response = err.into_response();
            if unauthorized {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Liveness for anyone; with the API token, also the queues' depths and the newest sync run.
async fn health(State(state): State<ApiState>, headers: header::HeaderMap) -> Json<Value> {
    if authorize(&state, &headers).await.is_err() {
        return Json(json!({"status": "ok"}));
    }
    let depth = |queue: &Arc<dyn Queue>| {
        let queue = queue.clone();
        async move {
            match queue.depth().await {
                Ok(depth) => json!({
                    "visible": depth.visible,
                    "inFlight": depth.in_flight,
                    "deadLetters": depth.dead_letters,
                }),
                Err(err) => {
                    tracing::warn!(event = "api_queue_depth_failed", error = %err);
                    Value::Null
                }
            }
        }
    };
    let (referrals, pushes, runs) = tokio::join!(
        depth(&state.referrals_queue),
        depth(&state.push_queue),
        state.store.list_sync_runs(Some(1), None)
    );
    let last_sync = match runs {
        Ok(page) => json!(page.items.into_iter().next()),
        Err(err) => {
            tracing::warn!(event = "api_last_sync_failed", error = %err);
            Value::Null
        }
    };
    Json(json!({
        "status": "ok",
        "queues": {"referrals": referrals, "dynamicsPush": pushes},
        "lastSync": last_sync,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferralParams {
    status: Option<String>,
    substatus: Option<String>,
    eligible: Option<bool>,
    skip_reason: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_referrals(
    State(state): State<ApiState>,
    Query(params): Query<ReferralParams>,
) -> Result<Json<Value>, ApiError> {
    let skip_reason = params
        .skip_reason
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<SkipReason>()
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let query = ReferralQuery {
        status: params.status.filter(|s| !s.is_empty()),
        substatus: params.substatus.filter(|s| !s.is_empty()),
        eligible: params.eligible,
        skip_reason,
        q: params.q.filter(|s| !s.is_empty()),
        limit: params.limit,
        cursor: params.cursor.filter(|s| !s.is_empty()),
    };
    let page = state.store.list_referrals(&query).await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|r| {
            let mut item = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Some(object) = item.as_object_mut() {
                object.remove("raw");
            }
            item
        })
        .collect();
    Ok(Json(
        json!({"items": items, "nextCursor": page.next_cursor}),
    ))
}

async fn get_referral(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.store.get_referral(&id).await? {
        Some(record) => Ok(Json(record).into_response()),
        None => Err(ApiError::not_found(format!("no referral {id}"))),
    }
}

#[derive(Debug, Deserialize)]
struct PageParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_sync_runs(
    State(state): State<ApiState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    let page = state
        .store
        .list_sync_runs(params.limit, params.cursor.as_deref())
        .await?;
    Ok(Json(
        json!({"items": page.items, "nextCursor": page.next_cursor}),
    ))
}

/// Starts a sync now: a new run, or, while the newest run is still running (a continuation
/// waiting for its next invocation, or a fetch under way), that run, which the invocation resumes
/// (or a new run follows it). 202 with the run id either way.
async fn start_sync(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let newest = state.store.list_sync_runs(Some(1), None).await?.items;
    let (run_id, in_progress) = match newest.into_iter().next() {
        Some(run) if run.status == RunStatus::Running => (run.id, true),
        _ => (uuid::Uuid::new_v4().to_string(), false),
    };
    let requested = (!in_progress).then_some(run_id.as_str());
    match state.sync.request_sync(requested).await {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"runId": run_id, "inProgress": in_progress})),
        )
            .into_response()),
        Err(TriggerError::Busy) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "sync_pending",
            "a sync is already waiting to start",
        )),
        Err(err @ TriggerError::Invalid(_)) => {
            tracing::error!(event = "api_sync_request_failed", run_id, retryable = false, error = %err);
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sync_misconfigured",
                "the sync function cannot be invoked; see the API's logs",
            ))
        }
        Err(err) => {
            tracing::warn!(event = "api_sync_request_failed", run_id, retryable = true, error = %err);
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sync_unavailable",
                "the sync could not be started, try again",
            )
            .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(SYNC_RETRY_AFTER_SECS),
            );
            Ok(response)
        }
    }
}

/// The `Retry-After` of a sync request the trigger could not take.
const SYNC_RETRY_AFTER_SECS: &str = "5";

pub(crate) async fn lead_of(state: &ApiState, domain: &str) -> Result<Lead, ApiError> {
    let domain = normalize_domain(domain)
        .map_err(|e| ApiError::bad_request(format!("domain {domain:?}: {e}")))?;
    state
        .store
        .get_lead(&domain)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no lead for {domain}")))
}

/// Queues pushes of `leads` (`force`: even of a version Dynamics has); returns how many were
/// queued.
pub(crate) async fn queue_pushes(
    state: &ApiState,
    leads: &[Lead],
    force: bool,
) -> Result<usize, ApiError> {
    let messages: Vec<OutgoingMessage> = leads
        .iter()
        .enumerate()
        .map(|(i, lead)| {
            let body = PushMessage {
                domain: lead.domain.to_string(),
                lead_version: lead.content_version,
                force,
            }
            .to_body();
            OutgoingMessage::new(i.to_string(), body)
        })
        .collect();
    let report = send_all(state.push_queue.as_ref(), &messages, &Backoff::default())
        .await
        .map_err(|e| {
            tracing::error!(event = "api_queue_failed", error = %e);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                "the push queue is unavailable",
            )
        })?;
    Ok(report.sent)
}

async fn push_one(
    State(state): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let lead = lead_of(&state, &domain).await?;
    queue_pushes(&state, std::slice::from_ref(&lead), true).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"domain": lead.domain, "queued": true})),
    )
        .into_response())
}

/// Queues a push of every lead not synced (pending or failed).
async fn push_all(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let mut waiting = Vec::new();
    for status in [SyncStatus::Pending, SyncStatus::Failed] {
        let mut query = LeadQuery {
            sync_status: Some(status),
            limit: Some(MAX_PAGE_SIZE),
            ..LeadQuery::default()
        };
        loop {
            let page = state.store.list_leads(&query).await?;
            waiting.extend(page.items);
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
    }
    let queued = queue_pushes(&state, &waiting, true).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": queued}))).into_response())
}

async fn push_status(
    State(state): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let lead = lead_of(&state, &domain).await?;
    let audit = state.store.list_audit(&lead.domain, 20).await?;
    Ok(Json(json!({
        "domain": lead.domain,
        "syncStatus": lead.sync_status,
        "dynamicsId": lead.dynamics_id,
        "lastSyncedAt": lead.last_synced_at,
        "lastError": lead.last_error,
        "syncAttempts": lead.sync_attempts,
        "contentVersion": lead.content_version,
        "syncedVersion": lead.synced_version,
        "audit": audit,
    })))
}
