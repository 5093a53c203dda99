//! Referral pages over HTTP: one retry loop for throttling, server errors, timeouts and expired tokens.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::auth::PartnerCenterAuth;
use super::error::PartnerCenterError;
use super::query::query_pairs;
use crate::ports::{ReferralFilter, ReferralPage, ReferralSource, ReferralWriteBack, SourceError};
use crate::retry::{Backoff, parse_retry_after};

const REFERRALS_PATH: &str = "v1.0/engagements/referrals";

/// The Referrals API client.
#[derive(Debug)]
pub struct PartnerCenterClient {
    http: reqwest::Client,
    base: Url,
    auth: PartnerCenterAuth,
    backoff: Backoff,
}

/// The `request-id` header of an answer.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504 | 509)
}

impl PartnerCenterClient {
    /// `base_url` is `https://api.partner.microsoft.com` (or a simulator).
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        auth: PartnerCenterAuth,
        backoff: Backoff,
    ) -> Result<Self, PartnerCenterError> {
        let mut base = Url::parse(base_url).map_err(|e| {
            PartnerCenterError::InvalidResponse(format!("base URL {base_url}: {e}"), None)
        })?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            http,
            base,
            auth,
            backoff,
        })
    }
}

#[async_trait::async_trait]
impl ReferralSource for PartnerCenterClient {
    async fn first_page(
        &self,
        filter: &ReferralFilter,
        deadline: Option<Instant>,
    ) -> Result<ReferralPage, SourceError> {
        Ok(self.page(self.first_page_url(filter)?, deadline).await?)
    }

    async fn next_page(
        &self,
        next_link: &str,
        deadline: Option<Instant>,
    ) -> Result<ReferralPage, SourceError> {
        Ok(self.page(self.next_page_url(next_link)?, deadline).await?)
    }
}

#[async_trait::async_trait]
impl ReferralWriteBack for PartnerCenterClient {
    async fn set_external_reference(
        &self,
        referral_id: &str,
        etag: Option<&str>,
        reference: &str,
    ) -> Result<(), SourceError> {
        let patch = serde_json::json!([{"op": "replace", "path": "/externalReferenceId", "value": reference}]);
        self.send(
            Method::PATCH,
            self.referral_url(referral_id)?,
            Some((&patch, etag)),
            None,
        )
        .await?;
        Ok(())
    }
}

impl PartnerCenterClient {
    /// The first page of the referrals `filter` selects.
    fn first_page_url(&self, filter: &ReferralFilter) -> Result<Url, PartnerCenterError> {
        let mut url = self
            .base
            .join(REFERRALS_PATH)
            .map_err(|e| PartnerCenterError::InvalidResponse(e.to_string(), None))?;
        url.query_pairs_mut().extend_pairs(query_pairs(filter));
        Ok(url)
    }

    /// The page at a `@odata.nextLink`, followed verbatim (relative links resolve against the base).
    /// The bearer token goes to the base host only: a link to another host or port is refused, and
    /// the documented `http://` link is upgraded to `https://` when the base is HTTPS.
    fn next_page_url(&self, next_link: &str) -> Result<Url, PartnerCenterError> {
        let refuse = |why: &str| {
            PartnerCenterError::InvalidResponse(format!("nextLink {next_link}: {why}"), None)
        };
        let mut url = Url::parse(next_link)
            .or_else(|_| self.base.join(next_link))
            .map_err(|e| refuse(&e.to_string()))?;
        if url.host_str() != self.base.host_str() {
            return Err(refuse("another host than the API base"));
        }
        if self.base.scheme() == "https" && url.scheme() == "http" {
            url.set_scheme("https")
                .map_err(|()| refuse("cannot use https"))?;
            url.set_port(self.base.port())
                .map_err(|()| refuse("cannot set the port"))?;
        } else if url.port_or_known_default() != self.base.port_or_known_default() {
            return Err(refuse("another port than the API base"));
        }
        Ok(url)
    }

    /// `…/referrals/{id}`.
    fn referral_url(&self, referral_id: &str) -> Result<Url, PartnerCenterError> {
        let mut url = self
            .base
            .join(REFERRALS_PATH)
            .map_err(|e| PartnerCenterError::InvalidResponse(e.to_string(), None))?;
        url.path_segments_mut()
            .map_err(|()| {
                PartnerCenterError::InvalidResponse("base URL cannot have a path".to_owned(), None)
            })?
            .push(referral_id);
        Ok(url)
    }

    async fn page(
        &self,
        url: Url,
        deadline: Option<Instant>,
    ) -> Result<ReferralPage, PartnerCenterError> {
        let (body, request_id) = self.send(Method::GET, url, None, deadline).await?;
        let referrals = match body.get("value") {
            Some(Value::Array(items)) => items.clone(),
            _ => {
                return Err(PartnerCenterError::InvalidResponse(
                    "page without a `value` array".to_owned(),
                    request_id,
                ));
            }
        };
        let next_link = body
            .get("@odata.nextLink")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        Ok(ReferralPage {
            referrals,
            next_link,
            request_id,
        })
    }

    /// Waits `delay` unless that passes the deadline.
    async fn pause(
        &self,
        delay: Duration,
        deadline: Option<Instant>,
    ) -> Result<(), PartnerCenterError> {
        if deadline.is_some_and(|d| Instant::now() + delay > d) {
            return Err(PartnerCenterError::Deadline(delay));
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// The one retry loop: 408/429/5xx and transport errors retried (honouring `Retry-After`),
    /// 401 renews the token once. `patch` is a JSON Patch sent with `If-Match` when given.
    async fn send(
        &self,
        method: Method,
        url: Url,
        patch: Option<(&Value, Option<&str>)>,
        deadline: Option<Instant>,
    ) -> Result<(Value, Option<String>), PartnerCenterError> {
        let mut token = self.auth.access_token().await?;
        let mut refreshed = false;
        let mut retry = 0;
        loop {
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose())
                .header("Accept", "application/json")
                .header("client-request-id", &client_request_id);
            if let Some((body, if_match)) = patch {
                request = request
                    .header("Content-Type", "application/json-patch+json")
                    .body(body.to_string());
                if let Some(etag) = if_match {
                    request = request.header("If-Match", etag);
                }
            }
            let sent = request.send().await;
            let response = match sent {
                Ok(response) => response,
                Err(err) if retry < self.backoff.max_retries => {
                    tracing::warn!(event = "partner_center_request_failed", error = %err, client_request_id, retry, path = url.path());
                    self.pause(self.backoff.delay(retry), deadline).await?;
                    retry += 1;
                    continue;
                }
                Err(err) => return Err(PartnerCenterError::Transport(err.to_string())),
            };
            let status = response.status();
            let request_id = request_id(response.headers());
            if status == StatusCode::NO_CONTENT {
                return Ok((Value::Null, request_id));
            }
            if status.is_success() {
                let body = response.json::<Value>().await.map_err(|e| {
                    PartnerCenterError::InvalidResponse(e.to_string(), request_id.clone())
                })?;
                return Ok((body, request_id));
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let error: Value = response.json().await.unwrap_or(Value::Null);
            let code = error["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let message = error["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            tracing::warn!(
                event = "partner_center_request_failed",
                status = status.as_u16(),
                code = %code,
                request_id = request_id.as_deref(),
                client_request_id,
                retry,
                path = url.path()
            );
            match status {
                StatusCode::UNAUTHORIZED if !refreshed => {
                    refreshed = true;
                    token = self.auth.renew_after_rejection(&token).await?;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(PartnerCenterError::Auth {
                        status: status.as_u16(),
                        message: format!("{code}: {message}"),
                        request_id,
                    });
                }
                s if retryable_status(s) && retry < self.backoff.max_retries => {
                    self.pause(self.backoff.delay_with_hint(retry, retry_after), deadline)
                        .await?;
                    retry += 1;
                }
                s => {
                    return Err(PartnerCenterError::Http {
                        status: s.as_u16(),
                        code,
                        message,
                        request_id,
                        retryable: retryable_status(s),
                    });
                }
            }
        }
    }
}
