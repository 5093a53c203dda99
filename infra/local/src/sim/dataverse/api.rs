//! One Web API request and its answer, alike whether they come as HTTP or as a `$batch` part, and
//! the contract's error body.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hunter_core::dynamics::batch::Headers;
use serde_json::{Value, json};

use super::{CODE_NOT_FOUND, CODE_REQUESTS_LIMIT};
use crate::sim::faults;
use crate::sim::http::{self, ErrorCode};

/// JSON content type of answers.
pub(super) const JSON_CONTENT_TYPE: &str = "application/json; odata.metadata=minimal";

/// The headers of an HTTP request as a `$batch` part has them (values that are not text are left out).
pub(super) fn headers_of(map: &HeaderMap) -> Headers {
    Headers(
        map.iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
    )
}

/// Whether the request's `Prefer` asks for `preference`.
pub(super) fn prefers(headers: &Headers, preference: &str) -> bool {
    http::prefers(headers.get_all("prefer"), preference)
}

/// `Prefer: odata.maxpagesize=N`, if any.
pub(super) fn max_page_size(headers: &Headers) -> Option<usize> {
    headers.get_all("prefer").find_map(|v| {
        v.split(',').find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("odata.maxpagesize")
                .then(|| value.trim().trim_matches('"').parse::<usize>().ok())
                .flatten()
                .filter(|n| *n > 0)
        })
    })
}

/// One Web API request (from HTTP or from a `$batch` part).
#[derive(Debug, Clone)]
pub(super) struct ApiRequest {
    pub method: String,
    /// Percent-decoded path after `/api/data/v9.2/`.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: Option<String>,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub content_id: Option<String>,
}

/// The body of an answer.
#[derive(Debug, Clone)]
pub(super) enum SimBody {
    Empty,
    Json(Value),
    Text(String),
}

/// An answer before it becomes HTTP (or a `$batch` part).
#[derive(Debug, Clone)]
pub(super) struct SimResponse {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: SimBody,
}

impl SimResponse {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_code(&self) -> Option<String> {
        match &self.body {
            SimBody::Json(body) => body
                .pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    }
}

impl IntoResponse for SimResponse {
    fn into_response(self) -> Response {
        let error_code = self.error_code();
        let mut response = match self.body {
            SimBody::Empty => self.status.into_response(),
            SimBody::Json(body) => (
                self.status,
                [(header::CONTENT_TYPE, JSON_CONTENT_TYPE)],
                body.to_string(),
            )
                .into_response(),
            SimBody::Text(text) => (self.status, text).into_response(),
        };
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
            .headers_mut()
            .insert("odata-version", HeaderValue::from_static("4.0"));
        if let Some(code) = error_code {
            response.extensions_mut().insert(ErrorCode(code));
        }
        response
    }
}

/// An error in the contract's shape: `{"error":{"code":"0x..","message":".."}}`.
#[derive(Debug, Clone)]
pub(super) struct DvError {
    status: StatusCode,
    code: String,
    message: String,
    pub retry_after: Option<u64>,
}

impl DvError {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub(super) fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(super) fn not_found(logical: &str, what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            format!("{logical} With {what} Does Not Exist"),
        )
    }

    /// An injected failure; a 429 has the requests-limit code; 429/503 carry `Retry-After`.
    pub(super) fn simulated(status: u16, retry_after_secs: u64) -> Self {
        let (status, message) = faults::simulated(status);
        let code = match status.as_u16() {
            429 => CODE_REQUESTS_LIMIT,
            _ => "",
        };
        let mut error = Self::new(status, code, message);
        if matches!(status.as_u16(), 429 | 503) {
            error.retry_after = Some(retry_after_secs);
        }
        error
    }

    pub(super) fn into_sim(self) -> SimResponse {
        SimResponse {
            status: self.status,
            headers: http::error_headers(self.status, self.retry_after)
                .into_iter()
                .map(|(name, value)| (name.as_str().to_owned(), value))
                .collect(),
            body: SimBody::Json(json!({"error": {"code": self.code, "message": self.message}})),
        }
    }
}

impl IntoResponse for DvError {
    fn into_response(self) -> Response {
        self.into_sim().into_response()
    }
}
