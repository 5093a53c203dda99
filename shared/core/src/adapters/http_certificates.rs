//! Signing certificates fetched over HTTP(S) ([`CertificateSource`]): the certificate a Partner
//! Center webhook event names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use url::Url;

use crate::ports::{CertificateError, CertificateSource};

/// Certificates fetched over HTTP(S) and kept for an hour (Partner Center signs every webhook
/// event with the same one until it renews it); a failed fetch is remembered for a minute, so that
/// events naming a missing certificate do not each cause a request. At most
/// [`MAX_CACHED_CERTIFICATES`] URLs are kept.
#[derive(Debug)]
pub struct HttpCertificateSource {
    http: reqwest::Client,
    cache: Mutex<HashMap<Url, Fetched>>,
}

/// A certificate (or why it could not be fetched) and when.
type Fetched = (Instant, Result<Arc<[u8]>, CertificateError>);

/// A certificate larger than this is refused.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;
/// How many certificate URLs the cache keeps.
pub const MAX_CACHED_CERTIFICATES: usize = 16;
const CERTIFICATE_TTL: Duration = Duration::from_secs(3600);
const FAILURE_TTL: Duration = Duration::from_secs(60);

impl HttpCertificateSource {
    /// Fetches with a client of its own that follows no redirect (the trusted prefix is checked
    /// on the URL fetched, not on where a redirect would lead).
    pub fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            cache: Mutex::default(),
        })
    }

    fn cached(&self, url: &Url) -> Option<Result<Arc<[u8]>, CertificateError>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (fetched, result) = cache.get(url)?;
        let ttl = if result.is_ok() {
            CERTIFICATE_TTL
        } else {
            FAILURE_TTL
        };
        (fetched.elapsed() < ttl).then(|| result.clone())
    }

    fn keep(&self, url: &Url, result: &Result<Arc<[u8]>, CertificateError>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_CERTIFICATES && !cache.contains_key(url) {
            let oldest = cache
                .iter()
                .min_by_key(|(_, (fetched, _))| *fetched)
                .map(|(url, _)| url.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
        cache.insert(url.clone(), (Instant::now(), result.clone()));
    }

    async fn fetch(&self, url: &Url) -> Result<Arc<[u8]>, CertificateError> {
        let unavailable = |e: String| CertificateError::Unavailable(format!("{url}: {e}"));
        let too_large = || CertificateError::TooLarge(MAX_CERTIFICATE_BYTES);
        let mut answer = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(unavailable(format!("HTTP {}", answer.status())));
        }
        if answer
            .content_length()
            .is_some_and(|n| n > MAX_CERTIFICATE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| unavailable(e.to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_CERTIFICATE_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Arc::from(bytes))
    }
}

#[async_trait]
impl CertificateSource for HttpCertificateSource {
    async fn certificate(&self, url: &Url) -> Result<Arc<[u8]>, CertificateError> {
        if let Some(result) = self.cached(url) {
            return result;
        }
        let result = self.fetch(url).await;
        self.keep(url, &result);
        result
    }
}

/// Against a local server serving a certificate, one too large, a redirect to it and a missing
/// one, counting its requests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::get;

    use super::*;

    const SIGNER_CERT: &[u8] = include_bytes!("../partner_center/testdata/signer-microsoft.cer");

    async fn serve() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().route(
            "/cert/{name}",
            get(move |Path(name): Path<String>| {
                let hits = counted.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let answer: Response = match name.as_str() {
                        "ok.cer" => SIGNER_CERT.to_vec().into_response(),
                        "big.cer" => vec![0u8; MAX_CERTIFICATE_BYTES + 1].into_response(),
                        "moved.cer" => Redirect::temporary("/cert/ok.cer").into_response(),
                        _ => StatusCode::NOT_FOUND.into_response(),
                    };
                    answer
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/cert/"), hits)
    }

    #[tokio::test]
    async fn when_fetched_should_keep_certificates_and_failures_and_follow_no_redirect() {
        let (base, hits) = serve().await;
        let source = HttpCertificateSource::new().unwrap();
        let url = |name: &str| Url::parse(&format!("{base}{name}")).unwrap();

        for _ in 0..3 {
            let bytes = source.certificate(&url("ok.cer")).await.unwrap();
            assert_eq!(&*bytes, SIGNER_CERT);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once, then kept");

        for _ in 0..3 {
            let missing = source.certificate(&url("missing.cer")).await.unwrap_err();
            assert!(missing.is_retryable(), "{missing}");
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "a failure is remembered too"
        );

        let big = source.certificate(&url("big.cer")).await.unwrap_err();
        assert!(matches!(big, CertificateError::TooLarge(_)), "{big}");
        assert!(!big.is_retryable());

        let moved = source.certificate(&url("moved.cer")).await.unwrap_err();
        assert!(matches!(moved, CertificateError::Unavailable(_)), "{moved}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            4,
            "the redirect is not followed"
        );

        for i in 0..40 {
            let _ = source.certificate(&url(&format!("other-{i}.cer"))).await;
        }
        let kept = source.cache.lock().unwrap().len();
        assert_eq!(kept, MAX_CACHED_CERTIFICATES, "the cache is bounded");
    }
}
