//! HTTP pieces both simulators share: the envelope around every request (its `request-id`, the
//! outcome markers handlers leave on answers, the log line, the recorded requests), the base URL,
//! the headers of error answers, `Prefer` and `If-Match`.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

/// Oldest recorded requests are dropped beyond this many.
const MAX_RECORDED_REQUESTS: usize = 100_000;

/// Auth outcome of an answer, read by the envelope middleware.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthOk(pub bool);

/// Error code of an answer, for the request log line.
#[derive(Debug, Clone)]
pub(crate) struct ErrorCode(pub String);

/// A request going through a simulator's envelope middleware.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub method: String,
    /// Path and query as received.
    pub path: String,
    pub request_id: String,
    started: Instant,
}

/// What the answer to an [`Exchange`] says, read from its status and markers.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub status: u16,
    pub auth_ok: bool,
    pub error_code: Option<String>,
}

impl Exchange {
    /// A new request id for `request`, and the clock started.
    pub(crate) fn begin(request: &Request) -> Self {
        Self {
            method: request.method().to_string(),
            path: request.uri().path_and_query().map_or_else(
                || request.uri().path().to_owned(),
                |p| p.as_str().to_owned(),
            ),
            request_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
        }
    }

    /// Puts the request id in each of `id_headers` (lowercase names) of the answer and reads its
    /// outcome.
    pub(crate) fn outcome(&self, response: &mut Response, id_headers: &[&'static str]) -> Outcome {
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            for name in id_headers {
                response.headers_mut().insert(*name, value.clone());
            }
        }
        Outcome {
            status: response.status().as_u16(),
            auth_ok: response.extensions().get::<AuthOk>().is_some_and(|a| a.0),
            error_code: response
                .extensions()
                .get::<ErrorCode>()
                .map(|c| c.0.clone()),
        }
    }

    /// The request log line.
    pub(crate) fn log(
        &self,
        event: &'static str,
        outcome: &Outcome,
        client_request_id: Option<&str>,
    ) {
        tracing::info!(
            event,
            method = %self.method,
            path = %self.path,
            status = outcome.status,
            auth_ok = outcome.auth_ok,
            error_code = outcome.error_code.as_deref(),
            request_id = %self.request_id,
            client_request_id,
            elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
    }

    /// Control routes (`/_sim/...`) are not recorded.
    pub(crate) fn is_recorded(&self) -> bool {
        !self.path.starts_with("/_sim/")
    }
}

/// One request a simulator answered (control routes `/_sim/...` are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `PATCH`.
    pub method: String,
    /// Path and query as received, e.g. `/v1.0/referrals?$skiptoken=...`.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// API routes: the bearer token was valid. Token endpoint: the grant was accepted.
    pub auth_ok: bool,
    /// The `request-id` header answered.
    pub request_id: String,
    /// Error code of the answer (`error.code`, or the OAuth `error`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The `client-request-id` header sent, if any (echoed back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
}

/// The requests a simulator answered, oldest first, bounded.
#[derive(Debug, Default)]
pub(crate) struct RequestLog(Vec<RecordedRequest>);

impl RequestLog {
    /// Records `exchange` with its `outcome` (control routes are not recorded).
    pub(crate) fn record(
        &mut self,
        exchange: Exchange,
        outcome: Outcome,
        client_request_id: Option<String>,
    ) {
        if !exchange.is_recorded() {
            return;
        }
        self.push(RecordedRequest {
            method: exchange.method,
            path: exchange.path,
            status: outcome.status,
            auth_ok: outcome.auth_ok,
            request_id: exchange.request_id,
            error_code: outcome.error_code,
            client_request_id,
        });
    }

    fn push(&mut self, request: RecordedRequest) {
        if self.0.len() >= MAX_RECORDED_REQUESTS {
            self.0.drain(..MAX_RECORDED_REQUESTS / 10);
        }
        self.0.push(request);
    }

    pub(crate) fn all(&self) -> Vec<RecordedRequest> {
        self.0.clone()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The configured base URL, else `http://{Host header}`.
pub(crate) fn base_url(configured: Option<String>, headers: &HeaderMap) -> String {
    configured.unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    })
}

/// The headers of an error answer: `Retry-After` when given, `WWW-Authenticate` on a 401.
pub(crate) fn error_headers(
    status: StatusCode,
    retry_after: Option<u64>,
) -> Vec<(HeaderName, String)> {
    let mut headers = Vec::new();
    if let Some(seconds) = retry_after {
        headers.push((header::RETRY_AFTER, seconds.to_string()));
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.push((
            header::WWW_AUTHENTICATE,
            "Bearer error=\"invalid_token\"".to_owned(),
        ));
    }
    headers
}

/// Whether one of the `Prefer` header values asks for `preference`.
pub(crate) fn prefers<'a>(values: impl IntoIterator<Item = &'a str>, preference: &str) -> bool {
    values.into_iter().any(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(preference))
    })
}

/// Whether an `If-Match` value names the `current` eTag: `*` names anything (even no eTag); weak
/// (`W/`) and quoted forms name the bare one.
pub(crate) fn if_match_names(if_match: &str, current: Option<&str>) -> bool {
    let current = current.map(bare_etag);
    if_match.split(',').any(|candidate| {
        candidate.trim() == "*" || current.is_some_and(|c| bare_etag(candidate) == c)
    })
}

fn bare_etag(etag: &str) -> &str {
    let etag = etag.trim();
    etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"')
}
