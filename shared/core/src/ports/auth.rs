//! Checking the access tokens of people signed in to the UI.

use async_trait::async_trait;

/// Who an accepted access token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `oid` (or `sub`): the person, stable across sign-ins.
    pub id: String,
    /// Their name or sign-in name, for the audit trail.
    pub name: Option<String>,
}

/// Checks access tokens an identity provider issued for this API.
#[async_trait]
pub trait AccessTokenVerifier: Send + Sync {
    /// The caller, if `token` is a valid access token for this API now.
    async fn verify(&self, token: &str) -> Result<Caller, AuthError>;
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a token of the issuer for this API, or expired, or tampered with: sign in again.
    #[error("token refused: {0}")]
    Refused(String),
    /// The issuer's signing keys could not be read; retrying may help.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// Whether the same token may be accepted later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::KeysUnavailable(_))
    }
}
