//! Referral pages over HTTP, through the shared retry loop (`crate::http`): throttling, server
//! errors, timeouts and expired tokens are handled there; here the Referrals API's paths, paging
//! and JSON Patch.

use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::auth::PartnerCenterAuth;
use super::error::PartnerCenterError;
use super::query::query_pairs;
use crate::http::{Call, Service, ServiceNames, TokenCache};
use crate::ports::{ReferralFilter, ReferralPage, ReferralSource, ReferralWriteBack, SourceError};
use crate::retry::Backoff;

const REFERRALS_PATH: &str = "v1.0/engagements/referrals";

/// Partner Center in messages and log events.
pub(super) const NAMES: ServiceNames = ServiceNames {
    display: "Partner Center",
    request_failed: "partner_center_request_failed",
    request: "partner_center_request",
    token_failed: "partner_center_token_failed",
    token_refused: "partner_center_token_refused",
    token_issued: "partner_center_token_issued",
};

/// The Referrals API client.
#[derive(Debug)]
pub struct PartnerCenterClient {
    base: Url,
    service: Service,
}

fn invalid(message: String, request_id: Option<String>) -> PartnerCenterError {
    PartnerCenterError::InvalidResponse {
        service: NAMES.display,
        message,
        request_id,
    }
}

impl PartnerCenterClient {
    /// `base_url` is `https://api.partner.microsoft.com` (or a simulator).
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        auth: PartnerCenterAuth,
        backoff: Backoff,
    ) -> Result<Self, PartnerCenterError> {
        let mut base = Url::parse(base_url).map_err(|e| PartnerCenterError::InvalidRequest {
            service: NAMES.display,
            message: format!("base URL {base_url}: {e}"),
        })?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let service = Service::new(
            NAMES,
            http,
            TokenCache::new(auth),
            backoff,
            &[("Accept", "application/json")],
        );
        Ok(Self { base, service })
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
        let mut call = Call::new("write_back", Method::PATCH, self.referral_url(referral_id)?)
            .body(
                "application/json-patch+json",
                patch.to_string().into_bytes(),
            );
        if let Some(etag) = etag {
            call = call.header("If-Match", etag);
        }
        self.service.send(&call, None).await?;
        Ok(())
    }
}

impl PartnerCenterClient {
    /// The first page of the referrals `filter` selects.
    fn first_page_url(&self, filter: &ReferralFilter) -> Result<Url, PartnerCenterError> {
        let mut url = self
            .base
            .join(REFERRALS_PATH)
            .map_err(|e| invalid(e.to_string(), None))?;
        url.query_pairs_mut().extend_pairs(query_pairs(filter));
        Ok(url)
    }

    /// The page at a `@odata.nextLink`, followed verbatim (relative links resolve against the base).
    /// The bearer token goes to the base host only: a link to another host or port is refused, and
    /// the documented `http://` link is upgraded to `https://` when the base is HTTPS.
    fn next_page_url(&self, next_link: &str) -> Result<Url, PartnerCenterError> {
        let refuse = |why: &str| invalid(format!("nextLink {next_link}: {why}"), None);
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
            .map_err(|e| invalid(e.to_string(), None))?;
        url.path_segments_mut()
            .map_err(|()| invalid("base URL cannot have a path".to_owned(), None))?
            .push(referral_id);
        Ok(url)
    }

    async fn page(
        &self,
        url: Url,
        deadline: Option<Instant>,
    ) -> Result<ReferralPage, PartnerCenterError> {
        let answer = self
            .service
            .send(&Call::new("list_referrals", Method::GET, url), deadline)
            .await?;
        let request_id = answer.request_id;
        let body: Value = serde_json::from_str(&answer.body)
            .map_err(|e| invalid(e.to_string(), request_id.clone()))?;
        let Some(Value::Array(referrals)) = body.get("value") else {
            return Err(invalid(
                "page without a `value` array".to_owned(),
                request_id,
            ));
        };
        let next_link = body
            .get("@odata.nextLink")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        Ok(ReferralPage {
            referrals: referrals.clone(),
            next_link,
            request_id,
        })
    }
}
