//! Liveness with the queues and the last sync, and the API's own description.

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use hunter_core::ports::{Queue, is_sign_in_required};
use hunter_domain::model::{RunStatus, SyncRun};
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

/// Whether Partner Center still accepts Hunter's sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SignIn {
    /// The newest finished sync run was not refused for its sign-in.
    Ok,
    /// Partner Center refused the refresh token (revoked or expired) in the newest finished
    /// sync run: someone must sign in again (`hunter-local sign-in`).
    Required,
    /// No sync run has finished yet.
    Unknown,
}

/// Partner Center as the sync runs see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PartnerCenterHealth {
    sign_in: SignIn,
}

/// Liveness; for callers with a valid token also the queues, the newest sync run and whether
/// Partner Center needs a new sign-in.
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
    /// From the newest finished sync run's error (with a valid token only).
    #[serde(skip_serializing_if = "Option::is_none")]
    partner_center: Option<PartnerCenterHealth>,
}

/// Sync runs looked at, newest first, to find the newest finished one.
const RUNS_LOOKED_AT: usize = 5;

/// Whether the newest finished run of `runs` (newest first) was refused for its sign-in.
fn sign_in_of(runs: &[SyncRun]) -> SignIn {
    match runs.iter().find(|run| run.status != RunStatus::Running) {
        None => SignIn::Unknown,
        Some(run)
            if run.status == RunStatus::Failed
                && run.error.as_deref().is_some_and(is_sign_in_required) =>
        {
            SignIn::Required
        }
        Some(_) => SignIn::Ok,
    }
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
        partner_center: None,
    };
    if authorize(&state, &headers).await.is_ok() {
        let (referrals, dynamics_push, runs) = tokio::join!(
            depth(&state.referrals_queue),
            depth(&state.push_queue),
            state.store.list_sync_runs(Some(RUNS_LOOKED_AT), None)
        );
        health.queues = Some(Queues {
            referrals,
            dynamics_push,
        });
        match runs {
            Ok(page) => {
                health.partner_center = Some(PartnerCenterHealth {
                    sign_in: sign_in_of(&page.items),
                });
                health.last_sync = page.items.into_iter().next();
            }
            Err(err) => {
                tracing::warn!(event = "api_last_sync_failed", retryable = err.is_retryable(), error = %err);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus, error: Option<&str>) -> SyncRun {
        SyncRun {
            status,
            error: error.map(str::to_owned),
            ..SyncRun::start("r", chrono::Utc::now())
        }
    }

    #[test]
    fn when_the_newest_finished_run_was_refused_its_sign_in_should_require_one() {
        let refused = run(
            RunStatus::Failed,
            Some("sign-in required: Partner Center refused the refresh token"),
        );
        assert_eq!(sign_in_of(&[]), SignIn::Unknown);
        assert_eq!(
            sign_in_of(&[run(RunStatus::Running, None)]),
            SignIn::Unknown
        );
        assert_eq!(sign_in_of(std::slice::from_ref(&refused)), SignIn::Required);
        // A run started since does not hide it; a finished one after it decides.
        assert_eq!(
            sign_in_of(&[run(RunStatus::Running, None), refused.clone()]),
            SignIn::Required
        );
        assert_eq!(
            sign_in_of(&[run(RunStatus::Succeeded, None), refused]),
            SignIn::Ok
        );
        assert_eq!(
            sign_in_of(&[run(
                RunStatus::Failed,
                Some("Partner Center answered HTTP 503")
            )]),
            SignIn::Ok
        );
        let json = serde_json::to_value(PartnerCenterHealth {
            sign_in: SignIn::Required,
        })
        .unwrap_or_default();
        assert_eq!(json, serde_json::json!({"signIn": "required"}));
    }
}
