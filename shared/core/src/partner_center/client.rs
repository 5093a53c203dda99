//! Referral pages over HTTP, through the shared retry loop (`crate::http`): throttling, server
//! errors, timeouts and expired tokens are handled there; here the Referrals API's paths, paging
//! and JSON Patch.

use reqwest::Method;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;
use url::Url;

use super::auth::PartnerCenterAuth;
use super::error::PartnerCenterError;
use super::query::query_pairs;
use crate::http::{Call, Service, ServiceNames, TokenCache};
use crate::ports::{
    ReferralFilter, ReferralLookup, ReferralPage, ReferralSource, ReferralWriteBack, SourceError,
};
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
impl ReferralLookup for PartnerCenterClient {
    async fn referral(&self, id: &str) -> Result<Option<Box<RawValue>>, SourceError> {
        let call = Call::new("get_referral", Method::GET, self.referral_url(id)?);
        let answer = match self.service.send(&call, None).await {
            Ok(answer) => answer,
            Err(PartnerCenterError::Http { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let referral = RawValue::from_string(answer.body).map_err(|e| {
            SourceError::from(invalid(format!("referral {id}: {e}"), answer.request_id))
        })?;
        Ok(Some(referral))
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
        self.patch_referral("write_back", referral_id, etag, &patch)
            .await
    }

    async fn close_referral(
        &self,
        referral_id: &str,
        etag: Option<&str>,
        substatus: &str,
    ) -> Result<(), SourceError> {
        let patch = serde_json::json!([
            {"op": "replace", "path": "/status", "value": "Closed"},
            {"op": "replace", "path": "/substatus", "value": substatus},
        ]);
        self.patch_referral("close_referral", referral_id, etag, &patch)
            .await?;
        tracing::info!(
            event = "partner_center_referral_closed",
            referral_id,
            substatus
        );
        Ok(())
    }
}

impl PartnerCenterClient {
    /// A JSON Patch of one referral, conditional on `etag` when given (`If-Match`).
    async fn patch_referral(
        &self,
        op: &'static str,
        referral_id: &str,
        etag: Option<&str>,
        patch: &serde_json::Value,
    ) -> Result<(), SourceError> {
        let mut call = Call::new(op, Method::PATCH, self.referral_url(referral_id)?).body(
            "application/json-patch+json",
            patch.to_string().into_bytes(),
        );
        if let Some(etag) = etag {
            call = call.header("If-Match", etag);
        }
        self.service.send(&call, None).await?;
        Ok(())
    }

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
    /// The bearer token goes to the base's origin only: a link to another host, port or scheme, or
    /// with credentials, is refused, and the documented `http://` link is upgraded to `https://`
    /// when the base is HTTPS.
    fn next_page_url(&self, next_link: &str) -> Result<Url, PartnerCenterError> {
        let refuse = |why: &str| invalid(format!("nextLink {next_link}: {why}"), None);
        let mut url = Url::parse(next_link)
            .or_else(|_| self.base.join(next_link))
            .map_err(|e| refuse(&e.to_string()))?;
        if url.host_str() != self.base.host_str() {
            return Err(refuse("another host than the API base"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("credentials in the link"));
        }
        if self.base.scheme() == "https" && url.scheme() == "http" {
            url.set_scheme("https")
                .map_err(|()| refuse("cannot use https"))?;
            url.set_port(self.base.port())
                .map_err(|()| refuse("cannot set the port"))?;
        } else if url.scheme() != self.base.scheme() {
            return Err(refuse("another scheme than the API base"));
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
        let body: ListAnswer = serde_json::from_str(&answer.body)
            .map_err(|e| invalid(e.to_string(), request_id.clone()))?;
        let Some(referrals) = body.value else {
            return Err(invalid(
                "page without a `value` array".to_owned(),
                request_id,
            ));
        };
        let next_link = body
            .next_link
            .as_ref()
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        Ok(ReferralPage {
            referrals,
            next_link,
            request_id,
        })
    }
}

/// A page of Partner Center's referral list: each referral kept as the text it came as.
#[derive(serde::Deserialize)]
struct ListAnswer {
    value: Option<Vec<Box<RawValue>>>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<Value>,
}

/// A webhook registration of the tenant (`{SubscriberId, WebhookUrl, WebhookEvents}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookRegistration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_id: Option<String>,
    pub webhook_url: String,
    pub webhook_events: Vec<String>,
}

/// Partner Center's webhook registration API (`webhooks/v1/registration`; one registration per
/// tenant), on `https://api.partnercenter.microsoft.com` (or a simulator).
#[derive(Debug)]
pub struct WebhookRegistrations {
    url: Url,
    service: Service,
}

const REGISTRATION_PATH: &str = "webhooks/v1/registration";

impl WebhookRegistrations {
    /// `auth` should ask for [`super::WEBHOOKS_SCOPE`].
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        auth: PartnerCenterAuth,
        backoff: Backoff,
    ) -> Result<Self, PartnerCenterError> {
        let client = PartnerCenterClient::new(http, base_url, auth, backoff)?;
        let url = client
            .base
            .join(REGISTRATION_PATH)
            .map_err(|e| invalid(e.to_string(), None))?;
        Ok(Self {
            url,
            service: client.service,
        })
    }

    /// Registers `webhook_url` for `events` (replacing the tenant's registration, if any).
    pub async fn register(
        &self,
        webhook_url: &str,
        events: &[&str],
    ) -> Result<WebhookRegistration, PartnerCenterError> {
        let body = serde_json::json!({"WebhookUrl": webhook_url, "WebhookEvents": events});
        let call = Call::new("register_webhook", Method::POST, self.url.clone())
            .body("application/json", body.to_string().into_bytes());
        let answer = self.service.send(&call, None).await?;
        serde_json::from_str(&answer.body).map_err(|e| invalid(e.to_string(), answer.request_id))
    }

    /// The tenant's registration; `None` when there is none.
    pub async fn get(&self) -> Result<Option<WebhookRegistration>, PartnerCenterError> {
        let call = Call::new("get_webhook", Method::GET, self.url.clone());
        match self.service.send(&call, None).await {
            Ok(answer) => serde_json::from_str(&answer.body)
                .map(Some)
                .map_err(|e| invalid(e.to_string(), answer.request_id)),
            Err(PartnerCenterError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the tenant's registration; `false` when there was none.
    pub async fn delete(&self) -> Result<bool, PartnerCenterError> {
        let call = Call::new("delete_webhook", Method::DELETE, self.url.clone());
        match self.service.send(&call, None).await {
            Ok(_) => Ok(true),
            Err(PartnerCenterError::Http { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use proptest::string::string_regex;

    use super::*;
    use crate::adapters::MemoryRefreshTokenStore;
    use crate::http::TokenEndpoint;
    use crate::secret::Secret;

    const BASES: [&str; 4] = [
        "https://api.partner.microsoft.com",
        "https://api.partner.microsoft.com/prefix/",
        "http://127.0.0.1:8081",
        "https://sim.example:8443/pc",
    ];

    fn client(base: &str) -> PartnerCenterClient {
        let http = reqwest::Client::new();
        let auth = PartnerCenterAuth::new(
            TokenEndpoint::new(
                http.clone(),
                "http://127.0.0.1:9/token",
                "id",
                Secret::default(),
            ),
            Secret::new("refresh"),
            Arc::new(MemoryRefreshTokenStore::new()),
        );
        PartnerCenterClient::new(http, base, auth, Backoff::default()).unwrap()
    }

    /// The link's URL is on the base's origin (scheme, host, port) and carries no credentials;
    /// anything else is refused with a message naming the link.
    fn assert_same_origin(client: &PartnerCenterClient, link: &str) -> Option<Url> {
        let base = &client.base;
        match client.next_page_url(link) {
            Ok(url) => {
                assert_eq!(url.scheme(), base.scheme(), "{link:?} -> {url}");
                assert_eq!(url.host_str(), base.host_str(), "{link:?} -> {url}");
                assert_eq!(
                    url.port_or_known_default(),
                    base.port_or_known_default(),
                    "{link:?} -> {url}"
                );
                assert!(
                    url.username().is_empty() && url.password().is_none(),
                    "{link:?} -> {url}"
                );
                Some(url)
            }
            Err(err) => {
                assert!(
                    matches!(err, PartnerCenterError::InvalidResponse { .. }),
                    "{err:?}"
                );
                assert!(err.to_string().contains("nextLink"), "{err}");
                None
            }
        }
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        string_regex(&format!("(?s).{{0,{max}}}")).unwrap()
    }

    /// Links as a server, a proxy or an attacker could write them.
    fn link() -> impl Strategy<Value = String> {
        let scheme = prop::sample::select(vec![
            "https://",
            "http://",
            "HTTPS://",
            "ftp://",
            "ws://",
            "wss://",
            "file://",
            "data:",
            "javascript:",
            "//",
            "///",
            "\\\\",
            "https:\\\\",
            "https:",
            "http:/",
            " https://",
            "\thttps://",
            "",
            "foo+bar://",
        ]);
        let user = prop::sample::select(vec!["", "user@", "user:pw@", "@", "a@b@"]);
        let host = prop::sample::select(vec![
            "api.partner.microsoft.com",
            "API.PARTNER.MICROSOFT.COM",
            "api.partner.microsoft.com.",
            "127.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "sim.example",
            "SIM.example",
            "evil.com",
            "api.partner.microsoft.com.evil.com",
            "evil.com#@api.partner.microsoft.com",
            "api.partner.microsoft.com@evil.com",
            "evil.com\\@api.partner.microsoft.com",
            "evil.com?@api.partner.microsoft.com",
            "127.0.0.2",
            "localhost",
            "[::1]",
            "\u{430}pi.partner.microsoft.com",
            "%61pi.partner.microsoft.com",
            "xn--pi-7kc.com",
            "",
        ]);
        let port = prop::sample::select(vec![
            "", ":443", ":80", ":8081", ":8443", ":0", ":65535", ":99999", ":", ":-1",
        ]);
        let rest = prop_oneof![
            Just(String::new()),
            string_regex("[/?#\\\\][ -~]{0,40}").unwrap(),
            text(40).prop_map(|t| format!("/{t}")),
        ];
        prop_oneof![
            3 => (scheme, user, host, port, rest)
                .prop_map(|(s, u, h, p, r)| format!("{s}{u}{h}{p}{r}")),
            1 => text(200),
            1 => text(2_000),
            1 => string_regex("[ -~]{0,200}").unwrap(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn properties_next_link_never_leaves_the_base_origin(
            base in prop::sample::select(BASES.to_vec()),
            link in link(),
        ) {
            assert_same_origin(&client(base), &link);
        }
    }

    #[test]
    fn properties_next_link_to_another_origin_is_refused() {
        let pc = client(BASES[0]);
        for foreign in [
            "https://evil.com/v1.0/referrals",
            "//evil.com/x",
            "https:\\\\evil.com\\x",
            "https://api.partner.microsoft.com.evil.com/",
            "https://api.partner.microsoft.com@evil.com/",
            "https://evil.com#@api.partner.microsoft.com",
            "https://evil.com\\@api.partner.microsoft.com",
            "https://\u{430}pi.partner.microsoft.com/",
            "https://api.partner.microsoft.com:8443/",
            "ftp://api.partner.microsoft.com:443/",
            "wss://api.partner.microsoft.com/",
            "https://user:pw@api.partner.microsoft.com/",
            "file:///etc/passwd",
            "data:text/plain,x",
        ] {
            assert_eq!(assert_same_origin(&pc, foreign), None, "{foreign}");
        }
        let local = client(BASES[2]);
        for foreign in [
            "http://localhost:8081/x",
            "http://127.0.0.2:8081/x",
            "https://127.0.0.1:8081/x",
        ] {
            assert_eq!(assert_same_origin(&local, foreign), None, "{foreign}");
        }
    }

    #[test]
    fn properties_next_link_on_the_base_origin_is_followed() {
        let pc = client(BASES[0]);
        for (link, want) in [
            (
                "https://api.partner.microsoft.com/v1.0/referrals?$skipToken=abc",
                "https://api.partner.microsoft.com/v1.0/referrals?$skipToken=abc",
            ),
            (
                "http://api.partner.microsoft.com/v1.0/referrals?s=1",
                "https://api.partner.microsoft.com/v1.0/referrals?s=1",
            ),
            (
                "HTTPS://API.PARTNER.MICROSOFT.COM:443/v1.0/referrals",
                "https://api.partner.microsoft.com/v1.0/referrals",
            ),
            (
                "v1.0/referrals?page=2",
                "https://api.partner.microsoft.com/v1.0/referrals?page=2",
            ),
            (
                "/v1.0/referrals?page=3",
                "https://api.partner.microsoft.com/v1.0/referrals?page=3",
            ),
        ] {
            assert_eq!(
                assert_same_origin(&pc, link).map(String::from).as_deref(),
                Some(want),
                "{link}"
            );
        }
        let local = client(BASES[2]);
        assert_eq!(
            assert_same_origin(&local, "http://127.0.0.1:8081/v1.0/referrals?p=2")
                .map(String::from)
                .as_deref(),
            Some("http://127.0.0.1:8081/v1.0/referrals?p=2")
        );
    }
}
