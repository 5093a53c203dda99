//! The Referrals API error answer.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::sim::faults;
use crate::sim::http::{self, ErrorCode};

/// An error in the contract's shape:
/// `{"error":{"code","message","target":"referral","innerError":{"code","message"}}}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    inner_code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        inner_code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            inner_code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(super) fn bad_request(inner_code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            inner_code,
            message,
        )
    }

    pub(super) fn unauthenticated(inner_code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            inner_code,
            message,
        )
    }

    pub(super) fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "ReferralNotFound",
            format!("Referral '{id}' was not found."),
        )
    }

    /// An injected failure with the status's usual code; 429/503/509 carry `Retry-After`.
    pub(super) fn simulated(status: u16, retry_after_secs: u64) -> Self {
        let (status, message) = faults::simulated(status);
        let code = match status.as_u16() {
            400 => "invalidRequest",
            401 => "unauthenticated",
            403 => "accessDenied",
            404 => "itemNotFound",
            409 => "resourceModified",
            412 => "preconditionFailed",
            429 | 503 | 509 => "serviceNotAvailable",
            _ => "generalException",
        };
        let mut error = Self::new(status, code, "Simulated", message);
        if matches!(status.as_u16(), 429 | 503 | 509) {
            error.retry_after = Some(retry_after_secs);
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.code,
            "message": self.message,
            "target": "referral",
            "innerError": {"code": self.inner_code, "message": self.message},
        }});
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in http::error_headers(self.status, self.retry_after) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
            .extensions_mut()
            .insert(ErrorCode(self.code.to_owned()));
        response
    }
}
