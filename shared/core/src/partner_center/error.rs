//! What can go wrong talking to Partner Center, and whether retrying helps.

use std::time::Duration;

/// A failed Partner Center call. Every variant that came from a response names its `request-id`.
#[derive(Debug, thiserror::Error)]
pub enum PartnerCenterError {
    /// The token was refused even after one refresh, or the refresh token itself was refused.
    /// Someone must sign in again (device code) or fix the app registration; never retried.
    #[error(
        "Partner Center authentication failed (HTTP {status}): {message} [request-id {request_id:?}]"
    )]
    Auth {
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    /// An error answer. `retryable` for 429/5xx that outlasted the retries.
    #[error("Partner Center answered HTTP {status} {code}: {message} [request-id {request_id:?}]")]
    Http {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        retryable: bool,
    },
    /// No answer: connection, TLS or timeout, after the retries.
    #[error("Partner Center unreachable: {0}")]
    Transport(String),
    /// An answer that does not follow the contract.
    #[error("Partner Center sent an unreadable answer: {0} [request-id {request_id:?}]", request_id = .1)]
    InvalidResponse(String, Option<String>),
    /// Waiting for the next retry would pass the caller's deadline.
    #[error("deadline reached before Partner Center answered (next retry in {0:?})")]
    Deadline(Duration),
}

impl PartnerCenterError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Http { retryable, .. } => *retryable,
            Self::Transport(_) | Self::Deadline(_) => true,
            Self::Auth { .. } | Self::InvalidResponse(..) => false,
        }
    }
}

impl From<PartnerCenterError> for crate::ports::SourceError {
    fn from(err: PartnerCenterError) -> Self {
        let message = err.to_string();
        match err {
            PartnerCenterError::Deadline(delay) => Self::Deadline(delay),
            PartnerCenterError::Auth { .. } => Self::Unauthorized(message),
            e if e.is_retryable() => Self::Unavailable(message),
            _ => Self::Invalid(message),
        }
    }
}
