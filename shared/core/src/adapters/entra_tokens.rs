//! [`AccessTokenVerifier`] for Entra ID: RS256 access tokens checked against the tenant's
//! published signing keys (cached; fetched again when a token names a key not seen yet, at most
//! every few minutes), with the issuer, audience and validity times checked.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::config::EntraApi;
use crate::ports::{AccessTokenVerifier, AuthError, Caller};

/// Keys are read again after this long even when every token names a known key (rotation).
const KEYS_TTL: Duration = Duration::from_secs(24 * 3600);
/// A token naming an unknown key fetches the keys again, but not more often than this.
const UNKNOWN_KEY_REFETCH: Duration = Duration::from_secs(300);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// Checks Entra ID access tokens for this API.
#[derive(Debug)]
pub struct EntraTokenVerifier {
    http: reqwest::Client,
    settings: EntraApi,
    keys: RwLock<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    set: Option<JwkSet>,
    fetched_at: Option<Instant>,
}

impl Keys {
    fn fetched_within(&self, age: Duration) -> bool {
        self.fetched_at.is_some_and(|at| at.elapsed() < age)
    }

    fn decoding_key(&self, kid: &str) -> Option<Result<DecodingKey, AuthError>> {
        let jwk = self.set.as_ref()?.find(kid)?;
        Some(
            DecodingKey::from_jwk(jwk)
                .map_err(|e| AuthError::KeysUnavailable(format!("key {kid}: {e}"))),
        )
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    oid: Option<String>,
    sub: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
}

impl EntraTokenVerifier {
    /// `settings.audience` may list several accepted audiences, comma-separated (the API's
    /// client id for v2 tokens, its app id URI for v1 ones).
    pub fn new(http: reqwest::Client, settings: EntraApi) -> Self {
        Self {
            http,
            settings,
            keys: RwLock::new(Keys::default()),
        }
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        {
            let keys = self.keys.read().await;
            if keys.fetched_within(KEYS_TTL)
                && let Some(key) = keys.decoding_key(kid)
            {
                return key;
            }
        }
        let mut keys = self.keys.write().await;
        let known = keys.decoding_key(kid);
        let due = match &known {
            Some(_) => !keys.fetched_within(KEYS_TTL),
            None => !keys.fetched_within(UNKNOWN_KEY_REFETCH),
        };
        if due {
            match self.fetch_keys().await {
                Ok(set) => {
                    keys.set = Some(set);
                    keys.fetched_at = Some(Instant::now());
                }
                // Keys that are merely old still verify what they signed.
                Err(err) if known.is_some() => {
                    tracing::warn!(event = "entra_keys_refresh_failed", retryable = true, error = %err);
                }
                Err(err) => return Err(err),
            }
        }
        keys.decoding_key(kid)
            .unwrap_or_else(|| Err(AuthError::Refused(format!("unknown signing key {kid:?}"))))
    }

    async fn fetch_keys(&self) -> Result<JwkSet, AuthError> {
        let unavailable = |e: reqwest::Error| AuthError::KeysUnavailable(e.to_string());
        let set = self
            .http
            .get(&self.settings.jwks_url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json::<JwkSet>()
            .await
            .map_err(unavailable)?;
        tracing::info!(event = "entra_keys_fetched", keys = set.keys.len());
        Ok(set)
    }

    fn validation(&self) -> Validation {
        let mut validation = Validation::new(Algorithm::RS256);
        let audiences: Vec<&str> = self
            .settings
            .audience
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        validation.set_audience(&audiences);
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation
    }
}

#[async_trait]
impl AccessTokenVerifier for EntraTokenVerifier {
    async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let refused = |e: jsonwebtoken::errors::Error| AuthError::Refused(e.to_string());
        let header = decode_header(token).map_err(refused)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Refused(format!("algorithm {:?}", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Refused("no key id (kid)".to_owned()))?;
        let key = self.key(&kid).await?;
        let claims = decode::<Claims>(token, &key, &self.validation())
            .map_err(refused)?
            .claims;
        let id = claims
            .oid
            .or(claims.sub)
            .ok_or_else(|| AuthError::Refused("no oid or sub".to_owned()))?;
        Ok(Caller {
            id,
            name: claims.name.or(claims.preferred_username),
        })
    }
}
