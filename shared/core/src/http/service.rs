//! One API of a service: its base headers, its tokens, and the one retry loop every request of
//! its client goes through.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::error::{ServiceError, retryable_answer};
use super::token::TokenCache;
use crate::retry::{Backoff, parse_retry_after};
use crate::secret::Secret;

/// How a service is named in error messages and in the log events of its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceNames {
    /// In messages: `Partner Center`, `Dataverse`.
    pub display: &'static str,
    /// Event of a request that failed (logged with its `client_request_id`).
    pub request_failed: &'static str,
    /// Event of an answered request (debug level).
    pub request: &'static str,
    /// Event of a token request that failed and is retried.
    pub token_failed: &'static str,
    /// Event of a token request the endpoint refused.
    pub token_refused: &'static str,
    /// Event of a token issued.
    pub token_issued: &'static str,
}

/// A request before it is sent (it may be sent several times).
#[derive(Debug, Clone)]
pub struct Call {
    /// What the request does, for the logs (`upsert`, `list_referrals`, ...).
    pub op: &'static str,
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    /// Content type and bytes.
    pub body: Option<(String, Vec<u8>)>,
    /// How many requests the service counts this one as (a `$batch` of n counts n); 1 by default.
    pub weight: u32,
}

impl Call {
    pub fn new(op: &'static str, method: Method, url: Url) -> Self {
        Self {
            op,
            method,
            url,
            headers: Vec::new(),
            body: None,
            weight: 1,
        }
    }

    /// Counts as `weight` requests toward the service's limits (at least 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, content_type: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.body = Some((content_type.into(), bytes));
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The service's `request-id`.
    pub request_id: Option<String>,
}

/// Less time than this before the deadline: the request is not sent at all.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(200);

/// Paces the requests of one user of a service below its limits (Dataverse's service
/// protection): asked before every request is sent, told of every answer.
#[async_trait::async_trait]
pub trait Pacing: Send + Sync + std::fmt::Debug {
    /// Waits until a request counting `weight` may be sent; `Err(wait)` instead when waiting
    /// would pass `deadline`. The request is in flight until the returned value is dropped.
    async fn admit(
        &self,
        weight: u32,
        deadline: Option<Instant>,
    ) -> Result<Box<dyn PacedRequest>, Duration>;
}

/// A request a [`Pacing`] let through: told of its answer; dropping it ends the request.
pub trait PacedRequest: Send {
    /// The answer's status and headers (not called when no answer came).
    fn answered(&mut self, status: StatusCode, headers: &HeaderMap);
}

/// A service's API as its client sees it: bearer tokens, base headers, retries, pacing.
#[derive(Debug)]
pub struct Service {
    names: ServiceNames,
    http: reqwest::Client,
    tokens: TokenCache,
    backoff: Backoff,
    /// Headers every request carries besides the token and its `client-request-id`.
    base_headers: &'static [(&'static str, &'static str)],
    /// After a 429, no request is sent before this instant, so concurrent requests wait out
    /// `Retry-After` together instead of adding to the storm.
    paused_until: std::sync::Mutex<Option<Instant>>,
    /// Latest `x-ms-dop-hint` (0: none seen yet).
    dop_hint: AtomicU32,
    /// Paces every request sent (none: only the pause after a 429).
    pacing: Option<std::sync::Arc<dyn Pacing>>,
}

impl Service {
    pub fn new(
        names: ServiceNames,
        http: reqwest::Client,
        tokens: TokenCache,
        backoff: Backoff,
        base_headers: &'static [(&'static str, &'static str)],
    ) -> Self {
        Self {
            names,
            http,
            tokens,
            backoff,
            base_headers,
            paused_until: std::sync::Mutex::new(None),
            dop_hint: AtomicU32::new(0),
            pacing: None,
        }
    }

    /// Every request (retries included) waits for `pacing` first and tells it of its answer.
    pub fn with_pacing(mut self, pacing: std::sync::Arc<dyn Pacing>) -> Self {
        self.pacing = Some(pacing);
        self
    }

    /// The latest `x-ms-dop-hint` (recommended degree of parallelism) the service sent.
    pub fn dop_hint(&self) -> Option<u32> {
        Some(self.dop_hint.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    /// Sends `call` until it is answered with success, or fails for good. Retried up to the
    /// backoff's limit, waiting `Retry-After` when the service names it: 408, 429, 500 (but a
    /// Dataverse duplicate-detection hit), 502, 503, 504, 509, network failures, and token
    /// requests that failed for a passing reason. After a 429 every request of this service
    /// waits out the same delay. A refused token (401) is renewed once. No wait passes
    /// `deadline` (by default the invocation's, [`crate::deadline`]): [`ServiceError::Deadline`]
    /// instead; no request outlives the invocation's deadline.
    pub async fn send(
        &self,
        call: &Call,
        deadline: Option<Instant>,
    ) -> Result<Answer, ServiceError> {
        let names = &self.names;
        // The invocation's own deadline bounds every request; `deadline` (or else it) every wait.
        let hard_deadline = crate::deadline::current();
        let deadline = deadline.or(hard_deadline);
        let mut renewed = false;
        let mut retry = 0u32;
        let mut token: Option<Secret> = None;
        loop {
            let current = match token.take() {
                Some(token) => token,
                None => match self.tokens.access_token().await {
                    Ok(token) => token,
                    Err(err) if err.is_retryable() && retry < self.backoff.max_retries => {
                        tracing::warn!(event = names.token_failed, error = %err, retry);
                        let delay = self.backoff.delay_with_hint(retry, err.retry_after());
                        self.wait(delay, deadline).await?;
                        retry += 1;
                        continue;
                    }
                    Err(err) => return Err(err),
                },
            };
            self.wait_while_paused(deadline).await?;
            let mut paced = match &self.pacing {
                Some(pacing) => {
                    Some(pacing.admit(call.weight, deadline).await.map_err(|delay| {
                        ServiceError::Deadline {
                            service: names.display,
                            delay,
                        }
                    })?)
                }
                None => None,
            };
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let sent = self
                .send_once(call, &current, &client_request_id, hard_deadline)
                .await?;
            if let (Some(paced), Ok((status, headers, _))) = (paced.as_mut(), &sent) {
                paced.answered(*status, headers);
            }
            drop(paced);
            let (status, headers, body) = match sent {
                Ok(answer) => answer,
                Err(err) if retry < self.backoff.max_retries => {
                    tracing::warn!(event = names.request_failed, op = call.op, path = call.url.path(), error = %err, client_request_id, retry);
                    self.wait(self.backoff.delay(retry), deadline).await?;
                    retry += 1;
                    token = Some(current);
                    continue;
                }
                Err(err) => {
                    return Err(ServiceError::Transport {
                        service: names.display,
                        message: err.to_string(),
                    });
                }
            };
            self.note_dop_hint(&headers);
            let request_id = request_id(&headers);
            if status.is_success() {
                tracing::debug!(
                    event = names.request,
                    op = call.op,
                    status = status.as_u16(),
                    request_id = request_id.as_deref(),
                    retry
                );
                return Ok(Answer {
                    status,
                    headers,
                    body,
                    request_id,
                });
            }
            let retry_after = retry_after(&headers);
            let (code, message) = error_parts(&body);
            tracing::warn!(
                event = names.request_failed,
                op = call.op,
                path = call.url.path(),
                status = status.as_u16(),
                code = %code,
                request_id = request_id.as_deref(),
                client_request_id,
                retry_after_ms = retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                retry,
            );
            let delay = self.backoff.delay_with_hint(retry, retry_after);
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.pause_all(delay);
            }
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                token = Some(self.tokens.renew_after_rejection(&current).await?);
                continue;
            }
            if retryable_answer(status.as_u16(), &code) && retry < self.backoff.max_retries {
                self.wait(delay, deadline).await?;
                retry += 1;
                token = Some(current);
                continue;
            }
            return Err(ServiceError::from_answer(
                names.display,
                status.as_u16(),
                code,
                message,
                request_id,
                retry_after,
            ));
        }
    }

    /// One request; its timeout ends at `deadline` at the latest (none left: not sent).
    async fn send_once(
        &self,
        call: &Call,
        token: &Secret,
        client_request_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Result<(StatusCode, HeaderMap, String), reqwest::Error>, ServiceError> {
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(token.expose())
            .header("client-request-id", client_request_id);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < MIN_REQUEST_TIME {
                return Err(ServiceError::Deadline {
                    service: self.names.display,
                    delay: Duration::ZERO,
                });
            }
            request = request.timeout(left);
        }
        for (name, value) in self.base_headers {
            request = request.header(*name, *value);
        }
        for (name, value) in &call.headers {
            request = request.header(*name, value.as_str());
        }
        if let Some((content_type, bytes)) = &call.body {
            request = request
                .header("Content-Type", content_type.as_str())
                .body(bytes.clone());
        }
        Ok(async {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok((status, headers, body_text(&body)))
        }
        .await)
    }

    /// Sleeps `delay`, unless that would pass `deadline`.
    async fn wait(&self, delay: Duration, deadline: Option<Instant>) -> Result<(), ServiceError> {
        if deadline.is_some_and(|d| Instant::now() + delay > d) {
            return Err(ServiceError::Deadline {
                service: self.names.display,
                delay,
            });
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Holds every request of this service until `delay` from now (a later pause wins).
    fn pause_all(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    /// Waits while the service is paused by a 429.
    async fn wait_while_paused(&self, deadline: Option<Instant>) -> Result<(), ServiceError> {
        let until = *self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match until {
            Some(until) => {
                self.wait(until.saturating_duration_since(Instant::now()), deadline)
                    .await
            }
            None => Ok(()),
        }
    }

    fn note_dop_hint(&self, headers: &HeaderMap) {
        if let Some(hint) = headers
            .get("x-ms-dop-hint")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            self.dop_hint.store(hint, Ordering::Relaxed);
        }
    }
}

/// The `request-id` header of an answer (else `x-ms-service-request-id`).
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    ["request-id", "x-ms-service-request-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

/// The delay a `Retry-After` header asks for.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// `error.code` and `error.message` of an error body (empty when absent).
pub(crate) fn error_parts(body: &str) -> (String, String) {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&json["error"]["code"]),
        text(&json["error"]["message"]),
    )
}

/// A response body as text: bytes that are not UTF-8 become U+FFFD, as with
/// `Response::text`, but valid UTF-8 (every answer, in practice) is checked at full speed
/// instead of going through the lossy decoder (~2 % of an in-memory sync).
fn body_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::body_text;

    #[test]
    fn body_text_keeps_utf8_and_replaces_what_is_not() {
        assert_eq!(
            body_text("{\"name\":\"Zoë ✓\"}".as_bytes()),
            "{\"name\":\"Zoë ✓\"}"
        );
        assert_eq!(
            body_text(b"{\"a\":\"\xff\xfe\"}"),
            "{\"a\":\"\u{fffd}\u{fffd}\"}"
        );
        assert_eq!(body_text(b""), "");
    }
}
