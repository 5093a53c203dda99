//! Liveness with the queues and the last sync, and the API's own description.

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use hunter_core::ports::Queue;
use hunter_domain::model::SyncRun;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::authorize;
use crate::error::CommonErrors;

/// Approximate message counts of a queue and its dead-letter queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueDepth {
    visible: u64,
    in_flight: u64,
    dead_letters: u64,
}

/// The queues between the functions; null where a depth could not be read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Queues {
    referrals: Option<QueueDepth>,
    dynamics_push: Option<QueueDepth>,
}

/// Liveness; for callers with a valid token also the queues and the newest sync run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Health {
    /// Always `ok`: the API answers.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    queues: Option<Queues>,
    /// The newest sync run (absent before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sync: Option<SyncRun>,
}

async fn depth(queue: &Arc<dyn Queue>) -> Option<QueueDepth> {
    match queue.depth().await {
        Ok(depth) => Some(QueueDepth {
            visible: depth.visible,
            in_flight: depth.in_flight,
            dead_letters: depth.dead_letters,
        }),
        Err(err) => {
            tracing::warn!(event = "api_queue_depth_failed", retryable = err.is_retryable(), error = %err);
            None
        }
    }
}

/// `GET /health`: liveness for anyone; with a valid token, also the queues' depths and the
/// newest sync run.
#[utoipa::path(get, path = "/health", tag = "status", security((), ("bearer" = [])),
    responses((status = 200, body = Health)))]
pub(crate) async fn health(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> axum::Json<Health> {
    let mut health = Health {
        status: "ok",
        queues: None,
        last_sync: None,
    };
    if authorize(&state, &headers).await.is_ok() {
        let (referrals, dynamics_push, runs) = tokio::join!(
            depth(&state.referrals_queue),
            depth(&state.push_queue),
            state.store.list_sync_runs(Some(1), None)
        );
        health.queues = Some(Queues {
            referrals,
            dynamics_push,
        });
        health.last_sync = match runs {
            Ok(page) => page.items.into_iter().next(),
            Err(err) => {
                tracing::warn!(event = "api_last_sync_failed", retryable = err.is_retryable(), error = %err);
                None
            }
        };
    }
    axum::Json(health)
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| crate::openapi().to_json().unwrap_or_default());

/// `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "status",
    responses((status = 200, description = "This document", content_type = "application/json",
        body = serde_json::Value), CommonErrors))]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
