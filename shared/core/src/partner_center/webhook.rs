//! Partner Center webhook events: who sent them and what they name.
//!
//! Partner Center signs each event it POSTs (Microsoft's "Partner Center webhooks", "How to
//! authenticate the callback"): `Authorization: Signature <base64>` over the exact body,
//! `x-ms-signature-algorithm` (`rsa-sha256`) and `x-ms-certificate-url`, the certificate whose key
//! signed it. [`WebhookVerifier`] checks, in Microsoft's order: the headers are there; the
//! certificate comes from a trusted place (a URL prefix Hunter was told to trust: Hunter never
//! fetches a certificate from wherever an event says); it is in its validity period and its
//! issuer's organization is Microsoft's; the body verifies against its public key. Microsoft's
//! step "verify the certificate chain" is carried by the trusted prefix: the certificate is
//! served alone (no intermediates to build a chain from), from Microsoft's storage over HTTPS.

use std::sync::Arc;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::ports::{CertificateError, CertificateSource};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Where Partner Center's signing certificate is published (the prefix trusted by default).
pub const MICROSOFT_CERTIFICATE_PREFIX: &str =
    "https://3psostorageacct.blob.core.windows.net/cert/";
/// The organization Microsoft's sample requires in the certificate's issuer.
pub const MICROSOFT_ORGANIZATION: &str = "Microsoft Corporation";
/// The header naming the certificate.
pub const CERTIFICATE_URL_HEADER: &str = "x-ms-certificate-url";
/// The header naming the signature algorithm.
pub const SIGNATURE_ALGORITHM_HEADER: &str = "x-ms-signature-algorithm";
/// The events Hunter registers for.
pub const REFERRAL_EVENTS: [&str; 2] = ["referral-created", "referral-updated"];

/// Why an event was refused, or could not be checked now.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookError {
    /// A header the signature needs is missing or empty.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `Authorization` is not `Signature <base64>`.
    #[error("the Authorization scheme must be Signature")]
    WrongScheme,
    /// The signature is not base64.
    #[error("the signature is not base64")]
    MalformedSignature,
    /// An algorithm other than RSA with SHA-256.
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The certificate URL is not under a trusted prefix (it is never fetched).
    #[error("untrusted certificate URL {0:?}")]
    UntrustedCertificate(String),
    /// The certificate could not be fetched now; Partner Center delivers the event again.
    #[error("certificate unavailable: {0}")]
    CertificateUnavailable(String),
    /// The certificate cannot be read, or carries no RSA key.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// Now is outside the certificate's validity period.
    #[error("the certificate is not valid now (valid {not_before} to {not_after})")]
    CertificateNotValidNow {
        not_before: String,
        not_after: String,
    },
    /// The certificate's issuer is not Microsoft.
    #[error("the certificate's issuer organization is {0:?}")]
    WrongOrganization(String),
    /// The body does not verify against the certificate's key.
    #[error("the signature does not match the body")]
    BadSignature,
}

impl WebhookError {
    /// Whether the same event may be accepted later (answered 503 so that Partner Center
    /// delivers it again); every other error is a refusal (401).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::CertificateUnavailable(_))
    }

    /// What went wrong, in words that carry nothing of the request (to keep and show).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "a signature header is missing",
            Self::WrongScheme => "the Authorization scheme is not Signature",
            Self::MalformedSignature => "the signature is not base64",
            Self::UnsupportedAlgorithm(_) => "the signature algorithm is not rsa-sha256",
            Self::UntrustedCertificate(_) => "the certificate URL is not a trusted one",
            Self::CertificateUnavailable(_) => "the certificate could not be fetched",
            Self::InvalidCertificate(_) => "the certificate cannot be read",
            Self::CertificateNotValidNow { .. } => "the certificate is not valid now",
            Self::WrongOrganization(_) => "the certificate is not issued by Microsoft",
            Self::BadSignature => "the signature does not match the body",
        }
    }
}

/// The signature headers of one delivery, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// `x-ms-certificate-url`.
    pub certificate_url: Option<&'a str>,
    /// `x-ms-signature-algorithm`.
    pub algorithm: Option<&'a str>,
}

impl From<CertificateError> for WebhookError {
    fn from(err: CertificateError) -> Self {
        match err {
            CertificateError::Unavailable(why) => Self::CertificateUnavailable(why),
            CertificateError::TooLarge(_) => Self::InvalidCertificate(err.to_string()),
        }
    }
}

/// Checks that an event was signed by Partner Center.
#[allow(missing_debug_implementations, reason = "trait object")]
pub struct WebhookVerifier {
    trusted_prefixes: Vec<Url>,
    certificates: Arc<dyn CertificateSource>,
}

impl WebhookVerifier {
    /// Trusts certificates under `trusted_prefixes` (e.g. [`MICROSOFT_CERTIFICATE_PREFIX`]),
    /// fetched by `certificates`. A prefix is a directory: `https://host/cert` trusts
    /// `https://host/cert/…` only, never `https://host.evil/…` or `https://host/certs/…`; a prefix
    /// that is not an absolute http(s) URL trusts nothing (and is logged).
    pub fn new(trusted_prefixes: Vec<String>, certificates: Arc<dyn CertificateSource>) -> Self {
        let trusted_prefixes = trusted_prefixes
            .iter()
            .filter_map(|prefix| {
                let parsed = Url::parse(prefix.trim()).ok().filter(|u| {
                    matches!(u.scheme(), "https" | "http")
                        && u.host_str().is_some()
                        && u.username().is_empty()
                        && u.password().is_none()
                        && u.query().is_none()
                        && u.fragment().is_none()
                });
                if parsed.is_none() {
                    tracing::warn!(event = "webhook_certificate_prefix_ignored", prefix);
                }
                parsed.map(|mut url| {
                    if !url.path().ends_with('/') {
                        let directory = format!("{}/", url.path());
                        url.set_path(&directory);
                    }
                    url
                })
            })
            .collect();
        Self {
            trusted_prefixes,
            certificates,
        }
    }

    /// Checks `body` against its signature headers at `now`.
    pub async fn verify(
        &self,
        headers: SignatureHeaders<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        let authorization = present(headers.authorization, "Authorization")?;
        let certificate_url = present(headers.certificate_url, CERTIFICATE_URL_HEADER)?;
        let algorithm = present(headers.algorithm, SIGNATURE_ALGORITHM_HEADER)?;
        let signature = signature_of(authorization)?;
        if !algorithm.eq_ignore_ascii_case("rsa-sha256") {
            return Err(WebhookError::UnsupportedAlgorithm(algorithm.to_owned()));
        }
        let url = self.trusted(certificate_url)?;
        let certificate = self.certificates.certificate(&url).await?;
        let key = certificate_key(&certificate, now)?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
            .verify(body, &signature)
            .map_err(|_| WebhookError::BadSignature)
    }

    /// The certificate URL, if it is under a trusted prefix: the same scheme, host and port, and
    /// a path inside the prefix's (compared on the parsed URL, so that userinfo, `..` segments,
    /// a query or a fragment cannot pass, and each certificate has one URL).
    fn trusted(&self, certificate_url: &str) -> Result<Url, WebhookError> {
        let untrusted = || WebhookError::UntrustedCertificate(certificate_url.to_owned());
        let url = Url::parse(certificate_url).map_err(|_| untrusted())?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
            || url.path().contains('%')
        {
            return Err(untrusted());
        }
        self.trusted_prefixes
            .iter()
            .any(|prefix| {
                url.scheme() == prefix.scheme()
                    && url.host_str() == prefix.host_str()
                    && url.port_or_known_default() == prefix.port_or_known_default()
                    && url.path().starts_with(prefix.path())
            })
            .then_some(url)
            .ok_or_else(untrusted)
    }
}

fn present<'a>(value: Option<&'a str>, name: &'static str) -> Result<&'a str, WebhookError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(WebhookError::MissingHeader(name))
}

/// The signature bytes of `Signature <base64>`.
fn signature_of(authorization: &str) -> Result<Vec<u8>, WebhookError> {
    let (scheme, value) = authorization
        .split_once(' ')
        .ok_or(WebhookError::WrongScheme)?;
    if scheme != "Signature" {
        return Err(WebhookError::WrongScheme);
    }
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| WebhookError::MalformedSignature)
}

/// The RSA public key (PKCS#1 DER) of a certificate that is valid at `now` and issued by
/// Microsoft.
fn certificate_key(bytes: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>, WebhookError> {
    let der = der_of(bytes)?;
    let (_, certificate) = X509Certificate::from_der(&der)
        .map_err(|e| WebhookError::InvalidCertificate(e.to_string()))?;
    let validity = certificate.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now.timestamp() < not_before || now.timestamp() > not_after {
        return Err(WebhookError::CertificateNotValidNow {
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    let organizations: Vec<&str> = certificate
        .issuer()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    if !organizations.contains(&MICROSOFT_ORGANIZATION) {
        return Err(WebhookError::WrongOrganization(organizations.join(", ")));
    }
    let key = certificate.public_key();
    if key.algorithm.algorithm.to_id_string() != "1.2.840.113549.1.1.1" {
        return Err(WebhookError::InvalidCertificate(
            "the key is not an RSA key".to_owned(),
        ));
    }
    Ok(key.subject_public_key.data.to_vec())
}

/// DER bytes of a certificate given as DER or as PEM (`-----BEGIN CERTIFICATE-----`).
fn der_of(bytes: &[u8]) -> Result<Vec<u8>, WebhookError> {
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(bytes.to_vec());
    }
    let (_, pem) = x509_parser::pem::parse_x509_pem(bytes)
        .map_err(|e| WebhookError::InvalidCertificate(e.to_string()))?;
    Ok(pem.contents)
}

/// A Partner Center event (`{EventName, ResourceUri, ResourceName, AuditUri,
/// ResourceChangeUtcDate}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookEvent {
    pub event_name: String,
    #[serde(default)]
    pub resource_uri: Option<String>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub audit_uri: Option<String>,
    #[serde(default)]
    pub resource_change_utc_date: Option<String>,
}

/// What an event asks of Hunter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    /// A referral was created or changed: fetch it and ingest it.
    FetchReferral(String),
    /// Partner Center's test event (`test-created`): nothing to do but answer.
    Test,
    /// An event Hunter does not act on (named), answered so that it is not delivered again.
    Ignore(String),
}

/// Why an event's body cannot be acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event: {0}")]
pub struct InvalidEvent(pub String);

/// A referral id Hunter accepts from an event: what Partner Center's ids are made of (GUIDs),
/// bounded.
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl WebhookEvent {
    /// Reads an event body.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidEvent> {
        serde_json::from_slice(body).map_err(|e| InvalidEvent(e.to_string()))
    }

    /// What to do: referral events name the referral by `ResourceUri`
    /// (`…/referrals/{id}`); only that id is used, never the URI itself.
    pub fn action(&self) -> Result<EventAction, InvalidEvent> {
        let name = self.event_name.to_ascii_lowercase();
        if name == "test-created" {
            return Ok(EventAction::Test);
        }
        if !name.starts_with("referral-") && !name.starts_with("related-referral-") {
            return Ok(EventAction::Ignore(self.event_name.clone()));
        }
        let uri = self
            .resource_uri
            .as_deref()
            .ok_or_else(|| InvalidEvent(format!("{} without ResourceUri", self.event_name)))?;
        let path = Url::parse(uri)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| uri.to_owned());
        let mut segments = path.trim_end_matches('/').rsplit('/');
        let id = segments.next().unwrap_or_default();
        let collection = segments.next().unwrap_or_default();
        if !collection.eq_ignore_ascii_case("referrals") || !plausible_id(id) {
            return Err(InvalidEvent(format!(
                "no referral id in ResourceUri {uri:?}"
            )));
        }
        Ok(EventAction::FetchReferral(id.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use aws_lc_rs::rand::SystemRandom;

    use super::*;
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

    const SIGNER_KEY: &[u8] = include_bytes!("testdata/signer.pk8.der");
    const SIGNER_CERT: &[u8] = include_bytes!("testdata/signer-microsoft.cer");
    const CONTOSO_CERT: &[u8] = include_bytes!("testdata/signer-contoso.pem");
    const OTHER_CERT: &[u8] = include_bytes!("testdata/other-microsoft.cer");
    const PREFIX: &str = "https://certs.example/cert/";
    const BODY: &[u8] = br#"{"EventName":"referral-updated","ResourceUri":"https://api.partner.microsoft.com/v1.0/engagements/referrals/5e2a1f0c-0000-4000-8000-000000000001","ResourceName":"referral","AuditUri":null,"ResourceChangeUtcDate":"2026-12-02T10:00:00Z"}"#;

    /// Serves fixed certificates by URL, and counts the fetches.
    struct Certificates(HashMap<String, &'static [u8]>, Mutex<usize>);

    #[async_trait]
    impl CertificateSource for Certificates {
        async fn certificate(&self, url: &Url) -> Result<Arc<[u8]>, CertificateError> {
            *self.1.lock().unwrap() += 1;
            self.0
                .get(url.as_str())
                .map(|b| Arc::from(*b))
                .ok_or_else(|| CertificateError::Unavailable(url.to_string()))
        }
    }

    fn verifier() -> (WebhookVerifier, Arc<Certificates>) {
        let certificates = Arc::new(Certificates(
            HashMap::from([
                (format!("{PREFIX}signer.cer"), SIGNER_CERT),
                (format!("{PREFIX}contoso.pem"), CONTOSO_CERT),
                (format!("{PREFIX}other.cer"), OTHER_CERT),
            ]),
            Mutex::new(0),
        ));
        let source: Arc<dyn CertificateSource> = certificates.clone();
        (
            WebhookVerifier::new(vec![PREFIX.to_owned()], source),
            certificates,
        )
    }

    fn sign(body: &[u8]) -> String {
        let key = RsaKeyPair::from_pkcs8(SIGNER_KEY).unwrap();
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            body,
            &mut signature,
        )
        .unwrap();
        format!(
            "Signature {}",
            base64::engine::general_purpose::STANDARD.encode(signature)
        )
    }

    fn now() -> DateTime<Utc> {
        "2027-01-01T00:00:00Z".parse().unwrap()
    }

    async fn check(
        authorization: Option<&str>,
        certificate: Option<&str>,
        algorithm: Option<&str>,
        body: &[u8],
    ) -> Result<(), WebhookError> {
        let url = certificate.map(|c| format!("{PREFIX}{c}"));
        let headers = SignatureHeaders {
            authorization,
            certificate_url: url.as_deref(),
            algorithm,
        };
        verifier().0.verify(headers, body, now()).await
    }

    #[tokio::test]
    async fn when_partner_center_signed_the_body_should_accept_it() {
        let signature = sign(BODY);
        let result = check(
            Some(&signature),
            Some("signer.cer"),
            Some("rsa-sha256"),
            BODY,
        )
        .await;
        assert_eq!(result, Ok(()));
    }

    #[tokio::test]
    async fn when_a_byte_of_the_body_changed_should_refuse_it() {
        let signature = sign(BODY);
        let mut tampered = BODY.to_vec();
        tampered[20] ^= 1;
        let result = check(
            Some(&signature),
            Some("signer.cer"),
            Some("rsa-sha256"),
            &tampered,
        )
        .await;
        assert_eq!(result, Err(WebhookError::BadSignature));
    }

    #[tokio::test]
    async fn when_another_microsoft_certificate_is_named_should_refuse_the_signature() {
        let signature = sign(BODY);
        let result = check(
            Some(&signature),
            Some("other.cer"),
            Some("RSA-SHA256"),
            BODY,
        )
        .await;
        assert_eq!(result, Err(WebhookError::BadSignature));
    }

    #[tokio::test]
    async fn when_a_header_is_missing_or_the_scheme_is_wrong_should_refuse_before_fetching() {
        let signature = sign(BODY);
        let bearer = signature.replace("Signature", "Bearer");
        let cases = [
            (None, Some("signer.cer"), Some("rsa-sha256")),
            (Some(signature.as_str()), None, Some("rsa-sha256")),
            (Some(signature.as_str()), Some("signer.cer"), None),
            (Some(signature.as_str()), Some("signer.cer"), Some("  ")),
            (
                Some(bearer.as_str()),
                Some("signer.cer"),
                Some("rsa-sha256"),
            ),
            (Some("Signature"), Some("signer.cer"), Some("rsa-sha256")),
            (
                Some("Signature !!!"),
                Some("signer.cer"),
                Some("rsa-sha256"),
            ),
            (
                Some(signature.as_str()),
                Some("signer.cer"),
                Some("rsa-sha1"),
            ),
        ];
        let expected = [
            WebhookError::MissingHeader("Authorization"),
            WebhookError::MissingHeader(CERTIFICATE_URL_HEADER),
            WebhookError::MissingHeader(SIGNATURE_ALGORITHM_HEADER),
            WebhookError::MissingHeader(SIGNATURE_ALGORITHM_HEADER),
            WebhookError::WrongScheme,
            WebhookError::WrongScheme,
            WebhookError::MalformedSignature,
            WebhookError::UnsupportedAlgorithm("rsa-sha1".to_owned()),
        ];
        for ((authorization, certificate, algorithm), expected) in cases.into_iter().zip(expected) {
            let (verifier, fetched) = verifier();
            let url = certificate.map(|c| format!("{PREFIX}{c}"));
            let headers = SignatureHeaders {
                authorization,
                certificate_url: url.as_deref(),
                algorithm,
            };
            let result = verifier.verify(headers, BODY, now()).await;
            assert_eq!(result, Err(expected.clone()), "{expected}");
            assert!(!expected.is_retryable());
            assert_eq!(*fetched.1.lock().unwrap(), 0, "{expected}: fetched");
        }
    }

    #[tokio::test]
    async fn when_the_certificate_url_is_not_under_a_trusted_prefix_should_never_fetch_it() {
        let signature = sign(BODY);
        for url in [
            "https://evil.example/cert/signer.cer",
            "https://certs.example@evil.example/cert/signer.cer",
            "https://certs.example/cert/../../evil/signer.cer",
            "https://certs.example/certificates/signer.cer",
            "http://certs.example/cert/signer.cer",
            "https://certs.example/cert/signer.cer?x=1",
            "https://certs.example/cert/signer.cer#1",
            "https://certs.example/cert/%73igner.cer",
            "https://certs.example.evil.example/cert/signer.cer",
            "https://certs.example:8443/cert/signer.cer",
            "not a url",
        ] {
            let (verifier, fetched) = verifier();
            let headers = SignatureHeaders {
                authorization: Some(&signature),
                certificate_url: Some(url),
                algorithm: Some("rsa-sha256"),
            };
            let result = verifier.verify(headers, BODY, now()).await;
            assert_eq!(
                result,
                Err(WebhookError::UntrustedCertificate(url.to_owned())),
                "{url}"
            );
            assert_eq!(*fetched.1.lock().unwrap(), 0, "{url}");
        }
    }

    #[tokio::test]
    async fn when_the_certificate_is_not_microsofts_or_not_valid_now_should_refuse_it() {
        let signature = sign(BODY);
        let contoso = check(
            Some(&signature),
            Some("contoso.pem"),
            Some("rsa-sha256"),
            BODY,
        )
        .await;
        assert_eq!(
            contoso,
            Err(WebhookError::WrongOrganization("Contoso Ltd".to_owned()))
        );
        let (verifier, _) = verifier();
        let url = format!("{PREFIX}signer.cer");
        let headers = SignatureHeaders {
            authorization: Some(&signature),
            certificate_url: Some(&url),
            algorithm: Some("rsa-sha256"),
        };
        for when in ["2200-01-01T00:00:00Z", "2001-01-01T00:00:00Z"] {
            let result = verifier.verify(headers, BODY, when.parse().unwrap()).await;
            assert!(
                matches!(result, Err(WebhookError::CertificateNotValidNow { .. })),
                "{when}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn when_the_certificate_cannot_be_fetched_or_read_should_say_whether_to_retry() {
        let signature = sign(BODY);
        let missing = check(
            Some(&signature),
            Some("missing.cer"),
            Some("rsa-sha256"),
            BODY,
        )
        .await
        .unwrap_err();
        assert!(missing.is_retryable(), "{missing}");
        let garbage = certificate_key(b"not a certificate", now()).unwrap_err();
        assert!(
            matches!(garbage, WebhookError::InvalidCertificate(_)),
            "{garbage}"
        );
        assert!(!garbage.is_retryable());
        let bad_pem = certificate_key(b"-----BEGIN CERTIFICATE-----\n!!\n", now()).unwrap_err();
        assert!(matches!(bad_pem, WebhookError::InvalidCertificate(_)));
    }

    #[tokio::test]
    async fn when_a_prefix_is_written_without_its_slash_should_still_trust_only_that_directory() {
        let signature = sign(BODY);
        let (_, certificates) = verifier();
        let source: Arc<dyn CertificateSource> = certificates;
        for prefix in ["https://certs.example/cert", "https://certs.example/cert/"] {
            let verifier = WebhookVerifier::new(
                vec![
                    prefix.to_owned(),
                    "not a url".to_owned(),
                    "ftp://x/".to_owned(),
                ],
                source.clone(),
            );
            for (url, trusted) in [
                ("https://certs.example/cert/signer.cer", true),
                ("https://certs.example/certificates/signer.cer", false),
                ("https://certs.example.evil.example/cert/signer.cer", false),
            ] {
                let headers = SignatureHeaders {
                    authorization: Some(&signature),
                    certificate_url: Some(url),
                    algorithm: Some("rsa-sha256"),
                };
                let result = verifier.verify(headers, BODY, now()).await;
                assert_eq!(result.is_ok(), trusted, "{prefix} {url}: {result:?}");
            }
        }
        let nothing = WebhookVerifier::new(vec!["https://certs.example".to_owned()], source);
        let headers = SignatureHeaders {
            authorization: Some(&signature),
            certificate_url: Some("https://certs.example/cert/signer.cer"),
            algorithm: Some("rsa-sha256"),
        };
        assert!(
            nothing.verify(headers, BODY, now()).await.is_ok(),
            "a host prefix trusts the host's paths, and only that host"
        );
    }

    #[test]
    fn when_an_event_names_a_referral_should_fetch_that_id_only() {
        let event = WebhookEvent::parse(BODY).unwrap();
        assert_eq!(
            event.action(),
            Ok(EventAction::FetchReferral(
                "5e2a1f0c-0000-4000-8000-000000000001".to_owned()
            ))
        );
        let event = |name: &str, uri: Option<&str>| WebhookEvent {
            event_name: name.to_owned(),
            resource_uri: uri.map(str::to_owned),
            resource_name: None,
            audit_uri: None,
            resource_change_utc_date: None,
        };
        assert_eq!(
            event(
                "related-referral-updated",
                Some("/v1.0/engagements/referrals/abc-1/")
            )
            .action(),
            Ok(EventAction::FetchReferral("abc-1".to_owned()))
        );
        assert_eq!(event("test-created", None).action(), Ok(EventAction::Test));
        assert_eq!(
            event("subscription-updated", Some("https://x/y")).action(),
            Ok(EventAction::Ignore("subscription-updated".to_owned()))
        );
        for uri in [
            None,
            Some("https://x/v1.0/engagements/referrals/"),
            Some("https://x/referrals/a%2F..%2Fb"),
            Some("https://x/referrals/<script>"),
        ] {
            assert!(event("referral-created", uri).action().is_err(), "{uri:?}");
        }
        let long = format!("https://x/referrals/{}", "a".repeat(129));
        assert!(event("referral-created", Some(&long)).action().is_err());
        assert!(WebhookEvent::parse(b"{}").is_err());
        assert!(WebhookEvent::parse(b"[1]").is_err());
        assert!(WebhookEvent::parse(b"\xff").is_err());
    }
}
