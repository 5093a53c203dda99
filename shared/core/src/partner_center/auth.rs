//! Delegated (app + user) tokens from a refresh token that rotates on every use.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::error::PartnerCenterError;
use crate::http::{IssuedToken, TokenEndpoint, TokenSource};
use crate::optimistic::{Change, update_state};
use crate::ports::{StoreError, SyncStore};
use crate::secret::Secret;

/// Sync-state key under which the latest refresh token is kept.
pub const REFRESH_TOKEN_STATE_KEY: &str = "partner_center_refresh_token";

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
        let value = serde_json::json!({ "refreshToken": token.expose() });
        update_state(self.store.as_ref(), REFRESH_TOKEN_STATE_KEY, |_| {
            Change::Write(value.clone(), ())
        })
        .await
    }
}

/// Issues Partner Center access tokens from the refresh token, saving each rotated successor
/// at once ([`TokenSource`]; the client caches the access tokens).
pub struct PartnerCenterAuth {
    endpoint: TokenEndpoint,
    initial_refresh_token: Secret,
    store: Arc<dyn RefreshTokenStore>,
    /// The latest refresh token, once one was loaded or rotated.
    refresh: Mutex<Option<Secret>>,
}

impl std::fmt::Debug for PartnerCenterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCenterAuth")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The delegated scope of the Referrals API, with a refresh token.
const SCOPE: &str = "https://api.partner.microsoft.com/.default offline_access";

impl PartnerCenterAuth {
    /// Tokens from `endpoint`; `initial_refresh_token` is used until a rotated one is stored.
    pub fn new(
        endpoint: TokenEndpoint,
        initial_refresh_token: Secret,
        store: Arc<dyn RefreshTokenStore>,
    ) -> Self {
        Self {
            endpoint,
            initial_refresh_token,
            store,
            refresh: Mutex::new(None),
        }
    }

    async fn current_refresh_token(&self, refresh: &Option<Secret>) -> Secret {
        if let Some(token) = refresh {
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
}

#[async_trait]
impl TokenSource for PartnerCenterAuth {
    async fn issue(&self) -> Result<IssuedToken, PartnerCenterError> {
        let mut refresh = self.refresh.lock().await;
        let current = self.current_refresh_token(&refresh).await;
        let grant = [
            ("grant_type", "refresh_token"),
            ("refresh_token", current.expose()),
            ("scope", SCOPE),
        ];
        let issued = self.endpoint.request(&super::client::NAMES, &grant).await?;
        if let Some(rotated) = &issued.refresh_token {
            if let Err(err) = self.store.save(rotated).await {
                // Kept in memory, so this process goes on; the next successful save persists it.
                tracing::error!(event = "partner_center_refresh_token_save_failed", error = %err);
            }
            *refresh = Some(rotated.clone());
        }
        Ok(issued)
    }
}
