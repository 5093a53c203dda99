//! What every simulator can be steered by: its recorded requests, its faults and its access
//! tokens ([`SimControl`], for tests and tools), and the `_sim` control routes that serve them
//! (`GET|DELETE /_sim/requests`, `GET|PUT /_sim/faults`, `POST /_sim/expire-tokens`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::http::{RecordedRequest, RequestLog};
use super::oauth::AccessTokens;

/// The part of a simulator's state its controls steer.
#[derive(Debug)]
pub struct Controls<F> {
    pub(crate) requests: RequestLog,
    pub(crate) faults: F,
    pub(crate) access_tokens: AccessTokens,
}

impl<F> Controls<F> {
    pub(crate) fn new(faults: F, access_tokens: AccessTokens) -> Self {
        Self {
            requests: RequestLog::default(),
            faults,
            access_tokens,
        }
    }
}

/// Steering a simulator: what it answered, which faults it injects, its access tokens.
pub trait SimControl: Clone + Send + Sync + 'static {
    /// The faults `GET|PUT /_sim/faults` read and replace.
    type Faults: Serialize + DeserializeOwned + Clone + std::fmt::Debug;
    /// The log event of replaced faults.
    const FAULTS_SET_EVENT: &'static str;
    /// The log event of expired tokens.
    const TOKENS_EXPIRED_EVENT: &'static str;

    /// Runs `f` on the controls, under the simulator's lock.
    fn with_controls<R>(&self, f: impl FnOnce(&mut Controls<Self::Faults>) -> R) -> R;

    /// The simulator's 400 answer to a faults body it cannot read.
    fn faults_refused(message: String) -> Response;

    /// What else replacing the faults resets (nothing by default).
    fn on_faults_replaced(&self) {}

    /// Requests answered so far (oldest first; control routes excluded).
    fn requests(&self) -> Vec<RecordedRequest> {
        self.with_controls(|c| c.requests.all())
    }

    /// Forgets the recorded requests.
    fn clear_requests(&self) {
        self.with_controls(|c| c.requests.clear());
    }

    /// The active faults (scripted entries already served are gone).
    fn faults(&self) -> Self::Faults {
        self.with_controls(|c| c.faults.clone())
    }

    /// Replaces the faults.
    fn set_faults(&self, faults: Self::Faults) {
        tracing::info!(event = Self::FAULTS_SET_EVENT, faults = ?faults);
        self.with_controls(|c| c.faults = faults);
        self.on_faults_replaced();
    }

    /// Makes every issued access token expired (the next API call with one answers 401).
    fn expire_all_tokens(&self) {
        self.with_controls(|c| c.access_tokens.expire_all());
        tracing::info!(event = Self::TOKENS_EXPIRED_EVENT);
    }
}

/// The shared control routes; a simulator merges them into its router.
pub(crate) fn control_routes<S: SimControl>() -> Router<S> {
    Router::new()
        .route(
            "/_sim/requests",
            get(requests::<S>).delete(clear_requests::<S>),
        )
        .route("/_sim/faults", get(faults::<S>).put(put_faults::<S>))
        .route("/_sim/expire-tokens", post(expire_tokens::<S>))
}

async fn requests<S: SimControl>(State(sim): State<S>) -> Json<Vec<RecordedRequest>> {
    Json(sim.requests())
}

async fn clear_requests<S: SimControl>(State(sim): State<S>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

async fn faults<S: SimControl>(State(sim): State<S>) -> Json<S::Faults> {
    Json(sim.faults())
}

async fn put_faults<S: SimControl>(State(sim): State<S>, body: Bytes) -> Response {
    match serde_json::from_slice::<S::Faults>(&body) {
        Ok(faults) => {
            sim.set_faults(faults);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => S::faults_refused(format!("Faults JSON cannot be read: {e}")),
    }
}

/// `POST /_sim/expire-tokens` (a simulator may route other methods to it too).
pub(crate) async fn expire_tokens<S: SimControl>(State(sim): State<S>) -> StatusCode {
    sim.expire_all_tokens();
    StatusCode::NO_CONTENT
}
