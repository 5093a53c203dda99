//! Delegated (app + user) tokens from a refresh token that rotates on every use.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::PartnerCenterError;
use crate::ports::StoreError;
use crate::ports::SyncStore;
use crate::secret::Secret;
use hunter_domain::model::SyncState;

/// Sync-state key under which the latest refresh token is kept.
pub const REFRESH_TOKEN_STATE_KEY: &str = "partner_center_refresh_token";
/// A cached access token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);

/// Where the latest (rotated) refresh token lives between runs.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    async fn load(&self) -> Result<Option<Secret>, StoreError>;
    async fn save(&self, token: &Secret) -> Result<(), StoreError>;
}

/// [`RefreshTokenStore`] in the sync state of the store (encrypted at rest in DynamoDB).
pub struct StateRefreshTokenStore {
    store: Arc<dyn SyncStore>,
}

impl std::fmt::Debug for StateRefreshTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateRefreshTokenStore")
    }
}

impl StateRefreshTokenStore {
    pub fn new(store: Arc<dyn SyncStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl RefreshTokenStore for StateRefreshTokenStore {
    async fn load(&self) -> Result<Option<Secret>, StoreError> {
        let state = self.store.get_state(REFRESH_TOKEN_STATE_KEY).await?;
        Ok(state.and_then(|s| s.value["refreshToken"].as_str().map(Secret::new)))
    }

    async fn save(&self, token: &Secret) -> Result<(), StoreError> {
        let stored = self.store.get_state(REFRESH_TOKEN_STATE_KEY).await?;
        let expected = stored.as_ref().map(|s| s.version);
        let state = SyncState {
            key: REFRESH_TOKEN_STATE_KEY.to_owned(),
            value: serde_json::json!({ "refreshToken": token.expose() }),
            version: expected.unwrap_or(0) + 1,
            updated_at: hunter_domain::clock::now(),
        };
        self.store.put_state(&state, expected).await
    }
}

/// `expires_in` is a string in the documented v1 answer and a number in v2: accept both.
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

#[derive(Debug)]
struct Tokens {
    access: Option<(Secret, Instant)>,
    refresh: Option<Secret>,
}

/// Hands out access tokens: cached until shortly before expiry, renewed with the refresh token,
/// whose rotated successor is saved at once.
pub struct PartnerCenterAuth {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    scope: String,
    initial_refresh_token: Secret,
    store: Arc<dyn RefreshTokenStore>,
    tokens: Mutex<Tokens>,
}

impl std::fmt::Debug for PartnerCenterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCenterAuth")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl PartnerCenterAuth {
    /// `initial_refresh_token` is used until a rotated one has been stored.
    pub fn new(
        http: reqwest::Client,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        initial_refresh_token: Secret,
        store: Arc<dyn RefreshTokenStore>,
    ) -> Self {
        Self {
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            scope: "https://api.partner.microsoft.com/.default offline_access".to_owned(),
            initial_refresh_token,
            store,
            tokens: Mutex::new(Tokens {
                access: None,
                refresh: None,
            }),
        }
    }

    /// A valid access token, from the cache when it has time left.
    pub async fn access_token(&self) -> Result<Secret, PartnerCenterError> {
        let mut tokens = self.tokens.lock().await;
        if let Some((token, expires_at)) = &tokens.access {
            if Instant::now() + EXPIRY_MARGIN < *expires_at {
                return Ok(token.clone());
            }
        }
        self.renew(&mut tokens).await
    }

    /// A new access token because `rejected` was refused (unless another caller renewed it already).
    pub async fn renew_after_rejection(
        &self,
        rejected: &Secret,
    ) -> Result<Secret, PartnerCenterError> {
        let mut tokens = self.tokens.lock().await;
        if let Some((token, _)) = &tokens.access {
            if token != rejected {
                return Ok(token.clone());
            }
        }
        self.renew(&mut tokens).await
    }

    async fn current_refresh_token(&self, tokens: &Tokens) -> Secret {
        if let Some(token) = &tokens.refresh {
            return token.clone();
        }
        match self.store.load().await {
            Ok(Some(token)) => token,
            Ok(None) => self.initial_refresh_token.clone(),
            Err(err) => {
                tracing::warn!(event = "partner_center_refresh_token_load_failed", error = %err);
                self.initial_refresh_token.clone()
            }
        }
    }

    async fn renew(&self, tokens: &mut Tokens) -> Result<Secret, PartnerCenterError> {
        let refresh = self.current_refresh_token(tokens).await;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("refresh_token", refresh.expose()),
            ("scope", self.scope.as_str()),
        ];
        if !self.client_secret.is_empty() {
            form.push(("client_secret", self.client_secret.expose()));
        }
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| PartnerCenterError::Transport(format!("token endpoint: {e}")))?;
        let status = response.status();
        let request_id = super::client::request_id(response.headers());
        let body = response
            .text()
            .await
            .map_err(|e| PartnerCenterError::Transport(e.to_string()))?;
        if !status.is_success() {
            let error: OAuthError = serde_json::from_str(&body).unwrap_or_default();
            let message = format!("{}: {}", error.error, error.error_description);
            tracing::warn!(event = "partner_center_token_refused", status = status.as_u16(), code = %error.error, request_id = request_id.as_deref());
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                PartnerCenterError::Http {
                    status: status.as_u16(),
                    code: error.error,
                    message,
                    request_id,
                    retryable: true,
                }
            } else {
                PartnerCenterError::Auth {
                    status: status.as_u16(),
                    message,
                    request_id,
                }
            });
        }
        let answer: TokenAnswer = serde_json::from_str(&body).map_err(|e| {
            PartnerCenterError::InvalidResponse(format!("token answer: {e}"), request_id)
        })?;
        if let Some(rotated) = answer.refresh_token {
            if let Err(err) = self.store.save(&rotated).await {
                // Kept in memory, so this process goes on; the next successful save persists it.
                tracing::error!(event = "partner_center_refresh_token_save_failed", error = %err);
            }
            tokens.refresh = Some(rotated);
        }
        let expires_at = Instant::now() + Duration::from_secs(answer.expires_in);
        tokens.access = Some((answer.access_token.clone(), expires_at));
        Ok(answer.access_token)
    }
}
