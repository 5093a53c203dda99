//! Delegated (app + user) tokens from a refresh token that rotates on every use.
//!
//! The newest refresh token lives in a [`RefreshTokenStore`] of its own (Secrets Manager, a
//! 0600 file, memory). It used to live in the sync state under `partner_center_refresh_token`,
//! readable by every function; that key is no longer read or written (after an upgrade, put the
//! token into the new store, run `hunter-local sign-in`, or let `HUNTER_PC_REFRESH_TOKEN` seed an
//! empty store). A refused refresh token (`invalid_grant`) is
//! [`PartnerCenterError::SignInRequired`](super::PartnerCenterError::SignInRequired).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::error::PartnerCenterError;
use crate::http::{IssuedToken, TokenEndpoint, TokenSource};
use crate::ports::StoreError;
use crate::secret::Secret;

/// The version of a stored refresh token, as its store names it (opaque to everyone else).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenVersion(pub String);

/// A refresh token as stored, with the version a conditional save compares against.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRefreshToken {
    pub token: Secret,
    pub version: TokenVersion,
}

/// Where the latest (rotated) refresh token lives between runs: a secret of its own (Secrets
/// Manager on AWS, a 0600 file locally), never the table every function reads.
///
/// Saves are conditional, so two renewals never lose the newest token: `save` stores `token`
/// only while the stored version is still `expected` (`None`: nothing stored yet), else it
/// answers [`StoreError::Conflict`] and the caller loads again (the other renewal's token wins).
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// The stored token and its version; `None` while none is stored.
    async fn load(&self) -> Result<Option<StoredRefreshToken>, StoreError>;
    /// Stores `token` if the stored version is still `expected`; the new version.
    async fn save(
        &self,
        token: &Secret,
        expected: Option<&TokenVersion>,
    ) -> Result<TokenVersion, StoreError>;
}

/// Stores `token` whatever is stored now (a new sign-in replaces any older token): loads the
/// version and saves against it, again when another save came in between.
pub async fn replace_refresh_token(
    store: &dyn RefreshTokenStore,
    token: &Secret,
) -> Result<TokenVersion, StoreError> {
    let mut attempt = 0;
    loop {
        let current = store.load().await?;
        match store
            .save(token, current.as_ref().map(|c| &c.version))
            .await
        {
            Err(StoreError::Conflict(_)) if attempt < 5 => attempt += 1,
            other => return other,
        }
    }
}

/// The refresh token in use and the stored version it came from (`None`: not from the store).
#[derive(Debug)]
struct Current {
    token: Secret,
    version: Option<TokenVersion>,
}

/// Issues Partner Center access tokens from the refresh token, saving each rotated successor
/// at once ([`TokenSource`]; the client caches the access tokens).
pub struct PartnerCenterAuth {
    endpoint: TokenEndpoint,
    initial_refresh_token: Secret,
    store: Arc<dyn RefreshTokenStore>,
    /// The scope asked for ([`SCOPE`] unless [`PartnerCenterAuth::with_scope`]).
    scope: &'static str,
    /// The latest refresh token, once one was loaded or rotated.
    refresh: Mutex<Option<Current>>,
}

impl std::fmt::Debug for PartnerCenterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCenterAuth")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The delegated scope of the Referrals API, with a refresh token.
pub const SCOPE: &str = "https://api.partner.microsoft.com/.default offline_access";
/// The delegated scope of Partner Center's webhook registration API
/// (`api.partnercenter.microsoft.com`), redeemed with the same refresh token.
pub const WEBHOOKS_SCOPE: &str = "https://api.partnercenter.microsoft.com/.default offline_access";

impl PartnerCenterAuth {
    /// Tokens from `endpoint`; `initial_refresh_token` (`HUNTER_PC_REFRESH_TOKEN`) is used while
    /// `store` holds none.
    pub fn new(
        endpoint: TokenEndpoint,
        initial_refresh_token: Secret,
        store: Arc<dyn RefreshTokenStore>,
    ) -> Self {
        Self {
            endpoint,
            initial_refresh_token,
            store,
            scope: SCOPE,
            refresh: Mutex::new(None),
        }
    }

    /// The same tokens for another API of Partner Center (e.g. [`WEBHOOKS_SCOPE`]).
    pub fn with_scope(mut self, scope: &'static str) -> Self {
        self.scope = scope;
        self
    }

    /// The stored token, else the initial one.
    async fn stored_or_initial(&self) -> Current {
        match self.store.load().await {
            Ok(Some(stored)) => Current {
                token: stored.token,
                version: Some(stored.version),
            },
            Ok(None) => Current {
                token: self.initial_refresh_token.clone(),
                version: None,
            },
            Err(err) => {
                tracing::warn!(event = "partner_center_refresh_token_load_failed", error = %err);
                Current {
                    token: self.initial_refresh_token.clone(),
                    version: None,
                }
            }
        }
    }

    async fn redeem(&self, refresh: &Secret) -> Result<IssuedToken, PartnerCenterError> {
        if refresh.is_empty() {
            return Err(PartnerCenterError::SignInRequired {
                service: super::client::NAMES.display,
                message: "no refresh token is stored yet".to_owned(),
                request_id: None,
            });
        }
        let grant = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose()),
            ("scope", self.scope),
        ];
        self.endpoint.request(&super::client::NAMES, &grant).await
    }

    /// Keeps `rotated` (the successor of `current`): saved against the version `current` came
    /// from; when another renewal saved first, its token (the newest) is kept instead.
    async fn keep_rotated(&self, current: Current, rotated: Secret) -> Current {
        match self.store.save(&rotated, current.version.as_ref()).await {
            Ok(version) => Current {
                token: rotated,
                version: Some(version),
            },
            Err(StoreError::Conflict(_)) => match self.store.load().await {
                Ok(Some(stored)) => {
                    tracing::info!(event = "partner_center_refresh_token_superseded");
                    Current {
                        token: stored.token,
                        version: Some(stored.version),
                    }
                }
                other => {
                    if let Err(err) = other {
                        tracing::error!(event = "partner_center_refresh_token_load_failed", error = %err);
                    }
                    Current {
                        token: rotated,
                        version: current.version,
                    }
                }
            },
            Err(err) => {
                // Kept in memory, so this process goes on; the next successful save persists it.
                tracing::error!(event = "partner_center_refresh_token_save_failed", error = %err);
                Current {
                    token: rotated,
                    version: current.version,
                }
            }
        }
    }
}

#[async_trait]
impl TokenSource for PartnerCenterAuth {
    async fn issue(&self) -> Result<IssuedToken, PartnerCenterError> {
        let mut refresh = self.refresh.lock().await;
        let mut current = match refresh.take() {
            Some(current) => current,
            None => self.stored_or_initial().await,
        };
        let mut issued = self.redeem(&current.token).await;
        if matches!(issued, Err(PartnerCenterError::SignInRequired { .. })) {
            // Another process may have rotated the token (or someone signed in) since it was
            // loaded: the stored one, if it is another, gets one try.
            let stored = self.stored_or_initial().await;
            if stored.token != current.token && !stored.token.is_empty() {
                tracing::info!(event = "partner_center_refresh_token_reloaded");
                current = stored;
                issued = self.redeem(&current.token).await;
            }
        }
        match issued {
            Ok(issued) => {
                *refresh = Some(match &issued.refresh_token {
                    Some(rotated) => self.keep_rotated(current, rotated.clone()).await,
                    None => current,
                });
                Ok(issued)
            }
            Err(err) => {
                if matches!(err, PartnerCenterError::SignInRequired { .. }) {
                    tracing::error!(event = "partner_center_sign_in_required", error = %err);
                }
                *refresh = Some(current);
                Err(err)
            }
        }
    }
}
