//! Starting a Partner Center sync, and the sync history.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hunter_core::ports::TriggerError;
use hunter_domain::model::{RunStatus, SyncRun};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::ApiQuery;

/// The `Retry-After` of a sync request the trigger could not take.
const SYNC_RETRY_AFTER_SECS: &str = "5";

/// A page of a list without filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Page size (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// One page of sync runs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncRunPage {
    items: Vec<SyncRun>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// `GET /sync-runs`: the sync history, newest first.
#[utoipa::path(get, path = "/sync-runs", tag = "sync", params(PageParams),
    responses((status = 200, body = SyncRunPage), (status = 400, body = ErrorBody), CommonErrors))]
pub(crate) async fn list_sync_runs(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<SyncRunPage>, ApiError> {
    let cursor = params.cursor.filter(|c| !c.trim().is_empty());
    let page = state
        .store
        .list_sync_runs(params.limit, cursor.as_deref())
        .await?;
    Ok(Json(SyncRunPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// A sync that was asked for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncStarted {
    run_id: String,
    /// The newest run was still running: the request continues it.
    in_progress: bool,
}

/// `POST /sync`: starts a sync now: a new run, or, while the newest run is still running (a
/// continuation waiting for its next invocation, or a fetch under way), that run, which the
/// invocation resumes. 202 with the run id either way.
#[utoipa::path(post, path = "/sync", tag = "sync",
    responses((status = 202, body = SyncStarted),
        (status = 409, description = "A sync is already waiting to start (`sync_pending`)", body = ErrorBody),
        (status = 500, description = "The sync function cannot be invoked (`sync_misconfigured`)", body = ErrorBody),
        CommonErrors))]
pub(crate) async fn start_sync(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let newest = state.store.list_sync_runs(Some(1), None).await?.items;
    let (run_id, in_progress) = match newest.into_iter().next() {
        Some(run) if run.status == RunStatus::Running => (run.id, true),
        _ => (uuid::Uuid::new_v4().to_string(), false),
    };
    let requested = (!in_progress).then_some(run_id.as_str());
    match state.sync.request_sync(requested).await {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(SyncStarted {
                run_id,
                in_progress,
            }),
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
            let mut response = ApiError::unavailable(
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
