//! The Entra ID side both simulators share: OAuth error answers, the token endpoint's form and
//! answer, and the issued access tokens that bearer headers are checked against.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::Form;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::faults;
use super::http::{AuthOk, ErrorCode};

/// An OAuth 2.0 error answer of a token endpoint (`{"error","error_description",...}`).
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
    retry_after: Option<u64>,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    pub(crate) fn invalid_request(code: u32, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            code,
            description,
        )
    }

    /// An injected failure with the status's usual error; 429/503 carry `Retry-After`.
    pub(crate) fn simulated(status: u16, retry_after_secs: u64) -> Self {
        let (status, message) = faults::simulated(status);
        let error = match status.as_u16() {
            400 => "invalid_request",
            401 => "invalid_client",
            429 | 503 => "temporarily_unavailable",
            _ => "server_error",
        };
        let mut answer = Self::new(status, error, 90_000, message);
        if matches!(status.as_u16(), 429 | 503) {
            answer.retry_after = Some(retry_after_secs);
        }
        answer
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.code],
            "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": uuid::Uuid::new_v4().to_string(),
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        });
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(AuthOk(false));
        response
            .extensions_mut()
            .insert(ErrorCode(self.error.to_owned()));
        response
    }
}

/// The fields of a token endpoint's form body, or the error for a body that is not a form.
pub(crate) fn form_fields(
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<HashMap<String, String>, OAuthError> {
    form.map(|Form(fields)| fields).map_err(|e| {
        OAuthError::invalid_request(
            900_144,
            format!(
                "AADSTS900144: The request body must be application/x-www-form-urlencoded: {}",
                e.body_text()
            ),
        )
    })
}

/// A token endpoint's answer: the token JSON (`Cache-Control: no-store`), or the OAuth error.
pub(crate) fn token_answer(grant: Result<Value, OAuthError>) -> Response {
    match grant {
        Ok(body) => {
            let mut response = ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response();
            response.extensions_mut().insert(AuthOk(true));
            response
        }
        Err(error) => error.into_response(),
    }
}

/// Why a request's bearer token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    NotBearer,
    /// A token never issued.
    Unknown,
    Expired,
}

/// Issued access tokens and when each expires.
#[derive(Debug)]
pub(crate) struct AccessTokens {
    prefix: &'static str,
    ttl: Duration,
    expiries: HashMap<String, Instant>,
}

impl AccessTokens {
    /// Tokens named `{prefix}{32 hex digits}`, each valid for `ttl`.
    pub(crate) fn new(prefix: &'static str, ttl: Duration) -> Self {
        Self {
            prefix,
            ttl,
            expiries: HashMap::new(),
        }
    }

    /// How long an issued token is valid.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new token, valid from now.
    pub(crate) fn issue(&mut self, rng: &mut fastrand::Rng) -> String {
        let token = format!("{}{:032x}", self.prefix, rng.u128(..));
        self.expiries
            .insert(token.clone(), Instant::now() + self.ttl);
        token
    }

    /// Makes every issued token expired.
    pub(crate) fn expire_all(&mut self) {
        let now = Instant::now();
        for expiry in self.expiries.values_mut() {
            *expiry = (*expiry).min(now);
        }
    }

    /// Checks the request's `Authorization: Bearer <token>`.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), TokenRefusal> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(TokenRefusal::Missing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(TokenRefusal::NotBearer)?;
        match self.expiries.get(token) {
            None => Err(TokenRefusal::Unknown),
            Some(expiry) if *expiry <= Instant::now() => Err(TokenRefusal::Expired),
            Some(_) => Ok(()),
        }
    }
}
