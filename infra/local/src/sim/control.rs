//! The `_sim` control routes every simulator serves: `GET|DELETE /_sim/requests`,
//! `GET|PUT /_sim/faults`, `POST /_sim/expire-tokens`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What the control routes steer in a simulator.
pub(crate) trait SimControl {
    /// The faults `GET|PUT /_sim/faults` read and replace.
    type Faults: Serialize + DeserializeOwned;
    /// One entry of `GET /_sim/requests`.
    type Recorded: Serialize;

    fn recorded_requests(&self) -> Vec<Self::Recorded>;
    fn forget_requests(&self);
    fn active_faults(&self) -> Self::Faults;
    fn replace_faults(&self, faults: Self::Faults);
    fn expire_tokens(&self);
    /// The simulator's 400 answer to a faults body it cannot read.
    fn faults_refused(message: String) -> Response;
}

/// The shared control routes; a simulator merges them into its router.
pub(crate) fn control_routes<S: SimControl + Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/_sim/requests",
            get(requests::<S>).delete(clear_requests::<S>),
        )
        .route("/_sim/faults", get(faults::<S>).put(put_faults::<S>))
        .route("/_sim/expire-tokens", post(expire_tokens::<S>))
}

async fn requests<S: SimControl>(State(sim): State<S>) -> Json<Vec<S::Recorded>> {
    Json(sim.recorded_requests())
}

async fn clear_requests<S: SimControl>(State(sim): State<S>) -> StatusCode {
    sim.forget_requests();
    StatusCode::NO_CONTENT
}

async fn faults<S: SimControl>(State(sim): State<S>) -> Json<S::Faults> {
    Json(sim.active_faults())
}

async fn put_faults<S: SimControl>(State(sim): State<S>, body: Bytes) -> Response {
    match serde_json::from_slice::<S::Faults>(&body) {
        Ok(faults) => {
            sim.replace_faults(faults);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => S::faults_refused(format!("Faults JSON cannot be read: {e}")),
    }
}

/// `POST /_sim/expire-tokens` (a simulator may route other methods to it too).
pub(crate) async fn expire_tokens<S: SimControl>(State(sim): State<S>) -> StatusCode {
    sim.expire_tokens();
    StatusCode::NO_CONTENT
}
