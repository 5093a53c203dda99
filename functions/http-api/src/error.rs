//! The one shape of every error the API answers: `{"error": {"code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hunter_core::ports::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    code: &'static str,
    message: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong: a stable `code` for programs, a `message` for people.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// e.g. `bad_request`, `unauthorized`, `not_found`, `store_unavailable`.
    code: String,
    message: String,
}

/// Errors any route behind the bearer token may answer (documentation only).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "describes answers ApiError gives")]
pub(crate) enum CommonErrors {
    /// No API token or sign-in, or not a valid one: `unauthorized`.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The store, a queue or the sign-in keys cannot be reached; try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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

    /// 503: something the answer needs cannot be reached or written; worth trying again.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidCursor => Self::bad_request("invalid cursor"),
            other => {
                tracing::error!(event = "api_store_failed", retryable = other.is_retryable(), error = %other);
                Self::unavailable("store_unavailable", "the store is unavailable, try again")
            }
        }
    }
}

/// The API's 404: `{"error": {"code": "not_found", "message"}}`.
pub fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::not_found(message)
}
