//! Bearer tokens: issued by a [`TokenSource`], cached by a [`TokenCache`] until shortly before
//! they expire, and renewed once when the service refuses one.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::ServiceError;
use super::service::{ServiceNames, request_id, retry_after};
use crate::secret::Secret;

/// A cached access token is renewed this long before it expires (at most half its lifetime).
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);

/// An access token from a token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    pub access_token: Secret,
    pub lifetime: Duration,
    /// The rotated refresh token, when the grant returns one.
    pub refresh_token: Option<Secret>,
}

/// Where new access tokens come from (client credentials, a rotating refresh token, ...).
#[async_trait]
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    async fn issue(&self) -> Result<IssuedToken, ServiceError>;
}

/// Access tokens of one [`TokenSource`], cached until shortly before they expire.
#[derive(Debug)]
pub struct TokenCache {
    source: Box<dyn TokenSource>,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl TokenCache {
    pub fn new(source: impl TokenSource + 'static) -> Self {
        Self {
            source: Box::new(source),
            cached: Mutex::new(None),
        }
    }

    /// A valid access token, from the cache while it has time left.
    pub async fn access_token(&self) -> Result<Secret, ServiceError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        self.renew(&mut cached).await
    }

    /// A new access token because `rejected` was refused (unless another caller renewed it
    /// meanwhile: then that one).
    pub async fn renew_after_rejection(&self, rejected: &Secret) -> Result<Secret, ServiceError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, _)) = cached.as_ref() {
            if token != rejected {
                return Ok(token.clone());
            }
        }
        self.renew(&mut cached).await
    }

    async fn renew(&self, cached: &mut Option<(Secret, Instant)>) -> Result<Secret, ServiceError> {
        *cached = None;
        let issued = self.source.issue().await?;
        let lifetime = issued.lifetime;
        let renew_at = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2));
        *cached = Some((issued.access_token.clone(), renew_at));
        Ok(issued.access_token)
    }
}

/// A token endpoint and the application's credentials for it.
#[derive(Clone)]
pub struct TokenEndpoint {
    pub http: reqwest::Client,
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    pub fn new(
        http: reqwest::Client,
        url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        Self {
            http,
            url: url.into(),
            client_id: client_id.into(),
            client_secret,
        }
    }

    /// Asks for a token with `grant` (grant type and its parameters); the client id, and the
    /// secret when there is one, are added.
    pub async fn request(
        &self,
        names: &ServiceNames,
        grant: &[(&str, &str)],
    ) -> Result<IssuedToken, ServiceError> {
        let mut form = grant.to_vec();
        form.push(("client_id", self.client_id.as_str()));
        if !self.client_secret.is_empty() {
            form.push(("client_secret", self.client_secret.expose()));
        }
        request_token(&self.http, names, &self.url, &form).await
    }
}

/// `expires_in` is a string in Entra's v1 answer and a number in v2: accept both.
fn seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(u64),
        Text(String),
    }
    match Seconds::deserialize(deserializer)? {
        Seconds::Number(n) => Ok(n),
        Seconds::Text(t) => t.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Secret,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(deserialize_with = "seconds")]
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// POSTs an OAuth 2.0 token request (`form`) to `url` and reads the answer. A refusal (4xx other
/// than 429) is [`ServiceError::Auth`]; throttling and server errors are retryable.
pub async fn request_token(
    http: &reqwest::Client,
    names: &ServiceNames,
    url: &str,
    form: &[(&str, &str)],
) -> Result<IssuedToken, ServiceError> {
    let service = names.display;
    let transport = |e: reqwest::Error| ServiceError::Transport {
        service,
        message: format!("token endpoint: {e}"),
    };
    let response = http.post(url).form(form).send().await.map_err(transport)?;
    let status = response.status();
    let request_id = request_id(response.headers());
    let retry_after = retry_after(response.headers());
    let body = response.text().await.map_err(transport)?;
    if !status.is_success() {
        let error: OAuthError = serde_json::from_str(&body).unwrap_or_default();
        tracing::warn!(event = names.token_refused, status = status.as_u16(), code = %error.error, request_id = request_id.as_deref());
        let message = format!("{}: {}", error.error, error.error_description);
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            ServiceError::Http {
                service,
                status: status.as_u16(),
                code: error.error,
                message,
                request_id,
                retryable: true,
                retry_after,
            }
        } else if error.error == "invalid_grant" {
            ServiceError::SignInRequired {
                service,
                message,
                request_id,
            }
        } else {
            ServiceError::Auth {
                service,
                status: status.as_u16(),
                message,
                request_id,
            }
        });
    }
    let answer: TokenAnswer =
        serde_json::from_str(&body).map_err(|e| ServiceError::InvalidResponse {
            service,
            message: format!("token answer: {e}"),
            request_id: request_id.clone(),
        })?;
    if answer.access_token.is_empty() {
        return Err(ServiceError::InvalidResponse {
            service,
            message: "token answer without access_token".to_owned(),
            request_id,
        });
    }
    tracing::info!(event = names.token_issued, expires_in = answer.expires_in);
    Ok(IssuedToken {
        access_token: answer.access_token,
        lifetime: Duration::from_secs(answer.expires_in),
        refresh_token: answer.refresh_token,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Counting {
        issued: AtomicU32,
        lifetime: Duration,
    }

    #[async_trait]
    impl TokenSource for Counting {
        async fn issue(&self) -> Result<IssuedToken, ServiceError> {
            let n = self.issued.fetch_add(1, Ordering::SeqCst);
            Ok(IssuedToken {
                access_token: Secret::new(format!("token-{n}")),
                lifetime: self.lifetime,
                refresh_token: None,
            })
        }
    }

    fn cache(lifetime: Duration) -> TokenCache {
        TokenCache::new(Counting {
            issued: AtomicU32::new(0),
            lifetime,
        })
    }

    #[tokio::test]
    async fn when_a_token_has_time_left_should_reuse_it() {
        let tokens = cache(Duration::from_secs(3600));
        let first = tokens.access_token().await.unwrap();
        assert_eq!(tokens.access_token().await.unwrap(), first);
    }

    #[tokio::test(start_paused = true)]
    async fn when_a_token_nears_expiry_should_renew_it() {
        let tokens = cache(Duration::from_secs(600));
        let first = tokens.access_token().await.unwrap();
        tokio::time::advance(Duration::from_secs(479)).await;
        assert_eq!(tokens.access_token().await.unwrap(), first);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_ne!(
            tokens.access_token().await.unwrap(),
            first,
            "two minutes before expiry"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn when_a_short_lived_token_is_cached_should_renew_at_half_its_lifetime() {
        let tokens = cache(Duration::from_millis(300));
        let first = tokens.access_token().await.unwrap();
        tokio::time::advance(Duration::from_millis(149)).await;
        assert_eq!(tokens.access_token().await.unwrap(), first);
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_ne!(tokens.access_token().await.unwrap(), first);
    }

    #[tokio::test]
    async fn when_a_token_is_refused_should_renew_once_for_all_callers() {
        let tokens = cache(Duration::from_secs(3600));
        let refused = tokens.access_token().await.unwrap();
        let renewed = tokens.renew_after_rejection(&refused).await.unwrap();
        assert_ne!(renewed, refused);
        assert_eq!(
            tokens.renew_after_rejection(&refused).await.unwrap(),
            renewed,
            "a second caller with the same refused token gets the renewed one"
        );
    }
}
